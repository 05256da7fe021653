"""Recorded training sets rebuilt exactly, their inputs kept by the gc, exported and verified.

Real Parquet offline store and registry (SQLite) throughout: a set is built, the offline
tables move on (appends, a window replace, gcs), and the rebuild must give the same
content fingerprint; an input deleted on purpose must be named with who removed it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.definitions import FeatureView
from featurestore.errors import FingerprintMismatch, ObjectNotFound, TrainingInputGone
from featurestore.offline.fingerprint import fingerprint_of_file, fingerprint_of_table
from featurestore.offline.writer import OfflineStore
from tests.helpers import BASE_REPO, write_repo

DAY1 = datetime(2026, 1, 7, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)
HOUR = timedelta(hours=1)
UTC_US = pa.timestamp("us", tz="UTC")
FEATURES = ["user_stats:avg_amount", "user_stats:txn_count", "user_stats:country"]
runner = CliRunner()


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    repo = write_repo(tmp_path_factory.mktemp("rebuild") / "repo", BASE_REPO)
    with FeatureStore(repo) as store:
        store.apply()
        yield store


@pytest.fixture
def store(applied: FeatureStore, tmp_path: Path) -> Iterator[FeatureStore]:
    """The module's repo and registry with an empty offline store of its own."""
    config = dataclasses.replace(applied.config, offline_store_path=tmp_path / "offline")
    with FeatureStore(config.repo_path, config=config, registry=applied.registry) as s:
        yield s


@pytest.fixture
def view(applied: FeatureStore) -> FeatureView:
    return applied.snapshot().feature_view("user_stats", 1)


def rows(times: list[datetime], *, users: list[int], amount: float = 1.0) -> pa.Table:
    n = len(times)
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "event_timestamp": pa.array(times, UTC_US),
            "created_timestamp": pa.array([DAY1] * n, UTC_US),
            "avg_amount": pa.array([amount + i for i in range(n)], pa.float32()),
            "txn_count": pa.array(range(n), pa.int64()),
            "country": pa.array(["DE", None, "FR", "IT", "ES", "PT"][:n]),
        }
    )


def entities() -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([1, 2, 1, 3, 2], pa.int64()),
            "event_timestamp": pa.array(
                [DAY2, DAY2 + HOUR, DAY1 + 12 * HOUR, DAY3, DAY2 + 2 * HOUR], UTC_US
            ),
            "label": [True, False, None, True, False],
        }
    )


def impatient(store: FeatureStore) -> OfflineStore:
    """The store's offline tables with no retention: each commit's gc removes at once
    what no manifest (and no pin) needs."""
    return OfflineStore(store.config.offline_store_path, store.project, retention_seconds=0)


def first_build(store: FeatureStore, view: FeatureView, out: Path | None = None) -> Any:
    offline = impatient(store)
    offline.write(view, 1, rows([DAY1 + HOUR, DAY1 + 5 * HOUR], users=[1, 2]))
    offline.write(view, 1, rows([DAY2, DAY2 + HOUR, DAY2 + 3 * HOUR], users=[1, 2, 3]))
    return store.get_training_data(entities(), features=FEATURES, output_path=out)


def repo_of(store: FeatureStore, setting: str = "") -> Path:
    """A copy of the repo on the same registry and offline store, its featurestore.yaml
    adding ``offline_store.<setting>`` if given (the CLI reads only the file)."""
    import shutil

    repo = store.config.offline_store_path.parent / "repo"
    if not repo.exists():
        shutil.copytree(store.config.repo_path, repo, ignore=shutil.ignore_patterns("data"))
    registry = store.config.registry_url.removeprefix("sqlite:///")
    (repo / "featurestore.yaml").write_text(
        f"project: {store.project}\nregistry: {registry}\noffline_store:\n"
        f"  path: {store.config.offline_store_path}\n" + (f"  {setting}\n" if setting else "")
    )
    return repo


def cli(store: FeatureStore, *args: str, setting: str = "", input: str | None = None) -> Any:
    return runner.invoke(app, [*args, "-r", str(repo_of(store, setting))], input=input)


