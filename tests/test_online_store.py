"""The Redis online store against a real Redis: monotonic writes, TTL, lookups, versions.

Each test works in its own project, so tests share one Redis and never see each
other's keys (the same isolation tenants get).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster

from featurestore import FeatureStore
from featurestore.devservices import free_port
from featurestore.errors import (
    EntityInputError,
    FeatureNotFound,
    FeatureNotServedOnline,
    ObjectNotFound,
    OnlineStoreUnavailable,
    RequestTooLargeError,
    VersionNotFound,
)
from featurestore.online.client import OnlineClient, now_us
from featurestore.online.cluster_store import ClusterOnlineStore
from featurestore.online.cluster_writer import ClusterWriter
from featurestore.online.layout import ViewLayout
from featurestore.online.writer import OnlineWriter
from tests.helpers import online_repo, replace_in_file

pytestmark = pytest.mark.services
UTC_US = pa.timestamp("us", tz="UTC")
USER_STATS = ["user_stats:avg_amount", "user_stats:txn_count", "user_stats:country"]
PROFILE = [f"user_profile:{f}" for f in ("embedding", "signup", "vip", "blob", "score32", "level")]
_projects = itertools.count()


@dataclass(frozen=True)
class Online:
    url: str
    cluster: bool


@pytest.fixture(params=["standalone", "cluster"])
def online(request: pytest.FixtureRequest, services: Any) -> Online:
    """Each online-store behaviour test runs against one Redis and a 3-primary cluster,
    with the same expectations."""
    if request.param == "cluster":
        return Online(request.getfixturevalue("redis_cluster").url, True)
    return Online(services.redis_url, False)


@pytest.fixture
def store(tmp_path: Path, online: Online) -> Iterator[FeatureStore]:
    repo = online_repo(
        tmp_path / "repo", online.url, f"shop{next(_projects)}", cluster=online.cluster
    )
    with FeatureStore(repo) as s:
        s.apply()
        yield s


@pytest.fixture
def r(online: Online) -> redis.Redis:
    if online.cluster:
        return RedisCluster.from_url(online.url)  # type: ignore[return-value]
    return redis.Redis.from_url(online.url)


def all_keys(r: redis.Redis, pattern: bytes) -> list[bytes]:
    """KEYS on every primary (a cluster client asks one node by default)."""
    if isinstance(r, RedisCluster):
        return list(r.keys(pattern, target_nodes=RedisCluster.PRIMARIES))
    return list(r.keys(pattern))


def small_writer(store: FeatureStore, chunk: int) -> Any:
    """The store's writer with ``chunk`` keys per script call (and per round trip)."""
    online = store.online_store
    if isinstance(online, ClusterOnlineStore):
        return ClusterWriter(online.bulk, chunk_keys=chunk, keys_per_round=2 * chunk)
    return OnlineWriter(online.client, chunk_keys=chunk)  # type: ignore[attr-defined]


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def user_stats(users: list[int], times: list[datetime], amounts: list[float | None]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "event_timestamp": pa.array(times, UTC_US),
            "avg_amount": pa.array(amounts, pa.float64()),
            "txn_count": pa.array([len(users)] * len(users), pa.int64()),
            "country": pa.array(["DE"] * len(users)),
        }
    )


def layout(store: FeatureStore, view: str, version: int | None = None) -> ViewLayout:
    snap = store.snapshot()
    vv = snap.view_version(view, version)
    return ViewLayout.from_version(snap, vv)


# -- lookups ------------------------------------------------------------------------------------


