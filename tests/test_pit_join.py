"""Point-in-time joins (DESIGN.md, "Offline store"): both engines against a brute-force oracle.

The property tests write random feature rows through ``OfflineStore.write`` (in several writes, so
exact ties are broken by write order), build random entity rows (duplicates, unknown and null keys,
times before, at and after events and exactly at ``t - ttl``) and compare
``FeatureStore.get_training_data`` with ``tests/pit_oracle.py`` value by value. The other tests pin
versions, output naming, Parquet output with lineage, and the typed errors for bad input.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.errors import (
    EntityInputError,
    FeatureNotFound,
    FeatureStoreError,
    FeatureViewNotFound,
    InvalidReferenceError,
    ObjectNotFound,
    SchemaMismatchError,
    VersionNotFound,
)
from tests.helpers import BASE_REPO, replace_once, write_repo
from tests.pit_oracle import CREATED_TS, EVENT_TS, OracleView, point_in_time_join

# -- the repo every test in this module joins against ---------------------------------------------

PIT_REPO: dict[str, str] = {
    "defs.py": """
        from datetime import timedelta

        from featurestore import (
            Bool,
            Entity,
            FeatureService,
            FeatureView,
            Field,
            Float32,
            Float64,
            Int64,
            Model,
            ParquetSource,
            String,
        )

        user = Entity(name="user", join_key="user_id", dtype=Int64)
        merchant = Entity(name="merchant", join_key="merchant_id", dtype=String)
        source = ParquetSource(name="source", path="data/source")

        user_stats = FeatureView(
            name="user_stats",
            entities=[user],
            source=source,
            schema=[Field(name="score", dtype=Float64), Field(name="cnt", dtype=Int64)],
            ttl=timedelta(minutes=20),
        )
        merchant_stats = FeatureView(
            name="merchant_stats",
            entities=[merchant],
            source=source,
            schema=[
                Field(name="score", dtype=Float32),
                Field(name="label", dtype=String),
                Field(name="flag", dtype=Bool),
            ],
        )
        pair_stats = FeatureView(
            name="pair_stats",
            entities=[user, merchant],
            source=source,
            schema=[Field(name="amount", dtype=Float64)],
            ttl=timedelta(minutes=45),
        )
        # Positive TTLs below or between whole seconds (the join must honour them exactly).
        frac_ttl_stats = FeatureView(
            name="frac_ttl_stats",
            entities=[user],
            source=source,
            schema=[Field(name="v", dtype=Int64)],
            ttl=timedelta(milliseconds=1500),
        )
        tiny_ttl_stats = FeatureView(
            name="tiny_ttl_stats",
            entities=[user],
            source=source,
            schema=[Field(name="w", dtype=Int64)],
            ttl=timedelta(milliseconds=500),
        )

        scoring = FeatureService(
            name="scoring", features=[user_stats[["score", "cnt"]], merchant_stats[["label"]]]
        )
        scorer = Model(name="scorer", feature_services=[scoring], purpose="fraud", owner="t@x.io")
    """,
}

VIEWS = ("user_stats", "merchant_stats", "pair_stats")
KEYS = {
    "user_stats": ("user_id",),
    "merchant_stats": ("merchant_id",),
    "pair_stats": ("user_id", "merchant_id"),
}
TTLS = {
    "user_stats": timedelta(minutes=20),
    "merchant_stats": None,
    "pair_stats": timedelta(minutes=45),
}
FEATURE_TYPES: dict[str, dict[str, pa.DataType]] = {
    "user_stats": {"score": pa.float64(), "cnt": pa.int64()},
    "merchant_stats": {"score": pa.float32(), "label": pa.string(), "flag": pa.bool_()},
    "pair_stats": {"amount": pa.float64()},
}
KEY_TYPES = {"user_id": pa.int64(), "merchant_id": pa.string()}
ALL_REFS = tuple(f"{v}:{f}" for v in VIEWS for f in FEATURE_TYPES[v])

# 22:00 UTC: minute 120 is midnight, so writes span two date partitions.
T0 = datetime(2026, 1, 7, 22, 0, tzinfo=UTC)
USERS = (1, 2, 3)
MERCHANTS = ("m1", "m2", "m3")
PLUS_TWO = timezone(timedelta(hours=2))
MINUS_FIVE = timezone(timedelta(hours=-5))


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


@pytest.fixture(scope="module")
def pit_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    """The PIT repo, applied once for the module."""
    repo = write_repo(tmp_path_factory.mktemp("pit") / "repo", PIT_REPO, project="pit")
    with FeatureStore(repo) as store:
        store.apply()
        yield store


@pytest.fixture
def store(pit_store: FeatureStore, tmp_path: Path) -> FeatureStore:
    """The module's store with an empty offline store of its own."""
    return with_offline_root(pit_store, tmp_path / "offline")


def with_offline_root(store: FeatureStore, root: Path) -> FeatureStore:
    config = dataclasses.replace(store.config, offline_store_path=root)
    return FeatureStore(store.config.repo_path, config=config, registry=store.registry)


def spark_engine(spark: Any) -> Any:
    from featurestore.offline.spark_engine import SparkEngine

    return SparkEngine(spark)


