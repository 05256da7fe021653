"""Training data "as known at t" (``as_of``): only rows landed in the offline store by t.

The property tests write the random scenarios of ``test_pit_join`` one write at a time, note when
each write had landed, pick a time between two writes (or before all, or after all) and compare
``get_training_data(..., as_of=t)`` with the oracle given the same cut, on DuckDB and Spark. The
worked examples pin the late-correction cases of Feast issue #6615.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.errors import EntityInputError
from tests.helpers import write_repo
from tests.pit_oracle import CREATED_TS, EVENT_TS, OracleView, point_in_time_join, utc
from tests.test_pit_join import (
    KEYS,
    PIT_REPO,
    TTLS,
    VIEWS,
    Scenario,
    assert_matches_oracle,
    at,
    entity_table,
    feature_table,
    merge,
    requested_for,
    scenarios,
    spark_engine,
    with_offline_root,
)


@pytest.fixture(scope="module")
def pit_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    repo = write_repo(tmp_path_factory.mktemp("asof") / "repo", PIT_REPO, project="pit")
    with FeatureStore(repo) as store:
        store.apply()
        yield store


@pytest.fixture
def fresh(pit_store: FeatureStore, tmp_path: Path) -> FeatureStore:
    """The module's store with an empty offline store of its own."""
    return with_offline_root(pit_store, tmp_path / "offline")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("examples")


def load_timed(
    store: FeatureStore, scenario: Scenario, replaces: frozenset[int] = frozenset()
) -> tuple[dict[str, OracleView], list[Any]]:
    """Write the scenario one write at a time; the oracle's views with each write's landing
    time, and the instants that separate the writes (before the first, after each).

    The writes numbered in ``replaces`` replace the window their rows span: in the oracle,
    the rows of earlier writes in that window go; the others stay in their write (same
    landing time, same place in the tie order), as the store keeps a cut file's remainder."""
    snapshot = store.snapshot()
    offline = store.offline_store()
    oracle = {v: OracleView(v, KEYS[v], TTLS[v]) for v in VIEWS}
    cuts = [datetime.now(UTC)]
    number = 0
    for view_name in VIEWS:
        view = snapshot.feature_view(view_name)
        for write in scenario.writes[view_name]:
            table = feature_table(
                view_name, write.rows, style=write.style, with_created=write.created_at is None
            )
            window = None
            if number in replaces and write.rows:
                times = [_event(r) for r in write.rows]
                window = (min(times), max(times) + timedelta(minutes=1))
                for rows in oracle[view_name].writes:
                    rows[:] = [r for r in rows if not window[0] <= _event(r) < window[1]]
            number += 1
            _tick(cuts[-1])
            offline.write(view, 1, table, created_at=write.created_at, window=window)
            landed = datetime.now(UTC)
            oracle[view_name].writes.append(list(write.rows))
            oracle[view_name].landed.append(landed)
            cuts.append(landed)
    return oracle, cuts


def _event(row: dict[str, Any]) -> datetime:
    event = utc(row[EVENT_TS])
    assert event is not None
    return event


def _tick(after: datetime) -> None:
    """Wait until the clock has passed ``after``: the next write lands strictly later."""
    while datetime.now(UTC) <= after:
        time.sleep(0.0005)


def run_as_of(
    store: FeatureStore,
    scenario: Scenario,
    pick: int,
    engines: list[Any],
    replaces: frozenset[int] = frozenset(),
) -> list[pa.Table]:
    oracle, cuts = load_timed(store, scenario, replaces)
    as_of = cuts[pick % len(cuts)]
    entities = entity_table(scenario.entities, scenario.entity_style)
    requested = requested_for(scenario.refs, oracle, scenario.full_feature_names)
    expected = point_in_time_join(scenario.entities, requested, as_of=as_of)
    results = []
    for engine in engines:
        built = store.get_training_data(
            entities,
            features=scenario.refs,
            full_feature_names=scenario.full_feature_names,
            engine=engine,
            as_of=as_of,
        )
        assert built.table is not None
        assert built.record.as_of == as_of
        assert_matches_oracle(built.table, entities, expected, requested)
        results.append(built.table)
    return results


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=scenarios(),
    pick=st.integers(0, 12),
    replaces=st.frozensets(st.integers(0, 9), max_size=4),
)
def test_duckdb_as_of_matches_oracle(
    pit_store: FeatureStore,
    scratch: Path,
    scenario: Scenario,
    pick: int,
    replaces: frozenset[int],
) -> None:
    """Appends, late corrections and window replaces, cut at any point between writes."""
    root = Path(tempfile.mkdtemp(dir=scratch))
    try:
        run_as_of(with_offline_root(pit_store, root), scenario, pick, ["duckdb"], replaces)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(scenarios(), min_size=3, max_size=4), pick=st.integers(0, 40))