def test_model_lookup_returns_values_statuses_and_event_times(store: FeatureStore) -> None:
    t1, t2 = ago(minutes=5), ago(minutes=1)
    store.write_online("user_stats", user_stats([1, 2], [t1, t2], [10.5, None]))
    store.write_online(
        "merchant_stats",
        pa.table(
            {
                "merchant_id": ["m1"],
                "event_timestamp": pa.array([t2], UTC_US),
                "chargeback_rate": [0.25],
            }
        ),
    )
    rows = [
        {"user_id": 1, "merchant_id": "m1"},
        {"user_id": 2, "merchant_id": "m9"},
        {"user_id": 3, "merchant_id": "m1"},
    ]
    response = store.get_online_features(rows, model="fraud_model")
    assert response.feature_names == (
        "avg_amount",
        "txn_count",
        "country",
        "chargeback_rate",
        "pair_count",
    )
    assert response.to_dict() == {
        "user_id": [1, 2, 3],
        "merchant_id": ["m1", "m9", "m1"],
        "avg_amount": [10.5, None, None],  # user 2 has a null value: present, not missing
        "txn_count": [2, 2, None],
        "country": ["DE", "DE", None],
        "chargeback_rate": [0.25, None, 0.25],
        "pair_count": [None, None, None],
    }
    statuses = response.status_dict()
    assert statuses["avg_amount"] == ["present", "present", "missing"]
    assert statuses["chargeback_rate"] == ["present", "missing", "present"]
    assert statuses["pair_count"] == ["missing"] * 3
    times = response.event_times()
    assert times["avg_amount"] == [t1, t2, None]
    assert times["chargeback_rate"] == [t2, None, t2]


def test_every_dtype_round_trips(store: FeatureStore) -> None:
    signup = datetime(2020, 2, 29, 12, 0, 0, 123456, tzinfo=UTC)
    emb = [0.5, -1.25, 3.0e-8]
    table = pa.table(
        {
            "user_id": pa.array([7, 8], pa.int64()),
            "event_timestamp": pa.array([ago(days=400), ago(days=400)], UTC_US),
            "embedding": pa.array([emb, None], pa.list_(pa.float32())),
            "signup": pa.array([signup, None], UTC_US),
            "vip": [True, None],
            "blob": pa.array([b"\x00\xff", None], pa.binary()),
            "score32": pa.array([0.1, math.nan], pa.float32()),
            "level": pa.array([-(2**31), None], pa.int32()),
        }
    )
    # No TTL: a year-old value is still served.
    assert store.write_online("user_profile", table).written == 2
    response = store.get_online_features([{"user_id": 7}, {"user_id": 8}], features=PROFILE)
    (row7, row8) = response.rows()
    assert row7["embedding"] == pytest.approx(emb, rel=1e-7)
    assert row7["signup"] == signup
    assert row7["vip"] is True
    assert row7["blob"] == b"\x00\xff"
    assert row7["score32"] == pytest.approx(0.1, rel=1e-7)
    assert row7["level"] == -(2**31)
    assert (row8["embedding"], row8["signup"], row8["blob"]) == (None, None, None)
    assert math.isnan(row8["score32"])  # NaN stays NaN in-process (JSON has no NaN)
    assert response.status_dict()["level"] == ["present", "present"]
    body = response.to_json()
    assert b'"2020-02-29T12:00:00.123456Z"' in body
    assert b'"AP8="' in body  # bytes travel as base64


def test_columns_and_rows_ask_the_same(store: FeatureStore) -> None:
    store.write_online("user_stats", user_stats([1, 2], [ago(minutes=1)] * 2, [1.0, 2.0]))
    by_rows = store.get_online_features([{"user_id": 2}, {"user_id": 1}], features=USER_STATS)
    by_columns = store.get_online_features({"user_id": [2, 1]}, features=USER_STATS)
    assert by_rows.to_dict() == by_columns.to_dict()
    assert by_rows.to_dict()["avg_amount"] == [2.0, 1.0]


def test_composite_keys_with_separator_characters(store: FeatureStore) -> None:
    t = ago(minutes=1)
    merchants = ["a,b", "a", "b", "100%", "a%2Cb"]
    table = pa.table(
        {
            "user_id": pa.array([1] * 5, pa.int64()),
            "merchant_id": merchants,
            "event_timestamp": pa.array([t] * 5, UTC_US),
            "pair_count": pa.array(range(5), pa.int64()),
        }
    )
    store.write_online("pair_stats", table)
    response = store.get_online_features(
        [{"user_id": 1, "merchant_id": m} for m in [*merchants, "a,"]],
        features=["pair_stats:pair_count"],
    )
    assert response.to_dict()["pair_count"] == [0, 1, 2, 3, 4, None]


