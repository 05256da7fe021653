"""Spark batch materialization against real Spark (local), real Parquet and a real Redis."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.devservices import free_port
from featurestore.errors import (
    FeatureViewNotFound,
    MaterializationError,
    OnlineStoreUnavailable,
    SchemaMismatchError,
    SourceNotFoundError,
    TransformationError,
    ValidationFailedError,
)
from featurestore.materialize.job import materialize as run_materialize
from tests.helpers import replace_in_file, write_repo

pytestmark = [pytest.mark.services, pytest.mark.slow]
PAUSED_JOB = str(Path(__file__).with_name("paused_job.py"))  # stops at a stage
UTC_US = pa.timestamp("us", tz="UTC")
_projects = itertools.count()

DEFS = '''
from datetime import timedelta

import pyarrow.compute as pc

from featurestore import (
    Entity, FeatureView, Field, Float64, Int64, ParquetSource, String, expect_between,
    expect_not_null,
)

user = Entity(name="user", join_key="user_id", dtype=Int64)
src = ParquetSource(
    name="src", path="data/src", timestamp_field="ts", created_timestamp_field="created"
)

user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    source=src,
    schema=[
        Field(name="amount", dtype=Float64),
        Field(name="txn_count", dtype=Int64),
        Field(name="country", dtype=String),
    ],
    ttl=timedelta(days=30),
    expectations=[expect_between("amount", 0, 1000), expect_not_null("country")],
)


def doubled(table):
    """Row-local: amount x 2."""
    return table.append_column("amount_x2", pc.multiply(table["amount"], 2.0))


user_doubled = FeatureView(
    name="user_doubled",
    entities=[user],
    source=src,
    schema=[Field(name="amount_x2", dtype=Float64)],
    ttl=timedelta(days=30),
    transformation=doubled,
)
'''

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
T0 = (NOW - 3 * DAY).replace(hour=10, minute=0, second=0)  # three days ago, 10:00


@pytest.fixture(params=["spark", "local"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every behaviour test runs on both engines: they must give the same results."""
    return request.param


@pytest.fixture
def materialize(engine: str, spark: Any) -> Any:
    def run(store: FeatureStore, *args: Any, session: Any = None, **kwargs: Any) -> Any:
        if engine == "spark":
            return run_materialize(store, *args, session=spark, **kwargs)
        return run_materialize(store, *args, engine="local", **kwargs)

    return run


@pytest.fixture
def store(tmp_path: Path, services: Any) -> Iterator[FeatureStore]:
    config = (
        f"project: mat{next(_projects)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": config, "defs.py": DEFS})
    with FeatureStore(repo) as s:
        s.apply()
        yield s


def write_source(store: FeatureStore, rows: list[tuple], name: str = "part") -> None:
    """rows: (user_id, ts, created, amount, txn_count, country), Hive date partitions."""
    root = store.config.repo_path / "data" / "src"
    table = pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([r[1] for r in rows], UTC_US),
            "created": pa.array([r[2] for r in rows], UTC_US),
            "amount": pa.array([r[3] for r in rows], pa.float64()),
            "txn_count": pa.array([r[4] for r in rows], pa.int64()),
            "country": pa.array([r[5] for r in rows], pa.string()),
        }
    )
    for date in sorted({r[1].date() for r in rows}):
        part = table.filter(
            pa.array([r[1].date() == date for r in rows]),
        )
        folder = root / f"date={date.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, folder / f"{name}.parquet")


def offline_rows(store: FeatureStore, view: str = "user_stats") -> list[tuple]:
    """(user_id, event time, amount, txn_count, country) of every committed row, sorted."""
    table = store.offline_store().table(view, 1)
    out = []
    for f in table.manifest().files:
        data = pq.read_table(table.root / f.path)
        cols = ["user_id", "event_timestamp", "amount", "txn_count", "country"]
        out += list(zip(*(data.column(c).to_pylist() for c in cols), strict=True))
    return sorted(out)


def online(store: FeatureStore, users: list[int], features: list[str]) -> dict[str, list]:
    return store.get_online_features([{"user_id": u} for u in users], features=features).to_dict()


ROWS = [
    # user, event time, created, amount, txn_count, country
    (1, T0, T0, 10.0, 1, "DE"),
    (1, T0 + timedelta(hours=5), T0 + timedelta(hours=5), 20.0, 2, "DE"),
    (1, T0 + timedelta(hours=5), T0 + timedelta(hours=6), 25.0, 3, "DE"),  # tie: later created
    (2, T0 + DAY, T0 + DAY, 30.0, 1, "FR"),
    (2, T0 + 2 * DAY, None, 40.0, 2, "FR"),
    (3, T0 - 40 * DAY, T0 - 40 * DAY, 50.0, 1, "NL"),  # older than the TTL: offline only
]
USER_STATS = ["user_stats:amount", "user_stats:txn_count", "user_stats:country"]