def engine_for(name: str, request: pytest.FixtureRequest) -> Any:
    return "duckdb" if name == "duckdb" else spark_engine(request.getfixturevalue("spark"))


class ExplodingEngine:
    """An engine that fails the test if the join gets as far as running."""

    name = "exploding"

    def join(self, request: Any) -> pa.Table:
        raise AssertionError("bad input reached the engine")

    def join_to_parquet(self, request: Any, path: Path) -> int:
        raise AssertionError("bad input reached the engine")


# -- building tables ------------------------------------------------------------------------------


def ts_array(values: list[datetime], style: str) -> pa.Array:
    """Timestamps in one of the accepted representations; all mean the same instants."""
    if style == "utc":
        return pa.array(values, pa.timestamp("us", tz="UTC"))
    if style == "naive":
        return pa.array(
            [v.astimezone(UTC).replace(tzinfo=None) for v in values], pa.timestamp("us")
        )
    if style == "offset":
        return pa.array([v.astimezone(PLUS_TWO) for v in values], pa.timestamp("us", tz="+02:00"))
    if style == "iso":
        return pa.array([v.astimezone(MINUS_FIVE).isoformat() for v in values], pa.string())
    if style == "ns":
        return pa.array(values, pa.timestamp("ns", tz="UTC"))
    raise AssertionError(style)


def feature_table(
    view: str, rows: list[dict[str, Any]], *, style: str = "utc", with_created: bool = True
) -> pa.Table:
    columns: dict[str, pa.Array] = {
        k: pa.array([r[k] for r in rows], KEY_TYPES[k]) for k in KEYS[view]
    }
    columns[EVENT_TS] = ts_array([r[EVENT_TS] for r in rows], style)
    if with_created:
        columns[CREATED_TS] = pa.array(
            [r.get(CREATED_TS) for r in rows], pa.timestamp("us", tz="UTC")
        )
    for name, dtype in FEATURE_TYPES[view].items():
        columns[name] = pa.array([r.get(name) for r in rows], dtype)
    return pa.table(columns)


def entity_table(rows: list[dict[str, Any]], style: str = "utc") -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "merchant_id": pa.array([r["merchant_id"] for r in rows], pa.string()),
            EVENT_TS: ts_array([r[EVENT_TS] for r in rows], style),
            "tag": pa.array([r.get("tag") for r in rows], pa.string()),
            "weight": pa.array([r.get("weight") for r in rows], pa.float64()),
        }
    )


def output_name(ref: str, full: bool) -> str:
    view, feature = ref.split(":")
    return f"{view.split('@')[0]}__{feature}" if full else feature


def requested_for(
    refs: list[str], oracle_views: dict[str, OracleView], full: bool
) -> list[tuple[OracleView, str, str]]:
    out = []
    for ref in refs:
        view, feature = ref.split(":")
        out.append((oracle_views[view.split("@")[0]], feature, output_name(ref, full)))
    return out


def assert_matches_oracle(
    result: pa.Table,
    entities: pa.Table,
    expected: list[dict[str, Any]],
    requested: list[tuple[OracleView, str, str]],
) -> None:
    assert result.num_rows == len(expected)
    # Every input column passes through unchanged (values, types, order of rows).
    assert result.select(entities.column_names).equals(entities)
    names = [name for _, _, name in requested]
    assert sorted(result.column_names) == sorted([*entities.column_names, *names])
    for view, feature, name in requested:
        assert result.schema.field(name).type == FEATURE_TYPES[view.name][feature], name
        got = result.column(name).to_pylist()
        want = [row[name] for row in expected]
        assert got == want, f"{name}: engine {got} != oracle {want}"


# -- random scenarios -----------------------------------------------------------------------------

HOT_MINUTES = (0, 1, 30, 60, 119, 120, 121, 150)
minutes = st.one_of(st.sampled_from(HOT_MINUTES), st.sampled_from(HOT_MINUTES), st.integers(0, 150))
created_times = st.one_of(st.none(), st.integers(0, 3).map(at))
halves = st.integers(-8, 8).map(lambda i: i / 2)


def sometimes_null(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values, values, values)  # a null about one time in four


VALUE_STRATEGIES = {
    "score": sometimes_null(halves),
    "cnt": sometimes_null(st.integers(0, 100)),
    "label": sometimes_null(st.sampled_from(["a", "b", "c"])),
    "flag": sometimes_null(st.booleans()),
    "amount": sometimes_null(halves),
}
KEY_STRATEGIES = {"user_id": st.sampled_from(USERS), "merchant_id": st.sampled_from(MERCHANTS)}


@dataclass
class Write:
    rows: list[dict[str, Any]]
    style: str  # how event_timestamp is given: utc, naive, offset (+02:00)
    created_at: datetime | None  # None: rows carry a created_timestamp column


@dataclass
class Scenario:
    writes: dict[str, list[Write]]
    entities: list[dict[str, Any]]
    entity_style: str
    refs: list[str]
    full_feature_names: bool