# -- fingerprints -----------------------------------------------------------------------


def test_fingerprint_is_of_rows_order_and_values_not_of_chunks_or_files(tmp_path: Path) -> None:
    table = pa.table(
        {
            "k": pa.array([1, None, 3, 4], pa.int64()),
            "s": pa.array(["a", None, "bc", ""], pa.large_string()),
            "e": pa.array([[1.0], None, [], [2.0, None]], pa.list_(pa.float32())),
            "t": pa.array([DAY1, None, DAY2, DAY3], UTC_US),
            "b": [True, None, False, True],
        }
    )
    digest = fingerprint_of_table(table)
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert fingerprint_of_table(rechunked) == digest
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=3)
    assert fingerprint_of_file(tmp_path / "t.parquet", "t", "fix") == digest
    # A null is not a zero, an empty string not a null, order and values count.
    assert fingerprint_of_table(table.set_column(0, "k", pa.array([1, 0, 3, 4]))) != digest
    empty = pa.array(["a", "", "bc", ""], pa.large_string())
    assert fingerprint_of_table(table.set_column(1, "s", empty)) != digest
    assert fingerprint_of_table(table.take([1, 0, 2, 3])) != digest
    assert fingerprint_of_table(table.rename_columns(["K", "s", "e", "t", "b"])) != digest


def test_each_record_carries_its_fingerprint_and_keeps_its_entity_rows(
    store: FeatureStore, view: FeatureView
) -> None:
    built = first_build(store, view)
    record = store.registry.training_set(store.project, built.record.id)
    assert record.fingerprint == fingerprint_of_table(built.table)
    assert record.build == {
        "timestamp_column": "event_timestamp",
        "full_feature_names": False,
        "masks": {},
        "rules": [],
        "entities": fingerprint_of_table(entities()),
    }
    kept = store.config.offline_store_path / "demo" / "_training_sets" / str(record.id)
    assert pq.read_table(kept / "entities.parquet").equals(entities())
    pins = store.config.offline_store_path / "demo" / "user_stats" / "v1" / "_pins"
    assert json.loads((pins / f"{record.id}.json").read_text())["sequence"] == 2


# -- rebuilds ----------------------------------------------------------------------------


def test_rebuild_after_appends_a_window_replace_and_gcs_is_identical(
    store: FeatureStore, view: FeatureView
) -> None:
    built = first_build(store, view)
    offline = impatient(store)
    # Later rows the first build would have picked, a replace of a window it read, gcs.
    offline.write(view, 1, rows([DAY2 + 30 * timedelta(minutes=1)], users=[1], amount=50))
    offline.write(view, 1, rows([DAY2, DAY2 + HOUR], users=[1, 2], amount=99), window=(DAY2, DAY3))
    offline.table("user_stats", 1).collect_garbage(by="test")
    now = store.get_training_data(entities(), features=FEATURES)
    assert now.record.fingerprint != built.record.fingerprint  # the tables did move on

    rebuilt = store.rebuild_training_set(built.record.id)
    assert rebuilt.fingerprint == built.record.fingerprint
    assert rebuilt.table is not None
    assert rebuilt.table.equals(built.table)


def test_rebuild_of_a_set_written_to_a_file_writes_the_same_file_content(
    store: FeatureStore, view: FeatureView, tmp_path: Path
) -> None:
    first = tmp_path / "train.parquet"
    built = first_build(store, view, first)
    impatient(store).write(view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3))
    result = cli(
        store,
        "training-sets",
        "rebuild",
        str(built.record.id),
        "--out",
        str(tmp_path / "again.parquet"),
    )
    assert result.exit_code == 0, result.output
    assert f"identical (fingerprint {built.record.fingerprint})" in result.output
    assert pq.read_table(tmp_path / "again.parquet").equals(pq.read_table(first))