def test_exact_values_offline_and_online(store: FeatureStore, spark: Any, materialize: Any) -> None:
    write_source(store, ROWS)
    runs = materialize(store, ["user_stats", "user_doubled"], session=spark)
    assert [r.record.status for r in runs] == ["succeeded", "succeeded"]
    stats = runs[0].record
    assert (stats.rows_read, stats.rows_offline, stats.rows_online) == (6, 5, 2)  # 3: expired
    # Offline: the tie keeps the later created row; every other row as written.
    assert offline_rows(store) == [
        (1, T0, 10.0, 1, "DE"),
        (1, T0 + timedelta(hours=5), 25.0, 3, "DE"),
        (2, T0 + DAY, 30.0, 1, "FR"),
        (2, T0 + 2 * DAY, 40.0, 2, "FR"),
        (3, T0 - 40 * DAY, 50.0, 1, "NL"),
    ]
    # Online: the latest row per entity; user 3's is past the TTL, so missing.
    got = online(store, [1, 2, 3], USER_STATS)
    assert got["amount"] == [25.0, 40.0, None]
    assert got["country"] == ["DE", "FR", None]
    assert online(store, [1, 2], ["user_doubled:amount_x2"])["amount_x2"] == [50.0, 80.0]
    # Online equals the latest offline value per entity (what a training set sees now).
    latest = store.get_training_data(
        pa.table({"user_id": [1, 2], "event_timestamp": pa.array([NOW, NOW], UTC_US)}),
        features=USER_STATS,
    ).table
    assert latest.column("amount").to_pylist() == got["amount"][:2]
    # Lineage.
    (record,) = store.registry.runs.records(store.project, "user_stats")
    assert record.status == "succeeded"
    assert record.validation["success"] is True
    assert len(record.sources) == 4
    assert all(s["mtime"] for s in record.sources)
    assert record.offline_manifest == 1


def test_a_tie_with_a_null_created_time_goes_to_the_row_that_has_one(
    store: FeatureStore, spark: Any, materialize: Any
) -> None:
    # Same user and event time: the row without a created time loses, offline and online,
    # in whichever order the rows arrive.
    late = T0 + timedelta(hours=2)
    write_source(store, [(7, late, None, 70.0, 1, "DE"), (8, late, late, 81.0, 2, "FR")], "a")
    write_source(store, [(7, late, late, 71.0, 3, "DE"), (8, late, None, 80.0, 4, "FR")], "b")
    materialize(store, ["user_stats"])
    assert offline_rows(store) == [(7, late, 71.0, 3, "DE"), (8, late, 81.0, 2, "FR")]
    assert online(store, [7, 8], USER_STATS)["amount"] == [71.0, 81.0]


def test_rerunning_a_window_replaces_it_and_a_late_backfill_never_regresses_online(
    store: FeatureStore, spark: Any, materialize: Any
) -> None:
    write_source(store, ROWS)
    materialize(store, ["user_stats"], session=spark)
    first = offline_rows(store)
    materialize(store, ["user_stats"], session=spark)
    assert offline_rows(store) == first  # idempotent: no duplicates

    # A backfill of an older window, with a corrected (older) value for user 2.
    late = [(2, T0 + timedelta(hours=1), T0 + 3 * DAY, 999.0, 9, "FR")]
    write_source(store, late, name="late")
    materialize(store, ["user_stats"], start=T0, end=T0 + DAY, session=spark)
    assert online(store, [2], USER_STATS)["amount"] == [40.0]  # the newer value stays
    assert (2, T0 + timedelta(hours=1), 999.0, 9, "FR") in offline_rows(store)
    assert len(offline_rows(store)) == len(first) + 1


def test_failing_expectations_write_nothing_and_say_where(
    store: FeatureStore, spark: Any, materialize: Any
) -> None:
    bad = [*ROWS, (4, T0, T0, 5000.0, 1, "DE"), (5, T0, T0, 1.0, 1, None)]
    write_source(store, bad)
    with pytest.raises(ValidationFailedError) as info:
        materialize(store, ["user_stats"], session=spark)
    message = str(info.value)
    assert "amount between in [0, 1000]: 1 of 8 rows (12.50%) unexpected e.g. 5000" in message
    assert "country not_null: 1 of 8 rows" in message
    report = Path(message.rsplit("Full report: ", 1)[1])
    assert report.is_file()
    assert offline_rows(store) == []
    assert online(store, [1], USER_STATS)["amount"] == [None]
    (record,) = store.registry.runs.records(store.project, "user_stats")
    assert record.status == "failed"
    assert record.validation["success"] is False


