"""Registry behaviour against real SQLite files: atomic, idempotent, race-safe applies."""

from __future__ import annotations

import multiprocessing
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from featurestore.errors import ConflictError, RegistryUnavailable
from featurestore.registry import Registry
from featurestore.registry.plan import ChangeKind
from featurestore.repo import load_repo
from tests.helpers import change_credit_limit_dtype


def _registry(repo: Path) -> Registry:
    return Registry(f"sqlite:///{repo}/data/registry.db")


def _dump(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table: the registry's whole state, for before/after comparisons."""
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def test_apply_is_atomic_when_it_fails_midway(example_repo: Path) -> None:
    registry = _registry(example_repo)
    registry.apply(load_repo(example_repo))
    change_credit_limit_dtype(example_repo)
    (example_repo / "entities.py").write_text(
        (example_repo / "entities.py").read_text().replace("A card holder.", "A card holder (v2).")
    )
    before = _dump(example_repo / "data" / "registry.db")
    written: list[str] = []

    def fail_on_second(change: object) -> None:
        written.append(str(change))
        if len(written) == 2:
            raise RuntimeError("injected failure mid-apply")

    with pytest.raises(RuntimeError, match="injected failure"):
        registry.apply(load_repo(example_repo), on_change=fail_on_second)
    assert len(written) == 2  # the failure really came after writes had been made
    assert _dump(example_repo / "data" / "registry.db") == before
    snapshot = registry.snapshot("payments")
    assert sorted(snapshot.versions["user_profile"]) == [1]
    # The same apply then succeeds as a whole.
    result = registry.apply(load_repo(example_repo))
    assert {c.name for c in result.plan.pending} == {"user", "user_profile"}
    assert sorted(registry.snapshot("payments").versions["user_profile"]) == [1, 2]


def test_apply_twice_creates_nothing_new(example_repo: Path) -> None:
    registry = _registry(example_repo)
    first = registry.apply(load_repo(example_repo))
    assert first.apply_id is not None
    assert first.serial == 1
    before = _dump(example_repo / "data" / "registry.db")
    second = registry.apply(load_repo(example_repo))
    assert second.apply_id is None
    assert second.serial == 1
    assert not second.plan.has_changes
    assert _dump(example_repo / "data" / "registry.db") == before


def _apply_in_process(
    repo: str, registry_db: str, barrier: multiprocessing.synchronize.Barrier
) -> int | None:
    registry = Registry(f"sqlite:///{registry_db}")
    contents = load_repo(repo)
    barrier.wait()
    return registry.apply(contents).apply_id


def test_two_racing_applies_of_the_same_change_make_one_version(example_repo: Path) -> None:
    registry = _registry(example_repo)
    registry.apply(load_repo(example_repo))
    change_credit_limit_dtype(example_repo)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ctx.Pool(2) as pool:
            db = str(example_repo / "data" / "registry.db")
            results = pool.starmap(_apply_in_process, [(str(example_repo), db, barrier)] * 2)
    # One apply wrote v2; the other ran after it under the lock and found nothing to do.
    assert sorted(results, key=lambda r: r is not None) == [None, results[0] or results[1]]
    snapshot = registry.snapshot("payments")
    assert sorted(snapshot.versions["user_profile"]) == [1, 2]
    assert snapshot.serial == 2


def test_racing_applies_of_different_changes_both_land(example_repo: Path, tmp_path: Path) -> None:
    registry = _registry(example_repo)
    registry.apply(load_repo(example_repo))
    other = tmp_path / "other_checkout"
    shutil.copytree(example_repo, other, ignore=shutil.ignore_patterns("data"))
    change_credit_limit_dtype(example_repo)
    (other / "merchant_stats.py").write_text(
        (other / "merchant_stats.py")
        .read_text()
        .replace('"team": "payments"', '"team": "payments-ml"')
    )
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ctx.Pool(2) as pool:
            db = str(example_repo / "data" / "registry.db")
            results = pool.starmap(
                _apply_in_process, [(str(example_repo), db, barrier), (str(other), db, barrier)]
            )
    assert all(r is not None for r in results)
    snapshot = registry.snapshot("payments")
    assert snapshot.serial == 3  # both applies landed, one after the other
    team = snapshot.view_head("merchant_stats").spec["tags"]["team"]
    profile_dtypes = {
        v: vv.feature_dtypes["credit_limit"].name
        for v, vv in snapshot.versions["user_profile"].items()
    }
    # Each apply is whole and the later one wins per object: either order is consistent.
    if team == "payments-ml":  # the other checkout applied last: float64 again, as v3
        assert profile_dtypes == {1: "float64", 2: "float32", 3: "float64"}
        assert snapshot.latest_version("user_profile") == 3
    else:
        assert team == "payments"
        assert profile_dtypes == {1: "float64", 2: "float32"}
        assert snapshot.latest_version("user_profile") == 2


def test_metadata_change_keeps_the_version_and_records_a_revision(example_repo: Path) -> None:
    registry = _registry(example_repo)
    registry.apply(load_repo(example_repo))
    path = example_repo / "merchant_stats.py"
    path.write_text(
        path.read_text().replace(
            'owner="payments-analytics@example.com"', 'owner="ml-platform@example.com"'
        )
    )
    plan = registry.plan(load_repo(example_repo))
    [change] = plan.pending
    assert (change.name, change.change, change.version) == (
        "merchant_stats",
        ChangeKind.METADATA,
        1,
    )
    assert [str(f) for f in change.fields] == [
        "owner: payments-analytics@example.com -> ml-platform@example.com"
    ]
    registry.apply(load_repo(example_repo))
    history = registry.history("payments", "feature_view", "merchant_stats")
    assert [(r.revision, r.version) for r in history] == [(1, 1), (2, 1)]
    assert history[0].spec["owner"] == "payments-analytics@example.com"
    assert history[1].spec["owner"] == "ml-platform@example.com"
    assert re.search(r"merchant_stats\.py:\d+$", history[1].location or "")


def test_unreachable_registry_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    registry = Registry(f"sqlite:///{blocker}/registry.db")  # cheap: touches nothing yet
    with pytest.raises(RegistryUnavailable, match=r"registry.*featurestore\.yaml"):
        registry.serial("payments")


def test_retire_refuses_the_latest_version(example_repo: Path) -> None:
    registry = _registry(example_repo)
    registry.apply(load_repo(example_repo))
    with pytest.raises(ConflictError, match="latest version"):
        registry.retire_version("payments", "user_profile", 1)
    change_credit_limit_dtype(example_repo)
    registry.apply(load_repo(example_repo))
    with pytest.raises(ConflictError, match="fraud_detector, promo_ranker"):
        registry.retire_version("payments", "user_profile", 1)