def test_rebuild_after_an_input_file_was_deleted_names_it_and_who_removed_it(
    store: FeatureStore, view: FeatureView
) -> None:
    built = first_build(store, view)
    root = store.config.offline_store_path / "demo" / "user_stats" / "v1"
    manifest = store.offline_store().table("user_stats", 1).manifest_at(2)
    victim = sorted(f.path for f in manifest.files)[0]
    (root / victim).unlink()
    with pytest.raises(TrainingInputGone) as raised:
        store.rebuild_training_set(built.record.id)
    message = str(raised.value)
    assert f"training set #{built.record.id}" in message
    assert f"user_stats@v1 at offline commit 2 reads {victim}" in message
    assert "no featurestore gc removed it" in message
    assert raised.value.path == str(root / victim)


def test_rebuild_after_the_gc_released_the_set_says_which_gc_and_why(
    store: FeatureStore, view: FeatureView, tmp_path: Path
) -> None:
    built = first_build(store, view)
    offline = impatient(store)
    offline.write(view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3))
    result = cli(store, "offline", "gc", "--retention", "0s", setting="keep_training_inputs: 0s")
    assert result.exit_code == 0, result.output
    assert f"training set #{built.record.id}" in result.output
    with pytest.raises(TrainingInputGone) as raised:
        store.rebuild_training_set(built.record.id)
    message = str(raised.value)
    assert "removed by featurestore offline gc" in message
    assert "past the retention of 0s" in message
    assert f"training set #{built.record.id}'s hold on user_stats@v1 was released" in message
    assert "keep_training_inputs (0s)" in message


def test_rebuild_refuses_unknown_ids_and_records_from_before_fingerprints(
    store: FeatureStore, view: FeatureView
) -> None:
    with pytest.raises(
        ObjectNotFound, match=r"No training set #9999 .* `featurestore training-sets`"
    ):
        store.rebuild_training_set(9999)
    built = first_build(store, view)
    kept = store.config.offline_store_path / "demo" / "_training_sets" / str(built.record.id)
    (kept / "entities.parquet").unlink()
    with pytest.raises(TrainingInputGone, match=r"its entity rows .* are gone"):
        store.rebuild_training_set(built.record.id)


def test_a_changed_entity_file_is_caught_before_any_join(
    store: FeatureStore, view: FeatureView
) -> None:
    built = first_build(store, view)
    kept = store.config.offline_store_path / "demo" / "_training_sets" / str(built.record.id)
    pq.write_table(entities().slice(1), kept / "entities.parquet")
    with pytest.raises(FingerprintMismatch, match="are not the ones it was built from"):
        store.rebuild_training_set(built.record.id)


# -- retention ---------------------------------------------------------------------------


def test_gc_keeps_what_a_training_set_read_and_says_so(
    store: FeatureStore, view: FeatureView
) -> None:
    built = first_build(store, view)
    offline = impatient(store)
    table = offline.table("user_stats", 1)
    read = {f.path for f in table.manifest_at(2).files}
    offline.write(view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3))
    time.sleep(0.01)
    offline.write(view, 1, rows([DAY3], users=[1], amount=8))
    current = {f.path for f in table.manifest().files}
    assert read - current, "the replace should have unreferenced a file the set read"
    for path in read:  # the commits' own gcs (no retention) kept all of them
        assert (table.root / path).exists()
    assert table.manifest_at(2).sequence == 2

    result = cli(store, "offline", "gc", "--dry-run", "--retention", "0s", "--json")
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.output)["tables"]
    assert report["table"] == "user_stats@v1"
    kept = {k["path"]: k["reason"] for k in report["keep"]}
    for path in read - current:
        assert kept[path] == f"read by training set #{built.record.id}"
    assert kept["_manifests/0000000002.json"] == f"read by training set #{built.record.id}"
    assert report["remove"] == []