@st.composite
def writes_for(draw: st.DrawFn, view: str) -> list[Write]:
    row = st.fixed_dictionaries(
        {
            **{k: KEY_STRATEGIES[k] for k in KEYS[view]},
            EVENT_TS: minutes.map(at),
            CREATED_TS: created_times,
            **{f: VALUE_STRATEGIES[f] for f in FEATURE_TYPES[view]},
        }
    )
    out: list[Write] = []
    for _ in range(draw(st.integers(0, 3))):
        rows = draw(st.lists(row, max_size=5))
        # Restate earlier facts (same keys and event time; the same created time or another
        # one, null included) with new values, so every tie-break is exercised often.
        previous = [r for w in out for r in w.rows]
        restated = st.tuples(st.booleans(), st.integers(0, 99), st.booleans(), row)
        for from_previous, pick, same_created, new in draw(st.lists(restated, max_size=3)):
            pool = previous if previous and (from_previous or not rows) else rows
            if not pool:
                break
            old = pool[pick % len(pool)]
            same = {k: old[k] for k in (*KEYS[view], EVENT_TS)}
            created = old[CREATED_TS] if same_created else new[CREATED_TS]
            rows.insert(pick % (len(rows) + 1), {**new, **same, CREATED_TS: created})
        # Most writes carry created_timestamp; some leave it to created_at=.
        created_at = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(0, 3).map(at)))
        if created_at is not None:
            rows = [{**r, CREATED_TS: created_at} for r in rows]
        style = draw(st.sampled_from(["utc", "naive", "offset"]))
        out.append(Write(rows, style, created_at))
    return out


def aimed_entity(
    fact: tuple[str, dict[str, Any]], how: str, minutes_later: int, base: dict[str, Any]
) -> dict[str, Any]:
    view, row = fact
    ttl = TTLS[view] or timedelta(minutes=minutes_later)
    offset = {
        "at": timedelta(0),
        "ttl": ttl,
        "ttl-1": ttl - timedelta(minutes=1),
        "ttl+1": ttl + timedelta(minutes=1),
        "later": timedelta(minutes=minutes_later),
    }[how]
    return {**base, **{k: row[k] for k in KEYS[view]}, EVENT_TS: row[EVENT_TS] + offset}


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    writes = {view: draw(writes_for(view)) for view in VIEWS}
    facts = [(view, r) for view, ws in writes.items() for w in ws for r in w.rows]
    free = st.fixed_dictionaries(
        {
            "user_id": st.sampled_from((*USERS, 99, None)),
            "merchant_id": st.sampled_from((*MERCHANTS, "zz", None)),
            # anywhere, including before the first and after the last event
            EVENT_TS: st.integers(-10, 175).map(at),
            "tag": st.sampled_from(["a", "b", None]),
            "weight": st.one_of(st.none(), halves),
        }
    )
    entity = free
    if facts:
        # Entity rows aimed at a feature row: its keys, at its event time, exactly at its
        # event + ttl (the inclusive lower bound), a minute either side of that, or a bit later.
        entity = st.one_of(
            free,
            st.builds(
                aimed_entity,
                st.sampled_from(facts),
                st.sampled_from(["at", "ttl", "ttl", "ttl", "ttl-1", "ttl+1", "later"]),
                st.integers(1, 30),
                free,
            ),
            st.builds(aimed_entity, st.sampled_from(facts), st.just("at"), st.just(0), free),
        )
    rows = draw(st.lists(entity, min_size=3, max_size=18))
    for position, source in draw(
        st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=6)
    ):
        rows.insert(position % (len(rows) + 1), dict(rows[source % len(rows)]))  # duplicates
    refs = draw(
        st.lists(st.sampled_from(ALL_REFS), min_size=2, max_size=len(ALL_REFS), unique=True)
    )
    both_scores = {"user_stats:score", "merchant_stats:score"} <= set(refs)
    return Scenario(
        writes=writes,
        entities=rows,
        entity_style=draw(st.sampled_from(["utc", "naive", "offset", "iso", "ns"])),
        refs=refs,
        full_feature_names=both_scores or draw(st.booleans()),
    )


def load(store: FeatureStore, scenario: Scenario) -> dict[str, OracleView]:
    """Write the scenario's rows through the offline store; the oracle's view of the same."""
    snapshot = store.snapshot()
    offline = store.offline_store()
    oracle = {}
    for view_name in VIEWS:
        view = snapshot.feature_view(view_name)
        oracle[view_name] = OracleView(view_name, KEYS[view_name], TTLS[view_name])
        for write in scenario.writes[view_name]:
            table = feature_table(
                view_name, write.rows, style=write.style, with_created=write.created_at is None
            )
            offline.write(view, 1, table, created_at=write.created_at)
            oracle[view_name].writes.append(write.rows)
    return oracle