def test_async_lookup_equals_sync(store: FeatureStore) -> None:
    store.write_online("user_stats", user_stats([1], [ago(minutes=1)], [3.5]))
    rows = [{"user_id": 1, "merchant_id": "m"}, {"user_id": 5, "merchant_id": "m"}]
    sync = store.get_online_features(rows, model="fraud_model")
    result = asyncio.run(store.get_online_features_async(rows, model="fraud_model"))
    assert result.to_json() == sync.to_json()


def test_concurrent_async_lookups_on_one_connection_each_get_their_own_rows(
    tmp_path: Path, services: Any
) -> None:
    # A database other than 0 also checks the connection's SELECT handshake.
    url = services.redis_url.rsplit("/", 1)[0] + "/3"
    with FeatureStore(online_repo(tmp_path / "repo", url, f"db3x{next(_projects)}")) as s:
        s.apply()
        users = list(range(200))
        s.write_online("user_stats", user_stats(users, [ago(minutes=1)] * 200, users))
        client = s.online_client()

        async def ask_all() -> list[Any]:
            return await asyncio.gather(
                *(
                    client.get_online_features_async(
                        [{"user_id": u}, {"user_id": u + 1000}], features=USER_STATS
                    )
                    for u in users
                )
            )

        responses = asyncio.run(ask_all())
        assert [r.to_dict()["avg_amount"] for r in responses] == [[float(u), None] for u in users]
        assert redis.Redis.from_url(url).dbsize() == 200


def test_full_feature_names(store: FeatureStore) -> None:
    store.write_online("user_stats", user_stats([1], [ago(minutes=1)], [3.5]))
    response = store.get_online_features(
        [{"user_id": 1}], features=["user_stats:avg_amount"], full_feature_names=True
    )
    assert response.to_dict() == {"user_id": [1], "user_stats__avg_amount": [3.5]}


def test_projects_sharing_a_redis_never_see_each_other(
    tmp_path: Path, services: Any, store: FeatureStore
) -> None:
    store.write_online("user_stats", user_stats([1], [ago(minutes=1)], [3.5]))
    other_repo = online_repo(tmp_path / "other", services.redis_url, f"other{next(_projects)}")
    with FeatureStore(other_repo) as other:
        other.apply()
        response = other.get_online_features([{"user_id": 1}], features=USER_STATS)
        assert response.status_dict()["avg_amount"] == ["missing"]


# -- one round trip -----------------------------------------------------------------------------


def commandstats(r: redis.Redis) -> list[dict[str, int]]:
    """Commands served so far, per primary."""
    nodes = [n.redis_connection for n in r.get_primaries()] if isinstance(r, RedisCluster) else [r]
    return [{k: v["calls"] for k, v in n.info("commandstats").items()} for n in nodes]