def test_keep_training_inputs_lets_them_go(
    store: FeatureStore, view: FeatureView, tmp_path: Path
) -> None:
    built = first_build(store, view)
    offline = impatient(store)
    table = offline.table("user_stats", 1)
    read = {f.path for f in table.manifest_at(2).files}
    offline.write(view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3))
    gone = read - {f.path for f in table.manifest().files}

    result = cli(store, "offline", "gc", "--retention", "0s", setting="keep_training_inputs: 365d")
    assert result.exit_code == 0, result.output
    assert all((table.root / p).exists() for p in gone)  # a year has not passed

    setting = "keep_training_inputs: 0s"
    dry = cli(store, "offline", "gc", "--retention", "0s", "--dry-run", setting=setting)
    assert dry.exit_code == 0, dry.output
    assert all((table.root / p).exists() for p in gone)  # a dry run removes nothing
    assert f"release training set #{built.record.id}" in dry.output
    for path in gone:
        assert f"remove {path}" in dry.output
    result = cli(store, "offline", "gc", "--retention", "0s", setting=setting)
    assert result.exit_code == 0, result.output
    assert not any((table.root / p).exists() for p in gone)
    assert not (table.root / "_pins" / f"{built.record.id}.json").exists()


def test_keep_training_inputs_must_be_a_duration(store: FeatureStore) -> None:
    from featurestore.config import load_config
    from featurestore.errors import RepoConfigError

    assert load_config(repo_of(store)).keep_training_inputs_seconds is None  # forever
    repo = repo_of(store, "keep_training_inputs: 365d")
    assert load_config(repo).keep_training_inputs_seconds == 365 * 86_400
    for bad in ("forever", "-3d", "12", "1y", "true"):
        repo = repo_of(store, f"keep_training_inputs: {bad}")
        with pytest.raises(RepoConfigError, match=r"offline_store.keep_training_inputs .* 365d"):
            load_config(repo)


# -- snapshots ---------------------------------------------------------------------------


