"""Training sets without an entity file: ``spine="VIEW", start=T0, end=T1``.

The entity rows are the spine view's own rows in [T0, T1): one per distinct (join keys, event time),
ordered by event time then keys. The property test writes random rows (``test_pit_join``'s
scenarios), computes that spine by brute force from the rows written, and compares the training
set with the oracle's point-in-time join of it; the other tests pin the errors and the record.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.errors import (
    EntityInputError,
    FeatureViewNotFound,
    InvalidReferenceError,
    OnDemandViewError,
    VersionNotFound,
)
from tests.helpers import write_repo
from tests.pit_oracle import CREATED_TS, EVENT_TS, OracleView, point_in_time_join, utc
from tests.test_pit_join import (
    KEYS,
    PIT_REPO,
    Scenario,
    at,
    entity_table,
    feature_table,
    load,
    requested_for,
    scenarios,
    with_offline_root,
)

ON_DEMAND = """
    from featurestore import Field, Float64, on_demand_feature_view
    from defs import user_stats


    @on_demand_feature_view(
        sources=[user_stats[["score"]]], schema=[Field(name="double_score", dtype=Float64)]
    )
    def doubled(row):
        return {"double_score": None if row["score"] is None else 2 * row["score"]}
"""


@pytest.fixture(scope="module")
def pit_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    files = {**PIT_REPO, "on_demand.py": ON_DEMAND}
    repo = write_repo(tmp_path_factory.mktemp("spine") / "repo", files, project="pit")
    with FeatureStore(repo) as store:
        store.apply()
        yield store


@pytest.fixture
def fresh(pit_store: FeatureStore, tmp_path: Path) -> FeatureStore:
    return with_offline_root(pit_store, tmp_path / "offline")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("examples")


def expected_spine(
    view: OracleView, start: datetime | None, end: datetime | None
) -> list[dict[str, Any]]:
    """Brute force: the distinct (keys, event time) of the rows written, in [start, end)."""
    seen = set()
    for rows in view.writes:
        for row in rows:
            event = utc(row[EVENT_TS])
            assert event is not None
            if (start is None or event >= start) and (end is None or event < end):
                seen.add((event, *(row[k] for k in view.join_keys)))
    out = []
    for event, *keys in sorted(seen):
        out.append({**dict(zip(view.join_keys, keys, strict=True)), EVENT_TS: event})
    return out


SPINE_VIEWS = ("pair_stats", "user_stats")
REFS_BY_SPINE = {
    # features whose keys the spine has
    "pair_stats": ("user_stats:score", "merchant_stats:label", "pair_stats:amount"),
    "user_stats": ("user_stats:score", "user_stats:cnt", "frac_ttl_stats:v"),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=scenarios(),
    spine=st.sampled_from(SPINE_VIEWS),
    window=st.tuples(st.one_of(st.none(), st.integers(-5, 150)), st.integers(1, 40)),
)
def test_spine_matches_oracle(
    pit_store: FeatureStore,
    scratch: Path,
    scenario: Scenario,
    spine: str,
    window: tuple[int | None, int],
) -> None:
    root = Path(tempfile.mkdtemp(dir=scratch))
    try:
        store = with_offline_root(pit_store, root)
        oracle = load(store, scenario)
        oracle.setdefault("frac_ttl_stats", OracleView("frac_ttl_stats", ("user_id",), None))
        start = None if window[0] is None else at(window[0])
        end = at((window[0] or 0) + window[1])
        entity_rows = expected_spine(oracle[spine], start, end)
        refs = list(REFS_BY_SPINE[spine])
        if not entity_rows:
            with pytest.raises(EntityInputError, match=f"Spine {spine}@v1 has no rows"):
                store.get_training_data(features=refs, spine=spine, start=start, end=end)
            return
        built = store.get_training_data(features=refs, spine=spine, start=start, end=end)
        assert built.table is not None
        requested = requested_for(refs, oracle, False)
        expected = point_in_time_join(entity_rows, requested)
        assert built.table.column_names == [
            *KEYS[spine],
            EVENT_TS,
            *(r.split(":")[1] for r in refs),
        ]
        got = built.table.to_pylist()
        assert got == expected
        assert built.record.spine == {
            "view": f"{spine}@v1",
            **({"start": start.isoformat()} if start else {}),
            "end": end.isoformat(),
        }
        assert built.record.entity_rows == len(entity_rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write_users(store: FeatureStore, rows: list[dict[str, Any]]) -> None:
    view = store.snapshot().feature_view("user_stats")
    store.offline_store().write(view, 1, feature_table("user_stats", rows))


def test_a_corrected_fact_is_one_spine_row_and_as_of_applies(fresh: FeatureStore) -> None:
    fact = {"user_id": 1, EVENT_TS: at(5), CREATED_TS: at(5), "score": 1.0, "cnt": 1}
    _write_users(fresh, [fact, {**fact, "user_id": 2, EVENT_TS: at(7)}])
    known = datetime.now(UTC)
    _write_users(fresh, [{**fact, CREATED_TS: at(6), "score": 2.0}])  # a correction
    _write_users(fresh, [{**fact, EVENT_TS: at(9), "score": 5.0}])  # a new fact, landed later
    built = fresh.get_training_data(
        features=["user_stats:score"], spine="user_stats", start=at(0), end=at(60)
    )
    assert built.table is not None
    assert built.table.to_pylist() == [
        {"user_id": 1, EVENT_TS: at(5), "score": 2.0},
        {"user_id": 2, EVENT_TS: at(7), "score": 1.0},
        {"user_id": 1, EVENT_TS: at(9), "score": 5.0},
    ]
    then = fresh.get_training_data(
        features=["user_stats:score"], spine="user_stats", start=at(0), end=at(60), as_of=known
    )
    assert then.table is not None
    assert then.table.to_pylist() == [
        {"user_id": 1, EVENT_TS: at(5), "score": 1.0},
        {"user_id": 2, EVENT_TS: at(7), "score": 1.0},
    ]
    # [start, end): a row exactly at end is out, one exactly at start is in.
    edge = fresh.get_training_data(
        features=["user_stats:cnt"], spine="user_stats", start=at(7), end=at(9)
    )
    assert edge.table is not None
    assert edge.table.column("user_id").to_pylist() == [2]


def test_spine_errors(fresh: FeatureStore, tmp_path: Path) -> None:
    _write_users(fresh, [{"user_id": 1, EVENT_TS: at(5), "score": 1.0, "cnt": 1}])
    refs = ["user_stats:score"]
    entities = entity_table([{"user_id": 1, "merchant_id": None, EVENT_TS: at(10)}])
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"spine": "doubled"}, OnDemandViewError, "on-demand view and cannot be a spine"),
        ({"spine": "user_stats", "start": at(30), "end": at(60)}, EntityInputError, "no rows"),
        ({"spine": "user_stats", "entities": entities}, EntityInputError, "not both"),
        ({"spine": "user_stats", "start": at(9), "end": at(9)}, EntityInputError, "is empty"),
        ({"spine": "user_stat"}, FeatureViewNotFound, "user_stats"),
        ({"spine": "user_stats@v7"}, VersionNotFound, "no version v7"),
        ({"spine": "user_stats:score"}, InvalidReferenceError, "not a view name"),
        ({"spine": "user_stats", "start": "2026-01-01"}, EntityInputError, "datetime"),
        ({"start": at(0)}, EntityInputError, "pass spine="),
        ({}, EntityInputError, "No entity rows"),
        (
            {"spine": "user_stats", "timestamp_column": "ts"},
            EntityInputError,
            "event_timestamp",
        ),
        ({"spine": "pair_stats"}, EntityInputError, "no rows"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            fresh.get_training_data(features=refs, **kwargs)
    # a spine without the keys a requested view needs: the join's own check names the key
    with pytest.raises(EntityInputError, match="merchant_id"):
        fresh.get_training_data(features=["merchant_stats:label"], spine="user_stats")
    assert not list(tmp_path.glob("**/*.training.parquet"))


def test_cli_spine(pit_store: FeatureStore, tmp_path: Path) -> None:
    """The CLI reads the repo's own offline root: the module store's default one."""
    _write_users(pit_store, [{"user_id": 1, EVENT_TS: at(5), "score": 1.0, "cnt": 1}])
    out = tmp_path / "set.parquet"
    args = ["training-data", "--repo", str(pit_store.config.repo_path), "-f", "user_stats:score"]
    window = ["--start", at(0).isoformat(), "--end", at(60).isoformat()]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "--spine", "user_stats", *window])
    assert result.exit_code == 0, result.output
    assert "entity rows: 1 of spine user_stats@v1" in result.output
    assert pq.read_table(out).to_pylist() == [{"user_id": 1, EVENT_TS: at(5), "score": 1.0}]
    listed = CliRunner().invoke(app, ["training-sets", "--repo", str(pit_store.config.repo_path)])
    assert "spine user_stats@v1" in listed.output
    both = CliRunner().invoke(app, [*args, "-o", str(out), "--spine", "user_stats", "-e", str(out)])
    assert both.exit_code != 0
    assert "not both" in both.output


def test_spine_on_spark_equals_duckdb(fresh: FeatureStore, spark: Any) -> None:
    from tests.test_pit_join import spark_engine

    _write_users(
        fresh,
        [
            {"user_id": u, EVENT_TS: at(m), CREATED_TS: at(m), "score": u + m / 10, "cnt": m}
            for u in (1, 2, 3)
            for m in (0, 5, 30, 119, 121)
        ],
    )
    view = fresh.snapshot().feature_view("pair_stats")
    pairs = [
        {"user_id": u, "merchant_id": "m1", EVENT_TS: at(m), "amount": 1.0 * m}
        for u in (1, 2)
        for m in (3, 40)
    ]
    fresh.offline_store().write(view, 1, feature_table("pair_stats", pairs))
    refs = ["user_stats:score", "pair_stats:amount"]
    kwargs: dict[str, Any] = {
        "features": refs,
        "spine": "pair_stats",
        "start": at(0),
        "end": at(150),
    }
    duck = fresh.get_training_data(**kwargs).table
    sparked = fresh.get_training_data(**kwargs, engine=spark_engine(spark)).table
    assert duck is not None
    assert sparked is not None
    assert sparked.equals(duck)
    # (user, minute): (1, 3) (2, 3) (1, 40) (2, 40); user_stats rows at 0 and 30 match
    assert duck.column("score").to_pylist() == [1.0, 2.0, 4.0, 5.0]
    assert duck.column("amount").to_pylist() == [3.0, 3.0, 40.0, 40.0]