def test_spark_as_of_matches_oracle_and_duckdb(
    pit_store: FeatureStore, scratch: Path, spark: Any, parts: list[Scenario], pick: int
) -> None:
    root = Path(tempfile.mkdtemp(dir=scratch))
    try:
        duck, sparked = run_as_of(
            with_offline_root(pit_store, root),
            merge(parts),
            pick,
            ["duckdb", spark_engine(spark)],
        )
        assert sparked.equals(duck)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- late corrections, worked by hand -------------------------------------------------------------


def _write(store: FeatureStore, rows: list[dict[str, Any]]) -> datetime:
    """One write of user_stats rows; returns an instant after it landed."""
    view = store.snapshot().feature_view("user_stats")
    store.offline_store().write(view, 1, feature_table("user_stats", rows))
    landed = datetime.now(UTC)
    _tick(landed)
    return landed


def _score(store: FeatureStore, as_of: Any, engine: Any = "duckdb") -> list[Any]:
    entities = entity_table([{"user_id": 1, "merchant_id": None, EVENT_TS: at(10)}])
    built = store.get_training_data(
        entities, features=["user_stats:score"], as_of=as_of, engine=engine
    )
    assert built.table is not None
    return built.table.column("score").to_pylist()


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_late_corrections(fresh: FeatureStore, engine: str, request: pytest.FixtureRequest) -> None:
    runner = "duckdb" if engine == "duckdb" else spark_engine(request.getfixturevalue("spark"))
    before_any = datetime.now(UTC)
    _tick(before_any)
    fact = {"user_id": 1, EVENT_TS: at(5), CREATED_TS: at(5), "score": 1.0, "cnt": 1}
    first = _write(fresh, [fact])
    # A correction of the same fact with the same created time: it lands later and wins the tie.
    tie = _write(fresh, [{**fact, "score": 2.0}])
    # A correction stamped as created long ago (the producer's clock, a backfill): created
    # time says "known at 5", yet the store only learnt it now.
    backdated = _write(fresh, [{**fact, CREATED_TS: at(6), "score": 3.0}])
    assert _score(fresh, before_any, runner) == [None]
    assert _score(fresh, first, runner) == [1.0]
    assert _score(fresh, tie, runner) == [2.0]
    assert _score(fresh, backdated, runner) == [3.0]
    assert _score(fresh, None, runner) == [3.0]  # no as_of: everything landed


def test_as_of_survives_a_window_replace_of_other_rows(fresh: FeatureStore) -> None:
    """A replace rewrites the remainder of a file it cuts: the remainder keeps its landing time."""
    view = fresh.snapshot().feature_view("user_stats")
    offline = fresh.offline_store()
    rows = [
        {"user_id": 1, EVENT_TS: at(5), CREATED_TS: at(5), "score": 1.0, "cnt": 1},
        {"user_id": 2, EVENT_TS: at(15), CREATED_TS: at(15), "score": 9.0, "cnt": 1},
    ]
    landed = _write(fresh, rows)
    replaced = feature_table("user_stats", [{**rows[1], "score": 8.0}])
    offline.write(view, 1, replaced, window=(at(12), at(20)))
    assert _score(fresh, landed) == [1.0]  # the cut file's other row is still known at `landed`
    table = offline.table("user_stats", 1)
    files = table.manifest().files
    assert len(files) == 2
    assert len({f.landed_us for f in files}) == 2


def test_as_of_is_recorded_and_accepts_iso_strings(fresh: FeatureStore) -> None:
    landed = _write(fresh, [{"user_id": 1, EVENT_TS: at(5), "score": 1.0, "cnt": 1}])
    assert _score(fresh, landed.isoformat()) == [1.0]
    naive = (landed - timedelta(hours=1)).replace(tzinfo=None)  # naive = UTC: before the write
    assert _score(fresh, naive) == [None]
    records = fresh.registry.training_sets(fresh.project)
    assert records[0].as_of == landed - timedelta(hours=1)
    assert records[1].as_of == landed


@pytest.mark.parametrize("bad", ["yesterday", 12345, "2026-13-01"])
def test_bad_as_of_is_a_typed_error(fresh: FeatureStore, bad: Any) -> None:
    with pytest.raises(EntityInputError, match="as_of"):
        _score(fresh, bad)


