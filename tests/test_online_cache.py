"""The in-process lookup cache (featurestore/online/cache.py) against a real Redis.

Round trips are counted with Redis's own INFO commandstats; the cache's clock is injected,
so staleness is tested without sleeping. Each test has its own project (its own keys).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pyarrow as pa
import pytest
import redis

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.config_sections import CacheConfig
from featurestore.errors import RepoConfigError
from featurestore.online.cache import LookupCache
from featurestore.online.client import now_us
from featurestore.online.layout import HEADER
from tests.helpers import ONLINE_REPO, write_repo

UTC_US = pa.timestamp("us", tz="UTC")
MS = 1_000_000  # ns
_projects = itertools.count()
DRIFT = """
from featurestore import DriftMonitor

fraud_drift = DriftMonitor(
    name="fraud_drift", model=fraud_model, sample_rate=1.0, min_samples=10,
    window=timedelta(hours=1),
)
"""


class Clock:
    """A monotonic clock in nanoseconds that moves only when told."""

    def __init__(self) -> None:
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns

    def advance(self, ms: float) -> None:
        self.ns += int(ms * MS)


def repo_at(path: Path, redis_url: str, cache_yaml: str = "", *, drift: bool = False) -> Path:
    config = (
        f"project: cache{next(_projects)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {redis_url}\n{cache_yaml}"
    )
    defs = textwrap.dedent(ONLINE_REPO["defs.py"]) + (DRIFT if drift else "")
    return write_repo(path, {"featurestore.yaml": config, "defs.py": defs})


@pytest.fixture
def store(tmp_path: Path, services: Any) -> Iterator[FeatureStore]:
    with FeatureStore(repo_at(tmp_path / "repo", services.redis_url)) as s:
        s.apply()
        yield s


@pytest.fixture
def r(services: Any) -> redis.Redis:
    return redis.Redis.from_url(services.redis_url)


def hmgets(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_hmget", {"calls": 0})["calls"])


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def user_stats(users: list[int], at: datetime, amount: float) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "event_timestamp": pa.array([at] * len(users), UTC_US),
            "avg_amount": pa.array([amount] * len(users), pa.float64()),
            "txn_count": pa.array([7] * len(users), pa.int64()),
            "country": pa.array(["DE"] * len(users)),
        }
    )


STATS = ["user_stats:avg_amount", "user_stats:txn_count"]


def cached_client(store: FeatureStore, ticks: Clock, **options: Any) -> Any:
    views = options.pop("views", {"user_stats": 500})
    models = options.pop("models", {})
    cache = LookupCache(
        max_entries=options.pop("max_entries", 1000), views=views, models=models, clock=ticks
    )
    return store.online_client(cache=cache, **options)


def amounts(response: Any) -> list[Any]:
    return response.to_dict()["avg_amount"]


# -- hits, misses, round trips ------------------------------------------------------------------


@pytest.mark.services
def test_a_hit_is_served_without_a_round_trip_and_answers_the_same(
    store: FeatureStore, r: redis.Redis
) -> None:
    t = ago(minutes=1)
    store.write_online("user_stats", user_stats([1, 2], t, 5.0))
    client = cached_client(store, Clock())
    rows = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]  # 3 was never written
    before = hmgets(r)
    first = client.get_online_features(rows, features=STATS)
    assert hmgets(r) - before == 3
    second = client.get_online_features(rows, features=STATS)
    assert hmgets(r) - before == 3  # every command answered from the cache
    assert (
        second.to_dict()
        == first.to_dict()
        == {
            "user_id": [1, 2, 3],
            "avg_amount": [5.0, 5.0, None],
            "txn_count": [7, 7, None],
        }
    )
    assert second.status_dict() == first.status_dict()
    assert second.status_dict()["avg_amount"] == ["present", "present", "missing"]
    assert second.event_us == first.event_us
    assert client.cache.stats()["hits"] == 3


@pytest.mark.services
def test_only_the_missing_commands_go_to_redis_in_one_round_trip(
    store: FeatureStore, r: redis.Redis
) -> None:
    store.write_online("user_stats", user_stats([1, 2, 3], ago(minutes=1), 2.5))
    client = cached_client(store, Clock())
    client.get_online_features([{"user_id": 1}, {"user_id": 2}], features=STATS)
    sent: list[list[tuple]] = []
    read = client.store.read
    client.store.read = lambda commands: sent.append(list(commands)) or read(commands)
    before = hmgets(r)
    response = client.get_online_features(
        [{"user_id": 1}, {"user_id": 3}, {"user_id": 2}], features=STATS
    )
    assert hmgets(r) - before == 1
    assert [[c[1] for c in batch] for batch in sent] == [[f"fs:{store.project}:user:3".encode()]]
    assert amounts(response) == [2.5, 2.5, 2.5]


@pytest.mark.services
def test_the_cache_is_off_by_default(tmp_path: Path, services: Any, r: redis.Redis) -> None:
    plain = repo_at(tmp_path / "plain", services.redis_url)
    empty = repo_at(tmp_path / "empty", services.redis_url, "  cache: {max_entries: 10}\n")
    for repo in (plain, empty):
        with FeatureStore(repo) as store:
            store.apply()
            store.write_online("user_stats", user_stats([1], ago(minutes=1), 1.0))
            client = store.online_client()
            assert client.cache is None
            before = hmgets(r)
            for _ in range(3):
                client.get_online_features([{"user_id": 1}], features=STATS)
            assert hmgets(r) - before == 3


@pytest.mark.services
def test_the_config_turns_it_on_per_view_and_per_model(
    tmp_path: Path, services: Any, r: redis.Redis
) -> None:
    yaml = (
        "  cache:\n    max_entries: 50\n    views: {merchant_stats: {max_staleness_ms: 60000}}\n"
        "    models: {fraud_model: {max_staleness_ms: 60000}}\n"
    )
    with FeatureStore(repo_at(tmp_path / "repo", services.redis_url, yaml)) as store:
        store.apply()
        store.write_online("user_stats", user_stats([1], ago(minutes=1), 1.0))
        client = store.online_client()
        assert client.cache.max_entries == 50
        before = hmgets(r)
        for _ in range(3):  # the model's views: user, merchant and pair sets, 3 commands
            client.get_online_features([{"user_id": 1, "merchant_id": "m1"}], model="fraud_model")
        assert hmgets(r) - before == 3
        for _ in range(3):  # by feature list: user_stats is not cached for it
            client.get_online_features([{"user_id": 1}], features=STATS)
        assert hmgets(r) - before == 6
        for _ in range(3):  # merchant_stats is, for everyone
            client.get_online_features(
                [{"merchant_id": "m1"}], features=["merchant_stats:chargeback_rate"]
            )
        assert hmgets(r) - before == 6  # already held from the model's lookups


# -- staleness ------------------------------------------------------------------------------------


@pytest.mark.services
def test_a_value_is_never_served_past_its_bound_and_writes_show_after_it(
    store: FeatureStore, r: redis.Redis
) -> None:
    clock = Clock()
    client = cached_client(store, clock, views={"user_stats": 500})
    store.write_online("user_stats", user_stats([1], ago(minutes=5), 1.0))
    assert amounts(
        client.get_online_features([{"user_id": 1}, {"user_id": 2}], features=STATS)
    ) == [
        1.0,
        None,
    ]
    store.write_online("user_stats", user_stats([1, 2], ago(minutes=1), 2.0))
    clock.advance(500)  # exactly the bound: still the cached answer
    before = hmgets(r)
    rows = [{"user_id": 1}, {"user_id": 2}]
    assert amounts(client.get_online_features(rows, features=STATS)) == [1.0, None]
    assert hmgets(r) == before
    clock.advance(1)  # past it: read again, the new values (and the new entity) show
    assert amounts(client.get_online_features(rows, features=STATS)) == [2.0, 2.0]
    assert hmgets(r) - before == 2
    # A deletion (stream repair) shows within the bound too.
    store.online_writer().delete_entities(store_layout(store), [[1]])
    clock.advance(501)
    response = client.get_online_features(rows, features=STATS)
    assert response.status_dict()["avg_amount"] == ["missing", "present"]


def store_layout(store: FeatureStore) -> Any:
    from featurestore.online.layout import ViewLayout

    snap = store.snapshot()
    return ViewLayout.from_version(snap, snap.view_version("user_stats"))


@pytest.mark.services
def test_the_smaller_bound_of_view_and_model_wins(store: FeatureStore, r: redis.Redis) -> None:
    clock = Clock()
    client = cached_client(store, clock, views={"user_stats": 500}, models={"fraud_model": 200})
    store.write_online("user_stats", user_stats([1], ago(minutes=1), 1.0))
    row = [{"user_id": 1, "merchant_id": "m1"}]
    client.get_online_features(row, model="fraud_model")
    clock.advance(300)
    before = hmgets(r)
    client.get_online_features(row, features=STATS)  # the view's bound: 500 ms
    assert hmgets(r) == before
    client.get_online_features(row, model="fraud_model")  # the model's: 200 ms
    assert hmgets(r) - before == 3


# -- event times and TTL --------------------------------------------------------------------------


@pytest.mark.services
def test_status_and_ttl_expiry_are_computed_at_serve_time(
    store: FeatureStore, r: redis.Redis
) -> None:
    """user_stats has a TTL of one hour: a cached value past it reports expired."""
    now = [now_us()]
    client = cached_client(store, Clock(), clock=lambda: now[0])
    at = ago(minutes=30)
    store.write_online("user_stats", user_stats([1], at, 1.0))
    first = client.get_online_features([{"user_id": 1}], features=STATS)
    assert first.status_dict()["avg_amount"] == ["present"]
    now[0] += 31 * 60 * 1_000_000  # the lookup's wall clock moves past the TTL
    before = hmgets(r)
    later = client.get_online_features([{"user_id": 1}], features=STATS)
    assert hmgets(r) == before  # from the cache
    assert later.status_dict() == {"avg_amount": ["expired"], "txn_count": ["expired"]}
    assert amounts(later) == [None]
    assert later.event_us == first.event_us  # the value's event time, as without the cache


def raw_value(event_us: int, values: list[Any]) -> bytes:
    return HEADER.pack(event_us, event_us) + msgpack.packb(values)


@pytest.mark.services
def test_a_redis_that_goes_back_in_time_is_not_seen_within_the_bound(
    store: FeatureStore, r: redis.Redis
) -> None:
    """user_profile is not cached, so the command for user 1 (both views live in one hash)
    goes to Redis each time; the older user_stats value it brings back (a failover that lost
    a write) is not served while the newer one is within its bound; past it, Redis wins."""
    clock = Clock()
    client = cached_client(store, clock, views={"user_stats": 500})
    key = f"fs:{store.project}:user:1".encode()
    new, old = ago(minutes=1), ago(minutes=10)
    store.write_online("user_stats", user_stats([1], new, 2.0))
    features = [*STATS, "user_profile:level"]
    first = client.get_online_features([{"user_id": 1}], features=features)
    assert amounts(first) == [2.0]
    old_us = int(old.timestamp() * 1_000_000)
    r.hset(key, b"user_stats@1", raw_value(old_us, [1.0, 3, "FR"]))  # Redis regressed
    clock.advance(400)
    before = hmgets(r)
    again = client.get_online_features([{"user_id": 1}], features=features)
    assert hmgets(r) - before == 1
    assert amounts(again) == [2.0]
    assert again.event_us[0] == first.event_us[0]
    clock.advance(101)  # the newer value's read is now past the bound
    after = client.get_online_features([{"user_id": 1}], features=features)
    assert amounts(after) == [1.0]
    assert after.event_us[0] == [old_us]


# -- memory, async, serving log, usage ------------------------------------------------------------


@pytest.mark.services
def test_entries_never_exceed_max_entries(store: FeatureStore) -> None:
    store.write_online("user_stats", user_stats(list(range(60)), ago(minutes=1), 4.0))
    client = cached_client(store, Clock(), max_entries=10)
    for start in range(0, 60, 7):
        rows = [{"user_id": u} for u in range(start, start + 7)]
        assert amounts(client.get_online_features(rows, features=STATS)) == [
            4.0 if u < 60 else None for u in range(start, start + 7)
        ]
        assert client.cache.stats()["entries"] <= 10
    big = client.get_online_features([{"user_id": u} for u in range(40)], features=STATS)
    assert amounts(big) == [4.0] * 40  # a lookup wider than the cache is still answered whole
    stats = client.cache.stats()
    assert stats["entries"] == 10
    assert stats["evictions"] >= 50
    one = len(b"x" * 16) + len(msgpack.packb([4.0, 7, "DE"]))
    assert stats["value_bytes"] == 10 * one


@pytest.mark.services
def test_the_async_path_uses_the_cache(store: FeatureStore, r: redis.Redis) -> None:
    store.write_online("user_stats", user_stats([1, 2], ago(minutes=1), 3.0))
    client = cached_client(store, Clock())

    async def lookups() -> list[Any]:
        try:
            return [
                await client.get_online_features_async(
                    [{"user_id": 1}, {"user_id": 2}], features=STATS
                )
                for _ in range(3)
            ]
        finally:
            await client.aclose()

    before = hmgets(r)
    responses = asyncio.run(lookups())
    assert hmgets(r) - before == 2
    assert [amounts(x) for x in responses] == [[3.0, 3.0]] * 3


@pytest.mark.services
def test_cached_lookups_are_sampled_and_counted_like_any_other(
    tmp_path: Path, services: Any, r: redis.Redis
) -> None:
    from featurestore.online.serving_log import decode_batch

    with FeatureStore(repo_at(tmp_path / "repo", services.redis_url, drift=True)) as store:
        store.apply()
        store.write_online("user_stats", user_stats([1], ago(minutes=1), 6.0))
        client = cached_client(store, Clock(), views={}, models={"fraud_model": 60_000})
        row = [{"user_id": 1, "merchant_id": "m1"}]
        before = hmgets(r)
        for _ in range(4):
            client.get_online_features(row, model="fraud_model")
        assert hmgets(r) - before == 3  # one lookup's three entity sets, then the cache
        client.serving_log.flush()
        assert client.serving_log.written == 4
        key = f"fs:{store.project}:@served:fraud_model".encode()
        samples = [s for e in client.store.read_served(key, 0, 100) for s in decode_batch(e)]
        assert [s["v"][0] for s in samples] == [[6.0]] * 4
        usage = client.usage()
        assert usage[("fraud_model", "user_stats@v1:avg_amount", "allow")] == (4, 4)
        client.close()


@pytest.mark.services
def test_a_new_version_is_read_fresh_never_from_the_old_ones_entries(
    store: FeatureStore, r: redis.Redis
) -> None:
    client = cached_client(store, Clock(), views={"user_stats": 60_000})
    store.write_online("user_stats", user_stats([1], ago(minutes=1), 1.0))
    assert amounts(client.get_online_features([{"user_id": 1}], features=STATS)) == [1.0]
    defs = store.config.repo_path / "defs.py"
    defs.write_text(
        defs.read_text().replace(
            'Field(name="country", dtype=String),',
            'Field(name="country", dtype=String),\n        Field(name="tier", dtype=Int64),',
        )
    )
    store.apply()
    table = user_stats([1], ago(minutes=1), 9.0).append_column("tier", pa.array([1], pa.int64()))
    store.write_online("user_stats", table)
    client.maybe_refresh = lambda: None
    client.catalog = store.catalog()  # as the client's refresh would, within a second
    before = hmgets(r)
    response = client.get_online_features([{"user_id": 1}], features=STATS)
    assert hmgets(r) - before == 1
    assert amounts(response) == [9.0]
    assert response.plan.refs[0] == "user_stats@v2:avg_amount"


MASK = """
from featurestore import FeatureMatch, ModelMatch, Policy

