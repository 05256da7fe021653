"""``Plan.render()`` against golden files in tests/fixtures/plan/.

Rewrite the golden files after an intended change of the output with::

    UPDATE_FIXTURES=1 python -m pytest tests/test_plan_output.py

and review the diff. The output has no timestamps or paths, so the files are exact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from featurestore.registry import Registry
from featurestore.registry.plan import ChangeKind, Plan
from featurestore.repo import load_repo
from tests.helpers import BASE_REPO, replace_once, write_repo

FIXTURES = Path(__file__).parent / "fixtures" / "plan"
UPDATE = os.environ.get("UPDATE_FIXTURES") == "1"


def assert_matches_fixture(text: str, name: str) -> None:
    path = FIXTURES / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    assert path.is_file(), f"{path} is missing; run with UPDATE_FIXTURES=1 to create it"
    assert text + "\n" == path.read_text()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path}/reg.db")
    yield registry
    registry.close()


def plan_after_base(tmp_path: Path, registry: Registry, files: dict[str, str]) -> Plan:
    """Apply BASE_REPO, then edit the repo to ``files`` and plan."""
    repo = write_repo(tmp_path / "repo", BASE_REPO)
    registry.apply(load_repo(repo))
    write_repo(repo, files)
    return registry.plan(load_repo(repo))


def test_first_plan(tmp_path: Path, registry: Registry) -> None:
    repo = write_repo(tmp_path / "repo", BASE_REPO)
    plan = registry.plan(load_repo(repo))
    assert [c.change for c in plan.changes] == [ChangeKind.NEW] * 12
    text = plan.render()
    assert text.splitlines()[0] == "Project 'demo':"
    assert text.splitlines()[-1] == "Plan: 12 new"
    assert "  + FeatureView user_stats: new (v1)" in text.splitlines()
    assert_matches_fixture(text, "first_plan.txt")


def test_first_plan_capped_and_narrowed(tmp_path: Path, registry: Registry) -> None:
    repo = write_repo(tmp_path / "repo", BASE_REPO)
    plan = registry.plan(load_repo(repo))
    assert_matches_fixture(plan.render(limit=3), "first_plan_limit.txt")
    text = plan.render(only={"model", "policy"})
    assert [line for line in text.splitlines() if line.startswith("  + ")] == [
        "  + Model fraud_model: new",
        "  + Model promo_model: new",
        "  + Policy no_pii_for_marketing: new",
    ]
    assert text.splitlines()[-1] == "Plan: 12 new"  # the whole plan, whatever is listed


def test_dtype_change(tmp_path: Path, registry: Registry) -> None:
    files = replace_once(
        BASE_REPO,
        "views.py",
        'Field(name="avg_amount", dtype=Float32',
        'Field(name="avg_amount", dtype=Float64',
    )
    plan = plan_after_base(tmp_path, registry, files)
    text = plan.render()
    assert (
        "  ~ FeatureView user_stats: new version v2 (v1 stays served) — "
        "avg_amount float32 -> float64"
    ) in text.splitlines()
    assert text.splitlines()[-1] == "Plan: 1 new version"
    assert_matches_fixture(text, "dtype_change.txt")


def test_dtype_change_verbose_lists_unchanged_objects(tmp_path: Path, registry: Registry) -> None:
    files = replace_once(
        BASE_REPO,
        "views.py",
        'Field(name="avg_amount", dtype=Float32',
        'Field(name="avg_amount", dtype=Float64',
    )
    plan = plan_after_base(tmp_path, registry, files)
    assert_matches_fixture(plan.render(verbose=True), "dtype_change_verbose.txt")


def test_metadata_only_change_lists_field_paths(tmp_path: Path, registry: Registry) -> None:
    files = replace_once(
        BASE_REPO, "views.py", 'owner="risk@example.com"', 'owner="fraud-data@example.com"'
    )
    files = replace_once(
        files, "views.py", 'description="Mean transaction amount."', 'description="Mean amount."'
    )
    files = replace_once(files, "views.py", 'tags={"team": "risk"}', 'tags={"team": "fraud"}')
    files = replace_once(files, "views.py", "ttl=timedelta(days=30)", "ttl=timedelta(days=7)")
    plan = plan_after_base(tmp_path, registry, files)
    text = plan.render()
    lines = text.splitlines()
    assert "  ~ FeatureView user_stats: metadata changed (stays v1)" in lines
    assert "      owner: risk@example.com -> fraud-data@example.com" in lines
    assert (
        "      feature_descriptions.avg_amount.description: "
        "'Mean transaction amount.' -> 'Mean amount.'"
    ) in lines
    assert "      tags.team: risk -> fraud" in lines
    assert "  ~ FeatureView merchant_stats: metadata changed (stays v1)" in lines
    assert "      ttl_seconds: 2592000 -> 604800" in lines
    assert lines[-1] == "Plan: 2 metadata"
    assert_matches_fixture(text, "metadata_change.txt")


def test_retire(tmp_path: Path, registry: Registry) -> None:
    # merchant_stats leaves the repo, and so do its uses in a service and a drift monitor.
    files = replace_once(
        BASE_REPO,
        "views.py",
        "merchant_stats = FeatureView(",
        "_merchant_stats = dict(",
    )
    files = replace_once(
        files,
        "models.py",
        "from views import merchant_stats, user_stats",
        "from views import user_stats",
    )
    files = replace_once(
        files, "models.py", "features=[user_stats, merchant_stats]", "features=[user_stats]"
    )
    files = replace_once(
        files,
        "models.py",
        'features=["user_stats:avg_amount", "merchant_stats:chargeback_rate"]',
        'features=["user_stats:avg_amount"]',
    )
    plan = plan_after_base(tmp_path, registry, files)
    text = plan.render()
    assert "  - FeatureView merchant_stats: retired (removed from the repo; data kept)" in (
        text.splitlines()
    )
    assert_matches_fixture(text, "retire.txt")


def test_no_changes(tmp_path: Path, registry: Registry) -> None:
    plan = plan_after_base(tmp_path, registry, BASE_REPO)
    assert plan.render() == "Project 'demo':\nNo changes. The registry matches the repo."


def test_the_renderer_knows_every_change_kind() -> None:
    """plan_render names change kinds by their values (plan imports it, not the reverse)."""
    from featurestore.registry.plan_render import ORDER, SIGN, WORDS

    assert list(ORDER) == [str(c) for c in ChangeKind]
    assert set(SIGN) == set(WORDS) == set(ChangeKind)