def test_training_sets_recorded_before_schema_8_stay_readable(tmp_path: Path) -> None:
    import sqlite3

    repo = write_repo(tmp_path / "repo", PIT_REPO, project="pit")
    with FeatureStore(repo) as store:
        store.apply()
        _write(store, [{"user_id": 1, EVENT_TS: at(5), "score": 1.0, "cnt": 1}])
        _score(store, None)
    with sqlite3.connect(repo / "data" / "registry.db") as conn:  # back to schema v7
        conn.execute("ALTER TABLE fs_training_sets DROP COLUMN as_of")
        conn.execute("ALTER TABLE fs_training_sets DROP COLUMN spine")
        conn.execute("UPDATE fs_meta SET value = '7' WHERE key = 'schema'")
    with FeatureStore(repo) as store:
        assert _score(store, datetime.now(UTC)) == [1.0]
        old, new = reversed(store.registry.training_sets(store.project))
        assert (old.as_of, old.spine) == (None, None)
        assert new.as_of is not None


def test_cli_as_of(pit_store: FeatureStore, tmp_path: Path) -> None:
    """The CLI reads the repo's own offline root: the module store's default one."""
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from featurestore.cli import app

    landed = _write(pit_store, [{"user_id": 1, EVENT_TS: at(5), "score": 1.0, "cnt": 1}])
    _write(pit_store, [{"user_id": 1, EVENT_TS: at(5), "score": 2.0, "cnt": 1}])
    entities = tmp_path / "entities.parquet"
    pq.write_table(entity_table([{"user_id": 1, "merchant_id": None, EVENT_TS: at(10)}]), entities)
    out = tmp_path / "set.parquet"
    repo = str(pit_store.config.repo_path)
    args = [
        "training-data",
        "-r",
        repo,
        "-f",
        "user_stats:score",
        "-e",
        str(entities),
        "-o",
        str(out),
    ]
    shown = CliRunner().invoke(app, [*args, "--as-of", landed.isoformat()])
    assert shown.exit_code == 0, shown.output
    assert f"as known at {landed.isoformat()}" in shown.output
    assert pq.read_table(out).column("score").to_pylist() == [1.0]
    latest = CliRunner().invoke(app, [*args, "--json"])
    assert json.loads(latest.output)["as_of"] is None
    assert pq.read_table(out).column("score").to_pylist() == [2.0]
    bad = CliRunner().invoke(app, [*args, "--as-of", "last week"])
    assert bad.exit_code == 1
    assert "--as-of 'last week' is not an ISO date" in bad.output


def test_stream_repair_keeps_the_landing_time_of_the_rows_it_keeps(tmp_path: Path) -> None:
    """A file holding a row from the future and a sane one: repair rewrites the sane one,
    which keeps its landing time (an as-of read still sees it as before)."""
    from featurestore.online.layout import ViewLayout
    from featurestore.streaming.landing import Landing, StreamPosition
    from featurestore.streaming.repair import repair
    from featurestore.times import micros
    from tests.test_stream import DEFS

    repo = write_repo(tmp_path / "repo", {"defs.py": DEFS.replace("TOPIC", "t")}, project="rep")
    with FeatureStore(repo) as store:
        store.apply()
        view = store.snapshot().feature_view("velocity")
        root = store.offline_store().table("velocity", 1).root
    landing = Landing(root, view, view.source)  # type: ignore[arg-type]
    sane, future = datetime(2026, 1, 7, 1, tzinfo=UTC), datetime(2026, 1, 7, 23, tzinfo=UTC)
    schema = landing.features_schema
    rows = [
        {f.name: None for f in schema} | {"user_id": 1, EVENT_TS: t, CREATED_TS: t}
        for t in (sane, future)
    ]
    table = pa.Table.from_pylist(rows, schema=schema)
    position = StreamPosition(offsets={0: 2}, max_event_us={0: micros(future)})
    landing.append(landing.features, table, position)
    (before,) = landing.features.files()
    _tick(datetime.now(UTC))
    bound = micros(datetime(2026, 1, 7, 12, tzinfo=UTC))
    report = repair(landing, ViewLayout.from_view("rep", view, 1), None, bound)
    assert report.feature_rows_removed == 1
    (after,) = landing.features.files()
    assert after.path != before.path  # rewritten without the future row ...
    assert after.landed_us == before.landed_us  # ... and still landed when it first did