def test_a_lookup_is_one_round_trip_of_one_hmget_per_row_and_entity_set(
    store: FeatureStore, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_online("user_stats", user_stats([1, 2], [ago(minutes=1)] * 2, [1.0, 2.0]))
    client = store.online_client()
    rows = [{"user_id": u, "merchant_id": f"m{u}"} for u in range(50)]
    client.get_online_features(rows, model="fraud_model")  # connected to every node
    sends: list[Any] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(conn: Any, command: Any, check_health: bool = True) -> None:
        sends.append(conn.port)
        original(conn, command, check_health)

    before = commandstats(r)
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    response = client.get_online_features(rows, model="fraud_model")
    monkeypatch.undo()
    after = commandstats(r)
    # Three views over three entity sets (user, merchant, user+merchant): 3 HMGETs a row,
    # all in one write to each node: one round trip per node (a cluster's: in parallel).
    hmgets = [
        a.get("cmdstat_hmget", 0) - b.get("cmdstat_hmget", 0)
        for a, b in zip(after, before, strict=True)
    ]
    assert sum(hmgets) == 150
    assert all(n > 0 for n in hmgets)  # 150 keys reach every primary
    assert sorted(sends) == sorted(set(sends))
    assert len(sends) == len(after)
    for a, b in zip(after, before, strict=True):
        delta = {k: a[k] - b.get(k, 0) for k in a if a[k] != b.get(k, 0)}
        delta.pop("cmdstat_info", None)
        delta.pop("cmdstat_hmget", None)
        assert delta == {}  # nothing but the lookup's HMGETs
    assert response.to_dict()["avg_amount"][:3] == [None, 1.0, 2.0]
    client.close()


# -- monotonic writes ---------------------------------------------------------------------------

write_st = st.tuples(
    st.integers(0, 3),  # entity
    st.integers(0, 5),  # event time step
    st.one_of(st.none(), st.integers(0, 3)),  # created time step
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    writes=st.lists(write_st, min_size=1, max_size=40),
    batch_sizes=st.lists(st.integers(1, 10), min_size=1, max_size=6),
    chunk=st.integers(1, 5),
)
def test_out_of_order_and_duplicate_writes_never_regress(
    store: FeatureStore,
    writes: list[tuple[int, int, int | None]],
    batch_sizes: list[int],
    chunk: int,
) -> None:
    """Random writes in random batches: the state is the model's, whatever the order."""
    base = now_us() - 60_000_000
    offset = next(_projects) * 10  # fresh keys each example
    writer = small_writer(store, chunk)
    lay = layout(store, "user_stats")
    expected: dict[int, tuple[tuple[int, int], float]] = {}
    rows = []
    for i, (user, step, created) in enumerate(writes):
        event, made = base + step * 1000, None if created is None else base + created * 1000
        rows.append(((user + offset,), event, made, (float(i), i, "x")))
        rank = (event, -(2**63) if made is None else made)
        # Equal (event, created): the later write wins.
        if user not in expected or rank >= expected[user][0]:
            expected[user] = (rank, float(i))
    it = iter(rows)
    for size in itertools.cycle(batch_sizes):
        batch = list(itertools.islice(it, size))
        if not batch:
            break
        writer.write(lay, batch)
    users = sorted(expected)
    response = store.get_online_features(
        [{"user_id": u + offset} for u in users], features=["user_stats:avg_amount"]
    )
    assert response.to_dict()["avg_amount"] == [expected[u][1] for u in users]


def test_write_stats_count_what_happened(store: FeatureStore) -> None:
    lay = layout(store, "user_stats")
    writer = store.online_writer()
    t = now_us()
    first = writer.write(lay, [((1,), t, None, (1.0, 1, "a")), ((1,), t - 10, None, (2.0, 1, "a"))])
    assert (first.rows, first.written, first.skipped_older) == (2, 1, 1)
    stale = writer.write(lay, [((2,), t - 2 * 3600 * 10**6, None, (1.0, 1, "a"))])
    assert (stale.written, stale.skipped_expired) == (0, 1)


# -- TTL ----------------------------------------------------------------------------------------


def test_values_older_than_the_ttl_are_expired_on_read_and_never_served(
    store: FeatureStore, r: redis.Redis
) -> None:
    event = ago(minutes=59)  # TTL is 1 hour
    store.write_online("user_stats", user_stats([1], [event], [9.0]))
    later = OnlineClient(store.online_store, store.catalog(), clock=lambda: now_us() + 120 * 10**6)
    response = later.get_online_features([{"user_id": 1}], features=USER_STATS)
    assert response.to_dict()["avg_amount"] == [None]
    assert response.status_dict()["avg_amount"] == ["expired"]
    assert response.event_times()["avg_amount"] == [event]  # says how old it was
    assert store.get_online_features([{"user_id": 1}], features=USER_STATS).to_dict()[
        "avg_amount"
    ] == [9.0]
    # Redis evicts the key itself at event time + TTL.
    key = layout(store, "user_stats").prefix + b"1"
    expire_at_ms = r.pexpiretime(key)
    assert abs(expire_at_ms - (event + timedelta(hours=1)).timestamp() * 1000) < 2
    later.close()


def test_key_expiry_follows_the_freshest_value_and_no_ttl_keeps_it(
    store: FeatureStore, r: redis.Redis
) -> None:
    key = layout(store, "user_stats").prefix + b"1"
    old, new = ago(minutes=50), ago(minutes=10)
    store.write_online("user_stats", user_stats([1], [new], [1.0]))
    store.write_online("user_stats", user_stats([1], [old], [2.0]))  # older: refused
    assert abs(r.pexpiretime(key) - (new + timedelta(hours=1)).timestamp() * 1000) < 2
    profile = pa.table(
        {
            "user_id": pa.array([1], pa.int64()),
            "event_timestamp": pa.array([old], UTC_US),
            "embedding": pa.array([None], pa.list_(pa.float32())),
            "signup": pa.array([None], UTC_US),
            "vip": [False],
            "blob": pa.array([None], pa.binary()),
            "score32": pa.array([1.0], pa.float32()),
            "level": pa.array([1], pa.int32()),
        }
    )
    store.write_online("user_profile", profile)  # a view without TTL shares the hash
    assert r.pttl(key) == -1
    store.write_online("user_stats", user_stats([1], [ago(minutes=1)], [3.0]))
    assert r.pttl(key) == -1  # still held by the view without TTL


# -- versions -------------------------------------------------------------------------------------


def test_pinned_versions_are_served_side_by_side_until_retired(
    store: FeatureStore, r: redis.Redis
) -> None:
    store.write_online("user_stats", user_stats([1], [ago(minutes=2)], [1.0]))
    replace_in_file(
        store.config.repo_path / "defs.py",
        'Field(name="txn_count", dtype=Int64)',
        'Field(name="txn_count", dtype=Int32)',
    )
    store.apply()
    assert store.snapshot().latest_version("user_stats") == 2
    v2 = user_stats([1], [ago(minutes=1)], [2.0])
    store.write_online("user_stats", v2.set_column(3, "txn_count", pa.array([7], pa.int32())))
    row = [{"user_id": 1, "merchant_id": "m"}]
    assert store.get_online_features(row, model="fraud_model").to_dict()["avg_amount"] == [1.0]
    latest = store.get_online_features(row, features=["user_stats:avg_amount"])
    assert latest.plan.refs == ("user_stats@v2:avg_amount",)
    assert latest.to_dict()["avg_amount"] == [2.0]
    pinned = store.get_online_features(row, features=["user_stats@v1:avg_amount"])
    assert pinned.to_dict()["avg_amount"] == [1.0]

    store.promote("fraud_model")
    store.retire("user_stats", 1)
    key = layout(store, "user_stats").prefix + b"1"
    assert r.hkeys(key) == [b"user_stats@2"]  # v1's value is gone from Redis
    assert store.get_online_features(row, model="fraud_model").to_dict()["avg_amount"] == [2.0]
    with pytest.raises(VersionNotFound, match="retired"):
        store.get_online_features(row, features=["user_stats@v1:avg_amount"])
    assert store.cleanup_online() == {"user_stats@v1": 0}  # idempotent


def test_retiring_while_redis_is_down_retires_and_says_how_to_clean_up(
    tmp_path: Path, services: Any
) -> None:
    port = free_port()
    proc = start_redis(port)
    repo = online_repo(tmp_path / "repo", f"redis://127.0.0.1:{port}/0")
    try:
        with FeatureStore(repo) as store:
            store.apply()
            store.write_online("user_stats", user_stats([1], [ago(minutes=2)], [1.0]))
            replace_in_file(
                repo / "defs.py",
                'Field(name="txn_count", dtype=Int64)',
                'Field(name="txn_count", dtype=Int32)',
            )
            store.apply()
            store.promote("fraud_model")
            proc.terminate()
            proc.wait(10)
            with pytest.raises(OnlineStoreUnavailable, match="user_stats@v1 is retired, but"):
                store.retire("user_stats", 1)
            assert [v.status for v in store.versions("user_stats")] == ["retired", "active"]
            proc = start_redis(port)  # memory-only: nothing left to remove, but it runs
            assert store.cleanup_online() == {"user_stats@v1": 0}
    finally:
        proc.terminate()
        proc.wait(10)


# -- bad input ------------------------------------------------------------------------------------

BAD = {
    "unknown model": (dict(model="fraud_modl"), [{"user_id": 1}], ObjectNotFound, "fraud_model"),
    "unknown feature": (
        dict(features=["user_stats:avg_amont"]),
        [{"user_id": 1}],
        FeatureNotFound,
        "avg_amount",
    ),
    "unknown version": (
        dict(features=["user_stats@v9:avg_amount"]),
        [{"user_id": 1}],
        VersionNotFound,
        "v1",
    ),
    "offline-only view": (
        dict(features=["offline_only:label_rate"]),
        [{"user_id": 1}],
        FeatureNotServedOnline,
        "online=False",
    ),
    "string for an int key": (
        dict(features=USER_STATS),
        [{"user_id": "1"}],
        EntityInputError,
        "key 'user_id': expected an integer",
    ),
    "bool for an int key": (
        dict(features=USER_STATS),
        [{"user_id": True}],
        EntityInputError,
        "key 'user_id'",
    ),
    "int out of range": (
        dict(features=USER_STATS),
        [{"user_id": 2**63}],
        EntityInputError,
        "out of range",
    ),
    "int for a string key": (
        dict(features=["merchant_stats:chargeback_rate"]),
        [{"merchant_id": 5}],
        EntityInputError,
        "key 'merchant_id': expected a string",
    ),
    "null key": (dict(features=USER_STATS), [{"user_id": None}], EntityInputError, "user_id"),
    "missing key": (
        dict(model="fraud_model"),
        [{"user_id": 1}],
        EntityInputError,
        "row 0 has no 'merchant_id', which merchant_stats@v1, pair_stats@v1",
    ),
    "no rows": (dict(model="fraud_model"), [], EntityInputError, "at least one"),
    "row not a mapping": (dict(features=USER_STATS), [1], EntityInputError, "row 0"),
    "columns of unequal length": (
        dict(model="fraud_model"),
        {"user_id": [1, 2], "merchant_id": ["m"]},
        EntityInputError,
        "differ in length",
    ),
    "too many rows": (
        dict(features=USER_STATS),
        [{"user_id": i} for i in range(1001)],
        RequestTooLargeError,
        "limit is 1000",
    ),
    "model and features": (
        dict(model="fraud_model", features=USER_STATS),
        [{"user_id": 1}],
        EntityInputError,
        "not both",
    ),
    "name clash": (
        dict(features=["user_stats@v1:avg_amount", "user_stats:avg_amount"]),
        [{"user_id": 1}],
        None,
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_lookups_raise_typed_errors_naming_the_problem(store: FeatureStore, case: str) -> None:
    request, entities, error, message = BAD[case]
    if error is None:  # the same version twice is one feature, not a clash
        assert store.get_online_features(entities, **request).feature_names == ("avg_amount",)
        return
    with pytest.raises(error, match=message):
        store.get_online_features(entities, **request)


def test_a_bad_key_anywhere_in_a_write_writes_nothing(store: FeatureStore, r: redis.Redis) -> None:
    lay = layout(store, "user_stats")
    writer = small_writer(store, 2)
    t = now_us()
    rows = [((u,), t, None, (1.0, 1, "a")) for u in range(10)] + [(("x",), t, None, (1, 1, "a"))]
    with pytest.raises(EntityInputError, match="Row 10 for user_stats@v1: key 'user_id'"):
        writer.write(lay, rows)
    assert not all_keys(r, lay.prefix + b"*")


def test_a_table_missing_a_feature_column_is_refused(store: FeatureStore) -> None:
    table = user_stats([1], [ago(minutes=1)], [1.0]).drop_columns(["country"])
    with pytest.raises(EntityInputError, match=r"user_stats@v1 have no column\(s\) country"):
        store.write_online("user_stats", table)


# -- Redis down ---------------------------------------------------------------------------------


def start_redis(port: int) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (scripts/setup.sh installs it)"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port).ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


def test_lookups_fail_clearly_while_redis_is_down_and_recover_after(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis(port)
    try:
        with FeatureStore(online_repo(tmp_path / "repo", url)) as store:
            store.apply()
            store.write_online("user_stats", user_stats([1], [ago(minutes=1)], [1.0]))
            ask = [{"user_id": 1}]
            assert store.get_online_features(ask, features=USER_STATS).to_dict()["avg_amount"] == [
                1.0
            ]
            proc.terminate()
            proc.wait(10)
            with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}"):
                store.get_online_features(ask, features=USER_STATS)
            proc = start_redis(port)  # empty: memory-only
            store.write_online("user_stats", user_stats([1], [ago(minutes=1)], [2.0]))
            assert store.get_online_features(ask, features=USER_STATS).to_dict()["avg_amount"] == [
                2.0
            ]
    finally:
        proc.terminate()
        proc.wait(10)