def test_export_and_verify_round_trip_and_verify_catches_a_changed_byte(
    store: FeatureStore, view: FeatureView, tmp_path: Path
) -> None:
    built = first_build(store, view, tmp_path / "train.parquet")
    folder = tmp_path / "snapshot"
    result = cli(store, "training-sets", "export", str(built.record.id), "--out", str(folder))
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["training_set"] == built.record.id
    assert manifest["fingerprint"] == built.record.fingerprint
    assert manifest["offline_commits"] == {"user_stats@v1": 2}
    assert manifest["views"] == [{"view": "user_stats", "version": 1}]
    assert manifest["features"] == [
        "user_stats@v1:avg_amount",
        "user_stats@v1:txn_count",
        "user_stats@v1:country",
    ]
    assert manifest["rows"] == 5
    assert manifest["policies"] == {"masks": {}, "rules": []}

    # Verify needs no repo: another installation has only the folder.
    verified = runner.invoke(app, ["training-sets", "verify", str(folder)])
    assert verified.exit_code == 0, verified.output
    assert f"identical (fingerprint {built.record.fingerprint})" in verified.output

    data = folder / manifest["data"]
    original = data.read_bytes()
    # A changed byte anywhere (a page, the footer's statistics, the magic) is caught.
    for at in (len(original) // 3, len(original) - 40, len(original) - 2):
        raw = bytearray(original)
        raw[at] ^= 0x01
        data.write_bytes(bytes(raw))
        broken = runner.invoke(app, ["training-sets", "verify", str(folder)])
        assert broken.exit_code == 1, at
        assert f"The export of training set #{built.record.id}" in broken.output
    # The same rows rewritten (other bytes): the content matches, the file does not.
    pq.write_table(pq.read_table(pa.BufferReader(original)), data, compression="gzip")
    rewritten = runner.invoke(app, ["training-sets", "verify", str(folder)])
    assert rewritten.exit_code == 1
    assert "has the recorded rows, order and values, but" in rewritten.output


def test_registry_from_before_fingerprints_is_migrated(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from featurestore.registry import Registry

    url = f"sqlite:///{tmp_path / 'old.db'}"
    fresh = Registry(url)
    assert fresh.training_sets("demo") == []  # creates the schema
    fresh.close()
    engine = create_engine(url)
    with engine.begin() as conn:  # what a schema-7 registry looked like
        conn.execute(text("ALTER TABLE fs_training_sets DROP COLUMN fingerprint"))
        conn.execute(text("ALTER TABLE fs_training_sets DROP COLUMN build"))
        conn.execute(text("UPDATE fs_meta SET value = '7' WHERE key = 'schema'"))
        conn.execute(
            text(
                "INSERT INTO fs_training_sets (project, model, features, entity_fingerprint, "
                "entity_rows, rows, engine, output_path, offline_manifests, created_at, "
                "created_by) VALUES ('demo', NULL, '[\"v@v1:f\"]', 'abc', 1, 1, 'duckdb', "
                "NULL, '{\"v@v1\": 1}', '2026-01-01 00:00:00', 'me')"
            )
        )
    engine.dispose()
    registry = Registry(url)
    try:
        [old] = registry.training_sets("demo")
        assert (old.fingerprint, old.build, old.features) == (None, None, ("v@v1:f",))
    finally:
        registry.close()


# -- the example repo, masks -------------------------------------------------------------


def test_the_example_models_set_rebuilds_after_a_rematerialization(example_repo: Path) -> None:
    """fraud_detector: three views (one empty stream view), an on-demand feature, written to
    a file; both batch views materialized again over their whole window since."""
    from featurestore.config import load_config
    from featurestore.materialize.backfill import backfill
    from pipelines.generate_data import generate
    from tests.test_training_cli import SMALL

    generate(load_config(example_repo), SMALL)
    with FeatureStore(example_repo) as s:
        s.apply()
        backfill(s)
        out = example_repo / "data" / "training" / "fraud.parquet"
        built = s.get_training_data(
            example_repo / "data" / "labels.parquet", model="fraud_detector", output_path=out
        )
        backfill(s)  # every file the set read is replaced
        assert s.offline_store().table("merchant_stats", 1).manifest().sequence == 2
    result = runner.invoke(
        app,
        [
            "training-sets",
            "rebuild",
            "--latest",
            "--model",
            "fraud_detector",
            "-r",
            str(example_repo),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Rebuilt training set #{built.record.id} (")
    assert "merchant_stats@v1 commit 1" in result.output
    assert f"identical (fingerprint {built.record.fingerprint})" in result.output
    none = runner.invoke(
        app, ["training-sets", "rebuild", "--latest", "--model", "nobody", "-r", str(example_repo)]
    )
    assert none.exit_code == 1
    assert "No training set of model 'nobody'" in none.output
    both = runner.invoke(
        app, ["training-sets", "rebuild", "1", "--latest", "-r", str(example_repo)]
    )
    assert both.exit_code == 1
    assert "Give a training set ID or --latest" in both.output


@pytest.mark.services
def test_a_masked_set_rebuilds_with_its_recorded_masks_and_needs_the_same_key(
    tmp_path: Path, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_policy import NOW, policy_store

    monkeypatch.setenv("FEATURESTORE_MASK_KEY", "key-one")
    spine = pa.table({"user_id": [1, 2], "event_timestamp": pa.array([NOW, NOW], UTC_US)})
    for store in policy_store(tmp_path, services.redis_url, "rebuild"):
        built = store.get_training_data(spine, model="fraud")
        assert built.record.build is not None
        assert built.record.build["masks"] == {"email": "hash"}
        rebuilt = store.rebuild_training_set(built.record.id)
        assert rebuilt.table is not None
        assert rebuilt.table.equals(built.table)
        monkeypatch.setenv("FEATURESTORE_MASK_KEY", "key-two")
        with pytest.raises(FingerprintMismatch, match=r"A changed mask key"):
            store.rebuild_training_set(built.record.id)


def test_gc_pins_again_what_a_record_reads_and_releases_what_no_record_reads(
    store: FeatureStore, view: FeatureView
) -> None:
    from sqlalchemy import delete

    from featurestore.registry import schema

    built = first_build(store, view)
    offline = impatient(store)
    table = offline.table("user_stats", 1)
    pin = table.root / "_pins" / f"{built.record.id}.json"
    pin.unlink()  # as if the build had stopped between its record and its pins
    dry = cli(store, "offline", "gc", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would pin training set #{built.record.id}: its record reads commit 2" in dry.output
    assert not pin.exists()
    assert cli(store, "offline", "gc").exit_code == 0
    assert json.loads(pin.read_text())["sequence"] == 2

    # The record goes (here: by hand): its pins and entity rows go at the next gc.
    with store.registry.database.engine.begin() as conn:
        for t in (schema.profiles, schema.training_sets):
            column = t.c.training_set if t is schema.profiles else t.c.id
            conn.execute(delete(t).where(column == built.record.id))
    offline.write(view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3))
    result = cli(store, "offline", "gc", "--retention", "0s", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    [entry] = report["tables"]
    assert entry["released"] == [
        {
            "training_set": built.record.id,
            "reason": f"training set #{built.record.id} is no longer recorded",
        }
    ]
    assert entry["remove"]  # what only the released set kept
    assert report["training_sets"] == [
        {
            "path": f"_training_sets/{built.record.id}",
            "reason": f"training set #{built.record.id} is no longer recorded",
        }
    ]
    assert not (
        store.config.offline_store_path / "demo" / "_training_sets" / str(built.record.id)
    ).exists()
    assert {f.path for f in table.manifest().files} == {
        p.relative_to(table.root).as_posix() for p in table.root.glob("date=*/*.parquet")
    }


def test_deleting_a_record_releases_what_it_read(store: FeatureStore, view: FeatureView) -> None:
    from featurestore.offline.pins import removals

    built = first_build(store, view)
    offline = impatient(store)
    table = offline.table("user_stats", 1)
    offline.write(view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3))
    only_it = {f.path for f in table.manifest_at(2).files} - {
        f.path for f in table.manifest().files
    }
    assert only_it
    assert all((table.root / p).exists() for p in only_it)

    asked = cli(store, "training-sets", "delete", str(built.record.id), input="n\n")
    assert asked.exit_code == 1  # declined: nothing deleted
    assert store.registry.training_set(store.project, built.record.id).id == built.record.id

    result = cli(store, "training-sets", "delete", str(built.record.id), "--yes")
    assert result.exit_code == 0, result.output
    assert f"Deleted training set #{built.record.id}" in result.output
    with pytest.raises(ObjectNotFound):
        store.rebuild_training_set(built.record.id)
    assert not (table.root / "_pins" / f"{built.record.id}.json").exists()
    kept = store.config.offline_store_path / "demo" / "_training_sets" / str(built.record.id)
    assert not kept.exists()
    [released] = [e for e in removals(table.root) if e.get("pin") == built.record.id]
    assert released["reason"] == f"training set #{built.record.id} was deleted"
    assert released["by"].startswith("training-sets delete by ")
    [audited] = store.registry.audit.records(store.project, action="training_set_delete")[-1:]
    assert audited.detail["training_set"] == built.record.id

    assert cli(store, "offline", "gc", "--retention", "0s").exit_code == 0
    assert not any((table.root / p).exists() for p in only_it)
    again = cli(store, "training-sets", "delete", str(built.record.id), "--yes")
    assert again.exit_code == 1
    assert f"No training set #{built.record.id}" in again.output


def test_snapshot_commands_refuse_what_they_cannot_use(
    store: FeatureStore, view: FeatureView, tmp_path: Path
) -> None:
    built = first_build(store, view)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("something")
    refused = cli(store, "training-sets", "export", str(built.record.id), "--out", str(full))
    assert refused.exit_code == 1
    assert "is not an empty folder" in refused.output
    assert (full / "x").read_text() == "something"
    # A set built in memory is exported from a rebuild (checked against its fingerprint).
    folder = tmp_path / "snap"
    exported = cli(store, "training-sets", "export", "--latest", "--out", str(folder), "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["data_source"] == "rebuilt"
    assert json.loads(exported.output)["training_set"] == built.record.id

    def verify(target: Path) -> Any:
        return runner.invoke(app, ["training-sets", "verify", str(target)])

    assert "has no manifest.json: not a training-set export" in verify(tmp_path / "nowhere").output
    manifest = json.loads((folder / "manifest.json").read_text())
    for broken, expected in (
        ("{not json", "is not valid JSON"),
        (json.dumps([1, 2]), "is not a featurestore-training-set/1 manifest"),
        (json.dumps({**manifest, "format": "other/9"}), "format 'other/9'"),
        (json.dumps({**manifest, "fingerprint_algorithm": "md5"}), "fingerprinted with 'md5'"),
        (json.dumps({**manifest, "data": "missing.parquet"}), "has no data file"),
        (json.dumps({**manifest, "fingerprint": "0" * 64}), "is not the recorded set"),
        (json.dumps({**manifest, "rows": "5"}), "its manifest says '5' rows"),
    ):
        (folder / "manifest.json").write_text(broken)
        result = verify(folder)
        assert result.exit_code == 1, broken
        assert expected in result.output, result.output

    bad = cli(store, "offline", "gc", "--retention", "soon")
    assert bad.exit_code == 1
    assert "--retention 'soon' is not a duration" in bad.output


@pytest.mark.slow
def test_a_duckdb_set_rebuilt_on_spark_is_identical(
    store: FeatureStore, view: FeatureView, spark: Any, tmp_path: Path
) -> None:
    from featurestore.offline.spark_engine import SparkEngine

    built = first_build(store, view, tmp_path / "train.parquet")
    impatient(store).write(view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3))
    rebuilt = store.rebuild_training_set(built.record.id, engine=SparkEngine(spark))
    assert rebuilt.fingerprint == built.record.fingerprint


class ReplacingEngine:
    """DuckDB, but a window replace and a gc with no retention land while it joins: a
    join that outlasts the retention."""

    name = "duckdb"

    def __init__(self, store: FeatureStore, view: FeatureView) -> None:
        self.inner = store.offline_engine("duckdb")
        self.store, self.view = store, view

    def join(self, request: Any) -> pa.Table:
        table = impatient(self.store).table("user_stats", 1)
        assert (table.root / "_pins").is_dir()  # held before the join started
        impatient(self.store).write(
            self.view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3)
        )
        return self.inner.join(request)

    def join_to_parquet(self, request: Any, path: Path) -> int:  # pragma: no cover
        raise NotImplementedError


def test_a_build_holds_what_it_reads_before_it_joins(
    store: FeatureStore, view: FeatureView
) -> None:
    offline = impatient(store)
    offline.write(view, 1, rows([DAY1 + HOUR, DAY1 + 5 * HOUR], users=[1, 2]))
    offline.write(view, 1, rows([DAY2, DAY2 + HOUR, DAY2 + 3 * HOUR], users=[1, 2, 3]))
    built = store.get_training_data(
        entities(), features=FEATURES, engine=ReplacingEngine(store, view)
    )
    assert built.table is not None
    assert built.table.column("avg_amount").to_pylist()[0] == 1.0  # commit 2's, not the replace's
    pins = offline.table("user_stats", 1).root / "_pins"
    assert sorted(p.name for p in pins.iterdir()) == [f"{built.record.id}.json"]  # pending: gone
    assert store.rebuild_training_set(built.record.id).fingerprint == built.record.fingerprint


def test_gc_releases_the_pins_of_a_build_that_stopped_after_a_day(
    store: FeatureStore, view: FeatureView
) -> None:
    from featurestore.offline import pins

    offline = impatient(store)
    offline.write(view, 1, rows([DAY2], users=[1]))
    table = offline.table("user_stats", 1)
    pins.pin(table.root, "pending-recent", 1, None)
    pins.pin(table.root, "pending-stale", 1, None)
    stale = table.root / "_pins" / "pending-stale.json"
    stale.write_text(json.dumps({"training_set": None, "sequence": 1, "pinned_at": 1.0}))
    offline.write(view, 1, rows([DAY2], users=[1], amount=7), window=(DAY2, DAY3))
    result = cli(store, "offline", "gc", "--retention", "0s")
    assert result.exit_code == 0, result.output
    assert "release a pin: a training-set build that pinned at 1970-01-01" in result.output
    assert "keep _manifests/0000000001.json: read by a training-set build in progress" in (
        result.output
    )
    assert not stale.exists()
    assert (table.root / "_pins" / "pending-recent.json").exists()


def test_as_of_and_spine_sets_rebuild_identically_after_later_corrections(
    store: FeatureStore, view: FeatureView
) -> None:
    """A set built "as known at t" and one whose entity rows came from a spine rebuild to
    the same content, however the tables moved on (a correction landed after t included)."""
    offline = impatient(store)
    offline.write(view, 1, rows([DAY1 + HOUR, DAY1 + 5 * HOUR], users=[1, 2]))
    known_at = datetime.now(UTC)
    time.sleep(0.01)
    offline.write(view, 1, rows([DAY1 + HOUR], users=[1], amount=70))  # a late correction
    as_of = store.get_training_data(entities(), features=FEATURES, as_of=known_at)
    spine = store.get_training_data(
        features=["user_stats:avg_amount"], spine="user_stats", start=DAY1, end=DAY3
    )
    assert as_of.record.as_of is not None
    assert spine.record.spine is not None
    offline.write(view, 1, rows([DAY1 + HOUR], users=[1], amount=90), window=(DAY1, DAY2))
    offline.table("user_stats", 1).collect_garbage(by="test")
    for built in (as_of, spine):
        rebuilt = store.rebuild_training_set(built.record.id)
        assert rebuilt.fingerprint == built.record.fingerprint
        assert rebuilt.table is not None
        assert rebuilt.table.equals(built.table)
    # The correction landed after known_at: the as-of set never saw it.
    assert as_of.table is not None
    assert 70.0 not in as_of.table.column("avg_amount").to_pylist()


def test_lineage_and_openlineage_show_as_of_and_the_spine(
    store: FeatureStore, view: FeatureView
) -> None:
    """What chose a set's rows is part of its lineage: the as-of time and the spine."""
    from featurestore.lineage.openlineage import run_events
    from featurestore.lineage.queries import feature_lineage

    impatient(store).write(view, 1, rows([DAY1 + HOUR, DAY1 + 5 * HOUR], users=[1, 2]))
    known_at = datetime.now(UTC)
    as_of = store.get_training_data(entities(), features=FEATURES, as_of=known_at)
    spine = store.get_training_data(
        features=["user_stats:avg_amount"], spine="user_stats", start=DAY1, end=DAY3
    )
    found = feature_lineage(
        store.registry,
        store.snapshot(),
        store.config.offline_store_path,
        "user_stats:avg_amount",
        "allow",
    )
    by_id = {ts["id"]: ts for ts in found["training_sets"]}
    assert by_id[as_of.record.id]["as_of"] == as_of.record.as_of
    assert by_id[as_of.record.id]["spine"] is None
    assert by_id[spine.record.id]["spine"]["view"] == "user_stats@v1"
    events = list(
        run_events(store.registry, store.snapshot(), store.config.repo_path, "127.0.0.1:9092")
    )
    facets = {
        e["run"]["facets"]["featurestore_training_set"]["id"]: e["run"]["facets"][
            "featurestore_training_set"
        ]
        for e in events
        if e["eventType"] == "COMPLETE" and "featurestore_training_set" in e["run"]["facets"]
    }
    assert facets[as_of.record.id]["as_of"] == as_of.record.as_of.isoformat()
    assert facets[spine.record.id]["spine"]["view"] == "user_stats@v1"
    assert facets[spine.record.id]["fingerprint"] == spine.record.fingerprint
    shown = cli(store, "lineage", "feature", "user_stats:avg_amount").output
    assert f"#{as_of.record.id} (no model)" in shown
    assert "as known at " in shown
    assert "spine user_stats@v1 [" in shown