def test_incremental_runs_start_at_the_watermark(
    store: FeatureStore, spark: Any, materialize: Any
) -> None:
    write_source(store, ROWS)
    (first,) = materialize(store, ["user_stats"], end=T0 + DAY, incremental=True, session=spark)
    assert first.record.window_start is None
    assert first.record.rows_read == 4  # rows before T0 + 1 day
    (second,) = materialize(store, ["user_stats"], incremental=True, session=spark)
    assert second.record.window_start == T0 + DAY
    assert second.record.rows_read == 2
    assert len(offline_rows(store)) == 5
    assert online(store, [2], USER_STATS)["amount"] == [40.0]
    assert store.registry.runs.watermark(store.project, "user_stats", 1) == second.record.window_end


# -- bad input ------------------------------------------------------------------------------


def test_a_missing_source_path_names_the_view_and_path(
    store: FeatureStore, spark: Any, materialize: Any
) -> None:
    with pytest.raises(SourceNotFoundError, match=r"user_stats@v1: source 'src' has no Parquet"):
        materialize(store, ["user_stats"], session=spark)
    assert store.registry.runs.records(store.project)[0].status == "failed"


def _rewrite_source(store: FeatureStore, change: Any, only_one: bool = False) -> Path:
    files = sorted((store.config.repo_path / "data" / "src").glob("date=*/*.parquet"))
    for f in files[-1:] if only_one else files:
        pq.write_table(change(pq.read_table(f, partitioning=None)), f)
    return files[-1]


def test_a_mistyped_column_is_refused(store: FeatureStore, spark: Any, materialize: Any) -> None:
    write_source(store, ROWS)
    _rewrite_source(store, lambda t: t.set_column(3, "amount", t["amount"].cast(pa.string())))
    with pytest.raises(SchemaMismatchError, match="source column 'amount' is string, but the view"):
        materialize(store, ["user_stats"], session=spark)
    assert offline_rows(store) == []


def test_one_file_of_another_type_is_named(
    store: FeatureStore, spark: Any, materialize: Any
) -> None:
    write_source(store, ROWS)
    bad = _rewrite_source(
        store, lambda t: t.set_column(3, "amount", t["amount"].cast(pa.string())), only_one=True
    )
    with pytest.raises(SchemaMismatchError) as info:
        materialize(store, ["user_stats"], session=spark)
    assert f"{bad}: column 'amount' is " in str(info.value)  # BINARY (Spark), string (local)
    assert "in this file but" in str(info.value)
    assert offline_rows(store) == []


def test_a_missing_column_is_refused(store: FeatureStore, spark: Any, materialize: Any) -> None:
    write_source(store, ROWS)
    _rewrite_source(store, lambda t: t.drop_columns(["country"]))
    with pytest.raises(SchemaMismatchError, match="has no column 'country'"):
        materialize(store, ["user_stats"], session=spark)
    assert offline_rows(store) == []


def test_a_failing_transformation_names_the_view_and_error(
    store: FeatureStore, spark: Any, materialize: Any
) -> None:
    write_source(store, ROWS)
    defs = store.config.repo_path / "defs.py"
    replace_in_file(
        defs,
        'return table.append_column("amount_x2", pc.multiply(table["amount"], 2.0))',
        'return table.append_column("amount_x2", pc.multiply(table["amont"], 2.0))',
    )
    store.apply()  # a new version (the transformation changed)
    with pytest.raises(TransformationError, match=r"user_doubled@v2: transformation 'doubled'"):
        materialize(store, ["user_doubled"], session=spark)
    assert store.offline_store().table("user_doubled", 2).manifest().files == ()


def test_unknown_and_streaming_views_are_refused(
    store: FeatureStore, spark: Any, materialize: Any
) -> None:
    with pytest.raises(FeatureViewNotFound, match="Did you mean 'user_stats'"):
        materialize(store, ["user_stat"], session=spark)
    with pytest.raises(MaterializationError, match="window is empty"):
        materialize(store, start=NOW, end=NOW - DAY, session=spark)


def test_redis_down_commits_nothing_offline(tmp_path: Path, spark: Any, materialize: Any) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = f"project: down\nregistry: data/registry.db\nonline_store:\n  redis_url: {url}\n"
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": config, "defs.py": DEFS})
    with FeatureStore(repo) as store:
        store.apply()
        write_source(store, ROWS)
        with pytest.raises(OnlineStoreUnavailable, match="user_stats@v1: Redis at"):
            materialize(store, ["user_stats"], session=spark)
        assert offline_rows(store) == []
        assert store.registry.runs.records(store.project)[0].status == "failed"