def run_scenario(store: FeatureStore, scenario: Scenario, engines: list[Any]) -> list[pa.Table]:
    oracle = load(store, scenario)
    entities = entity_table(scenario.entities, scenario.entity_style)
    requested = requested_for(scenario.refs, oracle, scenario.full_feature_names)
    expected = point_in_time_join(scenario.entities, requested)
    results = []
    for engine in engines:
        result = store.get_training_data(
            entities,
            features=scenario.refs,
            full_feature_names=scenario.full_feature_names,
            engine=engine,
        ).table
        assert result is not None
        assert_matches_oracle(result, entities, expected, requested)
        results.append(result)
    return results


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("examples")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_duckdb_matches_oracle(pit_store: FeatureStore, scratch: Path, scenario: Scenario) -> None:
    root = Path(tempfile.mkdtemp(dir=scratch))
    try:
        run_scenario(with_offline_root(pit_store, root), scenario, ["duckdb"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def merge(parts: list[Scenario]) -> Scenario:
    """Several scenarios as one, in disjoint key spaces, so one Spark job checks them all."""

    def rekey(row: dict[str, Any], i: int) -> dict[str, Any]:
        out = dict(row)
        if out.get("user_id") is not None:
            out["user_id"] += 1000 * i
        if out.get("merchant_id") is not None:
            out["merchant_id"] = f"s{i}-{out['merchant_id']}"
        return out

    writes: dict[str, list[Write]] = {view: [] for view in VIEWS}
    for i, part in enumerate(parts):
        for view in VIEWS:
            writes[view] += [
                Write([rekey(r, i) for r in w.rows], w.style, w.created_at)
                for w in part.writes[view]
            ]
    return Scenario(
        writes=writes,
        entities=[rekey(e, i) for i, part in enumerate(parts) for e in part.entities],
        entity_style=parts[0].entity_style,
        refs=list(ALL_REFS),
        full_feature_names=True,
    )


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(scenarios(), min_size=3, max_size=4))
def test_spark_matches_oracle_and_duckdb(
    pit_store: FeatureStore, scratch: Path, spark: Any, parts: list[Scenario]
) -> None:
    scenario = merge(parts)
    root = Path(tempfile.mkdtemp(dir=scratch))
    try:
        duck, sparked = run_scenario(
            with_offline_root(pit_store, root), scenario, ["duckdb", spark_engine(spark)]
        )
        assert sparked.equals(duck)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the rule on a hand-computed example ----------------------------------------------------------


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_rule_on_a_worked_example(
    store: FeatureStore, engine: str, request: pytest.FixtureRequest
) -> None:
    """Every clause of the rule once, with the expected values written out by hand."""
    view = store.snapshot().feature_view("user_stats")  # ttl 20 minutes
    offline = store.offline_store()
    first = [
        {"user_id": 1, EVENT_TS: at(0), CREATED_TS: at(1), "score": 1.0, "cnt": 1},
        {"user_id": 1, EVENT_TS: at(10), CREATED_TS: None, "score": 2.0, "cnt": 2},
        {"user_id": 1, EVENT_TS: at(10), CREATED_TS: at(0), "score": 3.0, "cnt": 3},
        {"user_id": 2, EVENT_TS: at(10), CREATED_TS: at(5), "score": None, "cnt": 5},
        {"user_id": 3, EVENT_TS: at(10), CREATED_TS: at(5), "score": 6.0, "cnt": 6},
    ]
    second = [
        # The same fact as the third row above, written later: the later write wins.
        {"user_id": 1, EVENT_TS: at(10), CREATED_TS: at(0), "score": 4.0, "cnt": 4},
        # Older created time than the first write's row for user 3: loses despite being later.
        {"user_id": 3, EVENT_TS: at(10), CREATED_TS: at(4), "score": 7.0, "cnt": 7},
    ]
    offline.write(view, 1, feature_table("user_stats", first))
    offline.write(view, 1, feature_table("user_stats", second, style="naive"))
    entity_rows = [
        {"user_id": 1, "merchant_id": None, EVENT_TS: at(-1), "tag": "before first"},
        {"user_id": 1, "merchant_id": None, EVENT_TS: at(0), "tag": "exactly at event"},
        {"user_id": 1, "merchant_id": None, EVENT_TS: at(10), "tag": "ties"},
        {"user_id": 1, "merchant_id": None, EVENT_TS: at(30), "tag": "exactly t - ttl"},
        {"user_id": 1, "merchant_id": None, EVENT_TS: at(30) + timedelta(microseconds=1)},
        {"user_id": None, "merchant_id": None, EVENT_TS: at(10), "tag": "null key"},
        {"user_id": 7, "merchant_id": None, EVENT_TS: at(10), "tag": "unknown key"},
        {"user_id": 2, "merchant_id": None, EVENT_TS: at(15), "tag": "null value"},
        {"user_id": 3, "merchant_id": None, EVENT_TS: at(15), "tag": "created wins"},
        {"user_id": 1, "merchant_id": None, EVENT_TS: at(10), "tag": "ties"},
    ]
    entities = entity_table(entity_rows)
    result = store.get_training_data(
        entities,
        features=["user_stats:score", "user_stats:cnt"],
        engine=engine_for(engine, request),
    ).table
    assert result is not None
    assert result.column("score").to_pylist() == [
        None, 1.0, 4.0, 4.0, None, None, None, None, 6.0, 4.0
    ]  # fmt: skip
    assert result.column("cnt").to_pylist() == [None, 1, 4, 4, None, None, None, 5, 6, 4]
    assert result.select(entities.column_names).equals(entities)
    # The oracle agrees with the hand-computed values.
    oracle = OracleView("user_stats", ("user_id",), timedelta(minutes=20), [first, second])
    requested = [(oracle, "score", "score"), (oracle, "cnt", "cnt")]
    assert_matches_oracle(result, entities, point_in_time_join(entity_rows, requested), requested)


def test_exact_repeats_within_one_write_keep_the_last_row(store: FeatureStore) -> None:
    view = store.snapshot().feature_view("user_stats")
    rows = [
        {"user_id": 1, EVENT_TS: at(0), CREATED_TS: at(0), "score": 1.0, "cnt": 1},
        {"user_id": 1, EVENT_TS: at(0), CREATED_TS: at(0), "score": 2.0, "cnt": 2},
        {"user_id": 2, EVENT_TS: at(0), CREATED_TS: None, "score": 3.0, "cnt": 3},
        {"user_id": 2, EVENT_TS: at(0), CREATED_TS: None, "score": 4.0, "cnt": 4},
        {"user_id": 3, EVENT_TS: at(0), CREATED_TS: at(0), "score": 5.0, "cnt": 5},
    ]
    store.offline_store().write(view, 1, feature_table("user_stats", rows))
    entities = entity_table(
        [{"user_id": u, "merchant_id": None, EVENT_TS: at(1)} for u in (1, 2, 3)]
    )
    result = store.get_training_data(entities, features=["user_stats:score"]).table
    assert result is not None
    assert result.column("score").to_pylist() == [2.0, 4.0, 5.0]


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_null_keys_never_match(
    store: FeatureStore, engine: str, request: pytest.FixtureRequest
) -> None:
    """Feature rows with a null key (if the writer takes them) match no entity row, null or not."""
    snapshot = store.snapshot()
    pair = snapshot.feature_view("pair_stats")
    rows = [
        {"user_id": None, "merchant_id": "m1", EVENT_TS: at(0), "amount": 1.0},
        {"user_id": 1, "merchant_id": None, EVENT_TS: at(0), "amount": 2.0},
        {"user_id": 1, "merchant_id": "m1", EVENT_TS: at(0), "amount": 3.0},
    ]
    try:
        store.offline_store().write(pair, 1, feature_table("pair_stats", rows), created_at=at(0))
    except SchemaMismatchError:  # refusing null keys is also within the contract
        rows = rows[2:]
        store.offline_store().write(pair, 1, feature_table("pair_stats", rows), created_at=at(0))
    entities = entity_table(
        [
            {"user_id": None, "merchant_id": "m1", EVENT_TS: at(1)},
            {"user_id": 1, "merchant_id": None, EVENT_TS: at(1)},
            {"user_id": None, "merchant_id": None, EVENT_TS: at(1)},
            {"user_id": 1, "merchant_id": "m1", EVENT_TS: at(1)},
        ]
    )
    result = store.get_training_data(
        entities, features=["pair_stats:amount"], engine=engine_for(engine, request)
    )
    assert result.table is not None
    assert result.table.column("amount").to_pylist() == [None, None, None, 3.0]


def test_sub_second_ttl_is_honoured(store: FeatureStore) -> None:
    snapshot = store.snapshot()
    offline = store.offline_store()
    for name, feature in (("frac_ttl_stats", "v"), ("tiny_ttl_stats", "w")):
        view = snapshot.feature_view(name)
        table = pa.table(
            {
                "user_id": pa.array([1], pa.int64()),
                EVENT_TS: pa.array([T0], pa.timestamp("us", tz="UTC")),
                feature: pa.array([1], pa.int64()),
            }
        )
        offline.write(view, 1, table, created_at=T0)
    times = [T0 + timedelta(milliseconds=ms) for ms in (0, 400, 1200, 1500, 1501, 60_000)]
    entities = pa.table(
        {"user_id": pa.array([1] * len(times), pa.int64()), EVENT_TS: pa.array(times)}
    )
    result = store.get_training_data(entities, features=["frac_ttl_stats:v", "tiny_ttl_stats:w"])
    assert result.table is not None
    assert result.table.column("v").to_pylist() == [1, 1, 1, 1, None, None]
    assert result.table.column("w").to_pylist() == [1, 1, None, None, None, None]


# -- versions, naming, output, lineage ------------------------------------------------------------

AVG_FLOAT32 = 'Field(name="avg_amount", dtype=Float32, description="Mean transaction amount.")'
AVG_FLOAT64 = 'Field(name="avg_amount", dtype=Float64, description="Mean transaction amount.")'


def test_pinned_versions_read_their_own_data(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", BASE_REPO)
    with FeatureStore(repo) as store:
        store.apply()
        offline = store.offline_store()
        snapshot = store.snapshot()
        v1 = snapshot.feature_view("user_stats", 1)
        user_rows = {"user_id": [1, 2], EVENT_TS: [at(0), at(0)], "country": ["DE", "NL"]}
        offline.write(
            v1, 1, pa.table({**user_rows, "avg_amount": [10.0, 11.0], "txn_count": [1, 2]})
        )
        merchant = pa.table({"merchant_id": ["m1"], EVENT_TS: [at(0)], "chargeback_rate": [0.25]})
        offline.write(snapshot.feature_view("merchant_stats", 1), 1, merchant)

        write_repo(repo, replace_once(BASE_REPO, "views.py", AVG_FLOAT32, AVG_FLOAT64))
        store.apply()
        snapshot = store.snapshot()
        assert snapshot.latest_version("user_stats") == 2
        v2 = snapshot.feature_view("user_stats", 2)
        offline.write(
            v2, 2, pa.table({**user_rows, "avg_amount": [20.0, 21.0], "txn_count": [3, 4]})
        )
        entities = pa.table(
            {"user_id": [1, 2, 3], "merchant_id": ["m1", "m1", "m2"], EVENT_TS: [at(5)] * 3}
        )

        pinned = store.get_training_data(
            entities, features=["user_stats@v1:avg_amount", "user_stats@v1:txn_count"]
        ).table
        assert pinned is not None
        assert pinned.column("avg_amount").to_pylist() == [10.0, 11.0, None]
        assert pinned.column("txn_count").to_pylist() == [1, 2, None]
        assert pinned.schema.field("avg_amount").type == pa.float32()

        latest = store.get_training_data(entities, features=["user_stats:avg_amount"]).table
        assert latest is not None
        assert latest.column("avg_amount").to_pylist() == [20.0, 21.0, None]
        assert latest.schema.field("avg_amount").type == pa.float64()

        with pytest.raises(EntityInputError, match="avg_amount"):  # one name, two versions
            store.get_training_data(
                entities, features=["user_stats@v1:avg_amount", "user_stats:avg_amount"]
            )

        by_model = store.get_training_data(entities, model="fraud_model")
        assert by_model.table is not None
        assert by_model.table.column("avg_amount").to_pylist() == [10.0, 11.0, None]
        assert by_model.table.column("country").to_pylist() == ["DE", "NL", None]
        assert by_model.table.column("chargeback_rate").to_pylist() == [0.25, 0.25, None]
        record = store.registry.training_sets(store.project, model="fraud_model")[0]
        assert "user_stats@v1:avg_amount" in record.features
        assert record.offline_manifests == {"user_stats@v1": 1, "merchant_stats@v1": 1}

        store.promote("fraud_model")
        promoted = store.get_training_data(entities, model="fraud_model").table
        assert promoted is not None
        assert promoted.column("avg_amount").to_pylist() == [20.0, 21.0, None]


def _score_rows(store: FeatureStore) -> None:
    snapshot = store.snapshot()
    offline = store.offline_store()
    offline.write(
        snapshot.feature_view("user_stats"),
        1,
        feature_table("user_stats", [{"user_id": 1, EVENT_TS: at(0), "score": 1.5, "cnt": 7}]),
    )
    offline.write(
        snapshot.feature_view("merchant_stats"),
        1,
        feature_table(
            "merchant_stats",
            [{"merchant_id": "m1", EVENT_TS: at(0), "score": 2.5, "label": "x", "flag": True}],
        ),
    )


def test_full_feature_names(store: FeatureStore) -> None:
    _score_rows(store)
    entities = entity_table([{"user_id": 1, "merchant_id": "m1", EVENT_TS: at(1)}])
    refs = ["user_stats:score", "merchant_stats:score", "user_stats:cnt"]
    with pytest.raises(EntityInputError, match="score") as caught:
        store.get_training_data(entities, features=refs, engine=ExplodingEngine())
    assert "full_feature_names" in str(caught.value)

    result = store.get_training_data(entities, features=refs, full_feature_names=True).table
    assert result is not None
    assert set(result.column_names) - set(entities.column_names) == {
        "user_stats__score",
        "user_stats__cnt",
        "merchant_stats__score",
    }
    assert result.column("user_stats__score").to_pylist() == [1.5]
    assert result.column("merchant_stats__score").to_pylist() == [2.5]
    assert result.column("user_stats__cnt").to_pylist() == [7]

    # An input column with a feature's name: refused, unless full names avoid the clash.
    clashing = entities.append_column("cnt", pa.array(["mine"]))
    with pytest.raises(EntityInputError, match="cnt"):
        store.get_training_data(clashing, features=["user_stats:cnt"], engine=ExplodingEngine())
    kept = store.get_training_data(
        clashing, features=["user_stats:cnt"], full_feature_names=True
    ).table
    assert kept is not None
    assert kept.column("cnt").to_pylist() == ["mine"]
    assert kept.column("user_stats__cnt").to_pylist() == [7]


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_output_path_streams_the_same_table_and_records_lineage(
    store: FeatureStore, engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _score_rows(store)
    runner = engine_for(engine, request)
    rows = [
        {"user_id": u, "merchant_id": m, EVENT_TS: at(t), "tag": f"r{i}", "weight": i / 2}
        for i, (u, m, t) in enumerate(
            [(1, "m1", 1), (2, "m1", -5), (1, None, 30), (None, "m1", 200), (1, "m1", 1)]
        )
    ]
    entities = entity_table(rows).append_column("n", pa.array(range(5), pa.int32()))
    refs = ["user_stats:score", "user_stats:cnt", "merchant_stats:label", "pair_stats:amount"]
    in_memory = store.get_training_data(entities, features=refs, engine=runner)
    path = tmp_path / "out" / "training.parquet"
    streamed = store.get_training_data(entities, features=refs, engine=runner, output_path=path)

    assert streamed.table is None
    assert in_memory.table is not None
    on_disk = pq.read_table(path)
    assert on_disk.replace_schema_metadata(None).equals(
        in_memory.table.replace_schema_metadata(None)
    ), f"{on_disk.schema}\n!=\n{in_memory.table.schema}"
    assert on_disk.column("score").to_pylist() == [1.5, None, None, None, 1.5]
    assert on_disk.column("label").to_pylist() == ["x", None, None, "x", "x"]

    record = store.registry.training_sets(store.project)[0]
    assert record.id == streamed.record.id
    assert record.output_path == str(path.resolve())
    assert record.rows == record.entity_rows == 5
    assert record.engine == engine
    assert record.entity_fingerprint == in_memory.record.entity_fingerprint
    assert record.features == (
        "user_stats@v1:score",
        "user_stats@v1:cnt",
        "merchant_stats@v1:label",
        "pair_stats@v1:amount",
    )
    assert record.offline_manifests == {
        "user_stats@v1": 1,
        "merchant_stats@v1": 1,
        "pair_stats@v1": 0,
    }
    other = store.get_training_data(entities.slice(0, 4), features=refs, engine=runner)
    assert other.record.entity_fingerprint != record.entity_fingerprint


def test_output_path_keeps_columns_that_differ_only_in_case(
    store: FeatureStore, tmp_path: Path
) -> None:
    _score_rows(store)
    entities = pa.table(
        {
            "user_id": pa.array([1, 1], pa.int64()),
            EVENT_TS: pa.array([at(1), at(1)], pa.timestamp("us", tz="UTC")),
            "SCORE": ["x", "y"],
            "User_Id": [7, 8],
        }
    )
    in_memory = store.get_training_data(entities, features=["user_stats:score"]).table
    assert in_memory is not None
    path = tmp_path / "training.parquet"
    store.get_training_data(entities, features=["user_stats:score"], output_path=path)
    assert pq.read_table(path).replace_schema_metadata(None).equals(in_memory)


# -- bad input: typed errors naming the culprit, before any engine work ---------------------------


def _entities(**columns: Any) -> pa.Table:
    base = {"user_id": pa.array([1, 2], pa.int64()), EVENT_TS: pa.array([at(0), at(1)])}
    base.update(columns)
    return pa.table({k: v for k, v in base.items() if v is not None})


BAD_INPUTS = {
    "missing key column": (
        _entities(user_id=None),
        {"features": ["user_stats:score"]},
        EntityInputError,
        "user_id",
    ),
    "missing second key of a composite key": (
        _entities(),
        {"features": ["pair_stats:amount"]},
        EntityInputError,
        "merchant_id",
    ),
    "string key for an int64 entity": (
        _entities(user_id=pa.array(["1", "2"])),
        {"features": ["user_stats:score"]},
        EntityInputError,
        "user_id",
    ),
    "int64 key for a string entity": (
        _entities(merchant_id=pa.array([1, 2], pa.int64())),
        {"features": ["merchant_stats:label"]},
        EntityInputError,
        "merchant_id",
    ),
    "float key for an int64 entity": (
        _entities(user_id=pa.array([1.0, 2.0])),
        {"features": ["user_stats:score"]},
        EntityInputError,
        "user_id",
    ),
    "unknown feature": (_entities(), {"features": ["user_stats:nope"]}, FeatureNotFound, "nope"),
    "unknown view": (
        _entities(),
        {"features": ["no_such_view:score"]},
        FeatureViewNotFound,
        "no_such_view",
    ),
    "unknown version": (
        _entities(),
        {"features": ["user_stats@v9:score"]},
        VersionNotFound,
        "v9",
    ),
    "unparseable reference": (
        _entities(),
        {"features": ["user_stats@vx:score"]},
        InvalidReferenceError,
        "user_stats@vx:score",
    ),
    "unknown feature service": (
        _entities(),
        {"features": ["user_stats.score"]},
        ObjectNotFound,
        "user_stats.score",
    ),
    "no features": (_entities(), {"features": []}, EntityInputError, "features"),
    "features and a model": (
        _entities(),
        {"features": ["user_stats:score"], "model": "scorer"},
        EntityInputError,
        "model",
    ),
    "empty input": (
        _entities().slice(0, 0),
        {"features": ["user_stats:score"]},
        EntityInputError,
        "no rows",
    ),
    "null timestamp": (
        _entities(event_timestamp=pa.array([at(0), None])),
        {"features": ["user_stats:score"]},
        EntityInputError,
        EVENT_TS,
    ),
    "missing timestamp column": (
        _entities(event_timestamp=None, ts=pa.array([at(0), at(1)])),
        {"features": ["user_stats:score"]},
        EntityInputError,
        EVENT_TS,
    ),
    "missing named timestamp column": (
        _entities(),
        {"features": ["user_stats:score"], "timestamp_column": "asof"},
        EntityInputError,
        "asof",
    ),
    "strings with and without a zone": (
        _entities(event_timestamp=pa.array(["2026-01-07T22:00:00+00:00", "2026-01-07T22:00:00"])),
        {"features": ["user_stats:score"]},
        (EntityInputError, SchemaMismatchError),
        "2026-01-07T22:00:00'",
    ),
    "unparseable timestamp string": (
        _entities(event_timestamp=pa.array(["2026-01-07T22:00:00", "yesterday"])),
        {"features": ["user_stats:score"]},
        (EntityInputError, SchemaMismatchError),
        "yesterday",
    ),
    "integer timestamps": (
        _entities(event_timestamp=pa.array([1, 2], pa.int64())),
        {"features": ["user_stats:score"]},
        (EntityInputError, SchemaMismatchError),
        EVENT_TS,
    ),
    "reserved column name": (
        _entities(__fs_row=pa.array([1, 2])),
        {"features": ["user_stats:score"]},
        EntityInputError,
        "__fs_row",
    ),
    "not a table": ([{"user_id": 1}], {"features": ["user_stats:score"]}, EntityInputError, "list"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_a_typed_error_before_joining(store: FeatureStore, case: str) -> None:
    entities, kwargs, error, needle = BAD_INPUTS[case]
    _score_rows(store)
    before = len(store.registry.training_sets(store.project))
    with pytest.raises(error) as caught:
        store.get_training_data(entities, engine=ExplodingEngine(), **kwargs)
    assert isinstance(caught.value, FeatureStoreError)
    assert needle in str(caught.value)
    assert len(store.registry.training_sets(store.project)) == before


def test_missing_parquet_path_is_a_typed_error(store: FeatureStore, tmp_path: Path) -> None:
    with pytest.raises(EntityInputError, match=r"nowhere\.parquet"):
        store.get_training_data(
            tmp_path / "nowhere.parquet", features=["user_stats:score"], engine=ExplodingEngine()
        )


def test_out_of_range_unsigned_key_is_a_typed_error(store: FeatureStore) -> None:
    entities = _entities(user_id=pa.array([1, 2**63], pa.uint64()))
    with pytest.raises(EntityInputError, match="user_id"):
        store.get_training_data(entities, features=["user_stats:score"], engine=ExplodingEngine())


def test_narrower_integer_keys_are_widened(store: FeatureStore) -> None:
    _score_rows(store)
    entities = _entities(user_id=pa.array([1, 2], pa.int32()))
    result = store.get_training_data(entities, features=["user_stats:score"]).table
    assert result is not None
    assert result.column("score").to_pylist() == [1.5, None]


def test_pandas_pyarrow_strings_work_as_string_keys(store: FeatureStore) -> None:
    import pandas as pd

    _score_rows(store)
    frame = pd.DataFrame(
        {
            "merchant_id": pd.array(["m1", "m2"], dtype="string[pyarrow]"),
            EVENT_TS: pd.to_datetime([at(1), at(1)], utc=True),
        }
    )
    result = store.get_training_data(frame, features=["merchant_stats:label"]).table
    assert result is not None
    assert result.column("label").to_pylist() == ["x", None]


# -- time zones and input formats -----------------------------------------------------------------


def test_time_zone_representations_mean_the_same_instants(store: FeatureStore) -> None:
    _score_rows(store)  # user 1 at minute 0, ttl 20 minutes
    rows = [{"user_id": 1, "merchant_id": "m1", EVENT_TS: at(m)} for m in (-1, 0, 20, 21, 119, 121)]
    want = [None, 1.5, 1.5, None, None, None]
    for style in ("utc", "naive", "offset", "iso", "ns"):
        result = store.get_training_data(entity_table(rows, style), features=["user_stats:score"])
        assert result.table is not None
        assert result.table.column("score").to_pylist() == want, style
    # A naive string is UTC, too.
    naive_strings = pa.table(
        {
            "user_id": [1, 1],
            EVENT_TS: [
                at(0).replace(tzinfo=None).isoformat(),
                at(21).replace(tzinfo=None).isoformat(),
            ],
        }
    )
    result = store.get_training_data(naive_strings, features=["user_stats:score"]).table
    assert result is not None
    assert result.column("score").to_pylist() == [1.5, None]


def test_pandas_and_parquet_inputs_match_pyarrow(store: FeatureStore, tmp_path: Path) -> None:
    _score_rows(store)
    rows = [
        {"user_id": u, "merchant_id": m, EVENT_TS: at(t), "tag": tag, "weight": w}
        for u, m, t, tag, w in [
            (1, "m1", 1, "a", 0.5),
            (2, "m2", 1, None, None),
            (1, "m1", 25, "c", 1.0),
            (1, "m1", 1, "a", 0.5),
        ]
    ]
    table = entity_table(rows)
    refs = ["user_stats:score", "merchant_stats:label"]
    expected = store.get_training_data(table, features=refs).table
    assert expected is not None
    pq.write_table(table, tmp_path / "entities.parquet")
    inputs = {
        "pandas": table.to_pandas(),
        "naive pandas": table.to_pandas().assign(
            **{EVENT_TS: lambda f: f[EVENT_TS].dt.tz_localize(None)}
        ),
        "parquet str": str(tmp_path / "entities.parquet"),
        "parquet path": tmp_path / "entities.parquet",
    }
    for label, given_input in inputs.items():
        result = store.get_training_data(given_input, features=refs).table
        assert result is not None
        for column in ("score", "label", "user_id", "merchant_id", "tag", "weight"):
            assert result.column(column).to_pylist() == expected.column(column).to_pylist(), (
                label,
                column,
            )