hide_amounts = Policy(
    name="hide_amounts", effect="mask", mask="redact",
    features=FeatureMatch(views=["user_stats"]), models=ModelMatch(purposes=["fraud"]),
)
"""


@pytest.mark.services
def test_masks_apply_to_each_lookup_never_to_what_the_cache_holds(
    tmp_path: Path, services: Any, r: redis.Redis
) -> None:
    with FeatureStore(repo_at(tmp_path / "repo", services.redis_url)) as store:
        (store.config.repo_path / "mask.py").write_text(MASK)
        store.apply()
        store.write_online("user_stats", user_stats([1], ago(minutes=1), 5.0))
        client = cached_client(store, Clock(), views={"user_stats": 60_000})
        row = [{"user_id": 1, "merchant_id": "m1"}]
        before = hmgets(r)
        assert amounts(client.get_online_features(row, model="fraud_model")) == [None]
        assert amounts(client.get_online_features(row, features=STATS)) == [5.0]
        assert amounts(client.get_online_features(row, model="fraud_model")) == [None]
        assert amounts(client.get_online_features(row, features=STATS)) == [5.0]
        assert hmgets(r) - before == 3 + 2  # user_stats read once; merchant and pair uncached


# -- config ---------------------------------------------------------------------------------------


def config_of(tmp_path: Path, cache_yaml: str) -> Any:
    path = tmp_path / f"r{next(_projects)}"
    path.mkdir()
    (path / "featurestore.yaml").write_text(f"project: p\nonline_store:\n{cache_yaml}")
    return load_config(path)


def test_the_cache_config_is_read_and_checked(tmp_path: Path) -> None:
    good = config_of(
        tmp_path,
        "  cache:\n    max_entries: 5000\n    views: {user_stats: {max_staleness_ms: 500}}\n"
        "    models: {fraud_model: {max_staleness_ms: 200}}\n",
    )
    assert good.online_cache == CacheConfig(
        max_entries=5000, views={"user_stats": 500}, models={"fraud_model": 200}
    )
    assert config_of(tmp_path, "  cluster: false\n").online_cache is None
    bad = {
        "  cache: 500\n": "online_store.cache must be a mapping",
        "  cache: {max_entrys: 5}\n": "unknown setting 'online_store.cache.max_entrys'. Did you "
        "mean 'max_entries'?",
        "  cache: {max_entries: 0}\n": "max_entries must be a positive integer",
        "  cache: {max_entries: true}\n": "max_entries must be a positive integer",
        "  cache: {views: [user_stats]}\n": "online_store.cache.views must map view names",
        "  cache: {views: {user_stats: 500}}\n": "online_store.cache.views.user_stats must be a "
        "mapping like `{max_staleness_ms: 500}`, got 500",
        "  cache: {views: {v: {max_staleness: 5}}}\n": "unknown setting "
        "'online_store.cache.views.v.max_staleness'. Did you mean 'max_staleness_ms'?",
        "  cache: {models: {m: {max_staleness_ms: 0}}}\n": "models.m.max_staleness_ms must be an "
        "integer number of milliseconds from 1 to 3,600,000, got 0",
        "  cache: {models: {m: {max_staleness_ms: 2.5}}}\n": "got 2.5",
        "  cache: {models: {m: {}}}\n": "got None",
    }
    for yaml, message in bad.items():
        with pytest.raises(RepoConfigError, match=r"featurestore\.yaml") as err:
            config_of(tmp_path, yaml)
        assert message in str(err.value), yaml


@pytest.mark.services
def test_unknown_names_in_the_cache_config_are_warned_about(
    store: FeatureStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="featurestore.cache"):
        cached_client(store, Clock(), views={"user_stat": 500}, models={"fraud_model": 100})
    assert any(
        "online_store.cache.views names 'user_stat'" in m and "Did you mean 'user_stats'" in m
        for m in caplog.messages
    ), caplog.messages


# -- the structure, without Redis -----------------------------------------------------------------


class FakePlan:
    """The parts of a LookupPlan the cache reads."""

    def __init__(self, fields: list[list[tuple[str, bytes]]], model: str | None = None) -> None:
        from types import SimpleNamespace as NS

        self.model = model
        self.policy_model = model
        self.key_reads = tuple(
            NS(views=tuple(NS(layout=NS(view=view, field=field)) for view, field in kr))
            for kr in fields
        )


def value(event: int) -> bytes:
    return raw_value(event, [event])


def test_lru_keeps_the_recently_hit_and_counts_bytes() -> None:
    clock = Clock()
    cache = LookupCache(max_entries=2, views={"v": 1000}, clock=clock)
    plan = FakePlan([[("v", b"v@1")]])
    bounds = cache.bounds(plan)
    assert bounds is not None
    assert cache.bounds(plan) is bounds  # decided once per plan

    def lookup(*keys: bytes) -> list[Any]:
        commands = [(b"HMGET", k, b"v@1") for k in keys]
        replies, todo, sent = cache.answer(commands, bounds, len(commands))
        fetched = [[value(int(commands[j][1]))] for j in todo]
        return cache.fill(replies, todo, fetched, commands, bounds, len(commands), sent)

    lookup(b"1", b"2")
    lookup(b"1")  # a hit: 1 is now the most recent
    lookup(b"3")  # evicts 2
    assert cache.stats()["entries"] == 2
    before = cache.stats()["misses"]
    assert lookup(b"1", b"3") == [[value(1)], [value(3)]]
    assert cache.stats()["misses"] == before
    lookup(b"2")
    assert cache.stats()["misses"] == before + 1
    assert cache.stats()["value_bytes"] == 2 * len(value(1))


def test_a_late_reply_never_replaces_a_later_read() -> None:
    """Two lookups race: the one sent first answers last, with the older value."""
    clock = Clock()
    cache = LookupCache(max_entries=10, views={"v": 1000}, clock=clock)
    bounds = cache.bounds(FakePlan([[("v", b"v@1")]]))
    assert bounds is not None
    commands = [(b"HMGET", b"k", b"v@1")]
    first = cache.answer(commands, bounds, 1)
    clock.advance(1)
    second = cache.answer(commands, bounds, 1)
    assert first[1] == second[1] == [0]
    got = cache.fill(second[0], second[1], [[value(20)]], commands, bounds, 1, second[2])
    assert got == [[value(20)]]
    late = cache.fill(first[0], first[1], [[value(10)]], commands, bounds, 1, first[2])
    assert late == [[value(20)]]  # what the later read saw, not the older value
    late_missing = cache.fill(first[0], first[1], [[None]], commands, bounds, 1, first[2])
    assert late_missing == [[value(20)]]
    assert cache.answer(commands, bounds, 1)[0] == [[value(20)]]
    # The same race when the late reply lands after the later read's bound has passed.
    third = cache.answer([(b"HMGET", b"j", b"v@1")], bounds, 1)
    clock.advance(1)
    fourth = cache.answer([(b"HMGET", b"j", b"v@1")], bounds, 1)
    cache.fill(
        fourth[0], fourth[1], [[value(40)]], [(b"HMGET", b"j", b"v@1")], bounds, 1, fourth[2]
    )
    clock.advance(2000)
    late = cache.fill(
        third[0], third[1], [[value(30)]], [(b"HMGET", b"j", b"v@1")], bounds, 1, third[2]
    )
    assert late == [[value(40)]]


def test_bounds_per_field_and_the_smaller_wins() -> None:
    cache = LookupCache(max_entries=10, views={"a": 500, "b": 100}, models={"m": 200})
    plan = FakePlan([[("a", b"a@1"), ("b", b"b@1")], [("c", b"c@1")]], model="m")
    bounds = cache.bounds(plan)
    assert bounds is not None
    assert bounds.fields == (((b"a@1", 200 * MS), (b"b@1", 100 * MS)), ((b"c@1", 200 * MS),))
    plain = FakePlan([[("a", b"a@1"), ("x", b"x@1")], [("c", b"c@1")]])
    mixed = cache.bounds(plain)
    assert mixed is not None
    assert mixed.served == (None, None)  # x is not cached: its set always goes to Redis
    assert mixed.fields[0] == ((b"a@1", 500 * MS), (b"x@1", None))
    assert mixed.fills == (((0, b"a@1", 500 * MS),), ())
    # The uncached set's keys never take room in the cache.
    partly = LookupCache(max_entries=10, views={"a": 500})
    split = partly.bounds(FakePlan([[("a", b"a@1")], [("c", b"c@1")]]))
    assert split is not None
    commands = [(b"HMGET", b"u1", b"a@1"), (b"HMGET", b"m1", b"c@1")]
    replies, todo, sent = partly.answer(commands, split, 2)
    partly.fill(replies, todo, [[value(1)], [value(2)]], commands, split, 2, sent)
    assert partly.stats()["entries"] == 1
    assert partly.answer(commands, split, 2)[1] == [1]
    assert cache.bounds(FakePlan([[("x", b"x@1")]])) is None


def test_threads_share_it_safely() -> None:
    cache = LookupCache(max_entries=50, views={"v": 10_000})
    bounds = cache.bounds(FakePlan([[("v", b"v@1")]]))
    assert bounds is not None
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(2000):
                keys = [str((seed * 7 + i * 13 + j) % 200).encode() for j in range(5)]
                commands = [(b"HMGET", k, b"v@1") for k in keys]
                replies, todo, sent = cache.answer(commands, bounds, 5)
                fetched = [[value(1000 + int(commands[j][1]))] for j in todo]
                got = cache.fill(replies, todo, fetched, commands, bounds, 5, sent)
                assert got == [[value(1000 + int(k))] for k in keys]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = cache.stats()
    assert stats["entries"] <= 50
    assert stats["value_bytes"] == stats["entries"] * len(value(1000))


@pytest.mark.services
def test_featurestore_serve_uses_the_repos_cache(
    tmp_path: Path, services: Any, r: redis.Redis
) -> None:
    from tests.test_serving import start_server, stop_server

    yaml = "  cache: {models: {fraud_model: {max_staleness_ms: 60000}}}\n"
    repo = repo_at(tmp_path / "repo", services.redis_url, yaml)
    with FeatureStore(repo) as store:
        store.apply()
        store.write_online("user_stats", user_stats([1], ago(minutes=1), 8.0))
    server = start_server(repo, "--workers", "1")
    try:
        body = {"model": "fraud_model", "entities": [{"user_id": 1, "merchant_id": "m1"}]}
        before = hmgets(r)
        answers = [server.post(body).json() for _ in range(3)]
        assert hmgets(r) - before == 3  # the first request's three entity sets
        assert answers[0] == answers[1] == answers[2]
        assert answers[0]["results"][0]["values"] == [8.0]
        scraped = server.get("/metrics").text
        # 3 entity sets: missed once, then held for the next two requests.
        assert 'featurestore_cache_events_total{event="miss"} 3.0' in scraped
        assert 'featurestore_cache_events_total{event="hit"} 6.0' in scraped
        assert "featurestore_cache_entries 3.0" in scraped
    finally:
        stop_server(server)