# -- crash and re-run ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine_name", "stage"), [("spark", "staged"), ("spark", "online"), ("local", "online")]
)
def test_a_job_killed_mid_run_completes_when_run_again(
    store: FeatureStore, spark: Any, tmp_path: Path, engine_name: str, stage: str
) -> None:
    write_source(store, ROWS)
    marker = tmp_path / "paused"
    repo = str(store.config.repo_path)
    cmd = [sys.executable, PAUSED_JOB, stage, str(marker), "materialize", repo, engine_name]
    proc = subprocess.Popen(
        [*cmd, "user_stats"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, "the job ended before reaching the pause"
        assert time.monotonic() < deadline, "the job did not reach the pause"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its Spark JVM, mid-run
    proc.wait(30)
    assert offline_rows(store) == []  # nothing committed
    staging = store.offline_store().table("user_stats", 1).root / "_staging"
    if stage == "staged":
        assert any(staging.iterdir())  # the dead run's staged files

    (rerun,) = run_materialize(store, ["user_stats"], session=spark)
    assert rerun.record.status == "succeeded"
    assert len(offline_rows(store)) == 5
    assert online(store, [1, 2], USER_STATS)["amount"] == [25.0, 40.0]
    assert not staging.exists() or not any(staging.iterdir())
    statuses = [r.status for r in store.registry.runs.records(store.project, "user_stats")]
    assert statuses == ["succeeded", "failed"]  # the killed run, marked abandoned
    assert "abandoned" in store.registry.runs.records(store.project, "user_stats")[1].error


# -- the command line ----------------------------------------------------------------------

# Hides pyspark as if the spark extra were not installed, then runs the CLI.
WITHOUT_PYSPARK = (
    "import sys; sys.modules['pyspark'] = None;"
    "from featurestore.cli import main; sys.argv[0] = 'featurestore'; main()"
)


def test_materialize_with_the_local_engine_needs_no_pyspark(store: FeatureStore) -> None:
    write_source(store, ROWS)
    repo = str(store.config.repo_path)
    cmd = [sys.executable, "-c", WITHOUT_PYSPARK, "materialize", "user_stats", "--repo", repo]
    local = subprocess.run([*cmd, "--engine", "local"], capture_output=True, text=True)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "user_stats@v1: 2 entities written online" in local.stdout
    assert len(offline_rows(store)) == 5
    assert online(store, [1, 2], USER_STATS)["amount"] == [25.0, 40.0]
    assert store.registry.runs.records(store.project)[0].engine == "in-process (pyarrow)"
    # Spark itself still says which extra to install, without a traceback.
    spark = subprocess.run([*cmd, "--engine", "spark"], capture_output=True, text=True)
    assert spark.returncode != 0
    assert "pip install 'featurestore[spark]'" in spark.stdout + spark.stderr
    assert "Traceback" not in spark.stdout + spark.stderr


def test_materialize_and_runs_commands(store: FeatureStore) -> None:
    from typer.testing import CliRunner

    from featurestore.cli import app

    runner = CliRunner()
    repo = str(store.config.repo_path)
    write_source(store, ROWS)
    out = runner.invoke(app, ["materialize", "user_stats", "-r", repo])
    assert out.exit_code == 0, out.output
    assert "user_stats@v1: read 6 rows from 4 file(s)" in out.output
    assert "user_stats@v1: 2 expectation(s) passed" in out.output
    assert "user_stats@v1: 2 entities written online" in out.output
    assert "user_stats@v1: 5 rows committed offline" in out.output

    bad = [(4, NOW - timedelta(hours=1), NOW, -5.0, 1, "DE")]
    write_source(store, bad, name="bad")
    start = (NOW - timedelta(hours=2)).isoformat()
    out = runner.invoke(app, ["materialize", "user_stats", "-r", repo, "--start", start])
    assert out.exit_code == 1
    assert "the batch failed its expectations; nothing was written" in out.output
    assert "amount between in [0, 1000]: 1 of 1 rows (100.00%) unexpected e.g. -5.0" in out.output

    out = runner.invoke(app, ["runs", "user_stats", "-r", repo])
    assert out.exit_code == 0, out.output
    assert out.output.index("failed") < out.output.index("succeeded")  # newest first
    assert "validation failed: amount between in [0, 1000]" in out.output
    assert "engine     in-process (pyarrow)" in out.output  # small and local: no Spark
    listed = json.loads(runner.invoke(app, ["runs", "-r", repo, "--json"]).output)
    assert [r["status"] for r in listed] == ["failed", "succeeded"]
    assert listed[1]["rows_offline"] == 5
    bad_time = runner.invoke(app, ["materialize", "-r", repo, "--start", "yesterday"])
    assert bad_time.exit_code == 1
    assert "--start 'yesterday' is not an ISO date" in bad_time.output
