"""The Redis Cluster online store against a real local cluster: what only a cluster does.

The behaviour every store shares (monotonic writes, TTL, versions, retire, bad input, one
round trip per node) runs against both stores in tests/test_online_store.py. Here: keys
spread over every primary, a resharding under running lookups and writes, a primary's
failover, a node that is down, the serving log and drift, and a config that says the
opposite of what the server is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from featurestore import FeatureStore, devservices
from featurestore.errors import (
    OnlineStoreMisconfigured,
    OnlineStoreRefused,
    OnlineStoreUnavailable,
)
from featurestore.online.cluster_store import ClusterOnlineStore
from featurestore.online.serving_log import ServingLog, decode_batch
from featurestore.online.slots import key_slot
from tests.helpers import online_repo, replace_in_file
from tests.test_online_store import USER_STATS, ago, layout, user_stats

pytestmark = pytest.mark.services
_projects = itertools.count()


def nodes(cluster: Any) -> dict[int, redis.Redis]:
    """port -> client of each live primary."""
    out = {}
    for port in (*cluster.ports, *cluster.replica_ports):
        client = redis.Redis(port=port, socket_timeout=2)
        try:
            if client.execute_command("ROLE")[0] == b"master":
                out[port] = client
        except redis.ConnectionError:
            continue  # a primary an earlier test shut down
    return out


def owner(cluster: Any, key: bytes) -> int:
    """The port of the primary serving ``key``, as the cluster says now."""
    slot = key_slot(key)
    any_node = next(iter(nodes(cluster).values()))
    for start, end, primary, *_replicas in any_node.execute_command("CLUSTER SLOTS"):
        if start <= slot <= end:
            return int(primary[1])
    raise AssertionError(f"no primary serves slot {slot}")


@pytest.fixture
def store(tmp_path: Path, redis_cluster: Any) -> Iterator[FeatureStore]:
    repo = online_repo(tmp_path / "repo", redis_cluster.url, f"cl{next(_projects)}", cluster=True)
    with FeatureStore(repo) as s:
        s.apply()
        yield s


def test_keys_spread_over_every_primary_and_read_back(
    store: FeatureStore, redis_cluster: Any
) -> None:
    users = list(range(300))
    stats = store.write_online("user_stats", user_stats(users, [ago(minutes=1)] * 300, users))
    assert stats.written == 300
    prefix = layout(store, "user_stats").prefix
    per_node = {p: len(c.keys(prefix + b"*")) for p, c in nodes(redis_cluster).items()}
    assert sum(per_node.values()) == 300
    assert all(n > 50 for n in per_node.values()), per_node  # sharded, not one slot
    rows = [{"user_id": u} for u in users]
    response = store.get_online_features(rows, features=USER_STATS)
    assert response.to_dict()["avg_amount"] == [float(u) for u in users]
    async_response = asyncio.run(store.get_online_features_async(rows, features=USER_STATS))
    assert async_response.to_json() == response.to_json()


def move_slot(slot: int, source: int, target: int, everyone: dict[int, redis.Redis]) -> None:
    """Migrate one slot key by key (so lookups meet it half moved: ASK), then hand it
    over (MOVED from then on): what `redis-cli --cluster reshard` does."""
    src, dst = everyone[source], everyone[target]
    src_id = src.execute_command("CLUSTER MYID")
    dst_id = dst.execute_command("CLUSTER MYID")
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1):
        src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        time.sleep(0.002)
    for client in everyone.values():
        client.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)


def test_a_resharding_while_lookups_and_writes_run_loses_nothing(
    store: FeatureStore, redis_cluster: Any
) -> None:
    users = list(range(200))
    store.write_online("user_stats", user_stats(users, [ago(minutes=10)] * 200, users))
    prefix = layout(store, "user_stats").prefix
    everyone = nodes(redis_cluster)
    source = owner(redis_cluster, prefix + b"0")
    target = next(p for p in sorted(everyone) if p != source)
    moving = [
        key_slot(prefix + str(u).encode())
        for u in users
        if owner(redis_cluster, prefix + str(u).encode()) == source
    ]
    assert moving
    rows = [{"user_id": u} for u in users]
    stop = threading.Event()
    seen: dict[str, int] = {"sync": 0, "async": 0, "writes": 0}
    failures: list[BaseException] = []
    client = store.online_client()

    def check(values: list[Any]) -> None:
        # Each user's value is its id, or (after a rewrite below) id + 1000: never missing.
        for u, v in zip(users, values, strict=True):
            assert v in (float(u), float(u + 1000)), (u, v)

    def sync_lookups() -> None:
        try:
            while not stop.is_set():
                check(client.get_online_features(rows, features=USER_STATS).to_dict()["avg_amount"])
                seen["sync"] += 1
        except BaseException as exc:
            failures.append(exc)

    def async_lookups() -> None:
        async def run() -> None:
            while not stop.is_set():
                response = await client.get_online_features_async(rows, features=USER_STATS)
                check(response.to_dict()["avg_amount"])
                seen["async"] += 1
            await client.aclose()

        try:
            asyncio.run(run())
        except BaseException as exc:
            failures.append(exc)

    def writes() -> None:
        try:
            while not stop.is_set():
                n = seen["writes"]
                batch = users[n % 200 : n % 200 + 20]
                newer = user_stats(batch, [ago(minutes=5)] * len(batch), [u + 1000 for u in batch])
                assert store.write_online("user_stats", newer).rows == len(batch)
                seen["writes"] += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=f) for f in (sync_lookups, async_lookups, writes)]
    for t in threads:
        t.start()
    try:
        for slot in sorted(set(moving)):
            move_slot(slot, source, target, everyone)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[0]
    assert min(seen.values()) > 0, seen
    assert all(owner(redis_cluster, prefix + str(u).encode()) != source for u in users)
    # Nothing lost: every user reads back, and every rewrite that was acknowledged landed.
    final = store.get_online_features(rows, features=USER_STATS).to_dict()["avg_amount"]
    check(final)
    rewritten = {u for n in range(seen["writes"]) for u in users[n % 200 : n % 200 + 20]}
    assert [final[u] == u + 1000 for u in users] == [u in rewritten for u in users]


def test_the_serving_log_drift_and_usage_work_on_a_cluster(
    store: FeatureStore, redis_cluster: Any
) -> None:
    online = store.online_store
    assert isinstance(online, ClusterOnlineStore)
    project = store.project
    keys = [f"fs:{project}:@served:m{i}".encode() for i in range(6)]  # spread over nodes
    log = ServingLog(online, interval=0.01)
    for i, key in enumerate(keys):
        log.offer(key, b"\x91%c" % i)
    log.flush()
    assert log.written == 6
    for i, key in enumerate(keys):
        assert [decode_batch(e) for e in online.read_served(key, 0, 10)] == [[[i]]]
    # Drift end to end on a cluster: tests/test_drift.py (monitored_anywhere).
    client = store.online_client()
    client.get_online_features([{"user_id": 1, "merchant_id": "m"}], model="fraud_model")
    assert any(k[0] == "fraud_model" for k in client.usage())


def test_cluster_true_on_a_single_redis_and_false_on_a_cluster_node_say_which(
    tmp_path: Path, services: Any, redis_cluster: Any
) -> None:
    repo = online_repo(tmp_path / "a", services.redis_url, "misa", cluster=True)
    with FeatureStore(repo) as s:
        s.apply()
        with pytest.raises(OnlineStoreMisconfigured, match=r"not a cluster node.*cluster: false"):
            s.get_online_features([{"user_id": 1}], features=USER_STATS)
    repo = online_repo(tmp_path / "b", redis_cluster.url, "misb", cluster=False)
    with FeatureStore(repo) as s:
        s.apply()
        users = list(range(40))  # some keys live on other nodes than the one named
        with pytest.raises(OnlineStoreMisconfigured, match="cluster: true"):
            s.write_online("user_stats", user_stats(users, [ago(minutes=1)] * 40, users))
        with pytest.raises(OnlineStoreMisconfigured, match="cluster: true"):
            s.get_online_features([{"user_id": u} for u in users], features=USER_STATS)
        with pytest.raises(OnlineStoreMisconfigured, match="cluster: true"):
            asyncio.run(
                s.get_online_features_async([{"user_id": u} for u in users], features=USER_STATS)
            )


def test_an_unreachable_cluster_fails_lookups_and_writes_clearly(tmp_path: Path) -> None:
    from featurestore.devservices import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    repo = online_repo(tmp_path / "repo", url, "gone", cluster=True)
    with FeatureStore(repo) as s:
        s.apply()
        with pytest.raises(OnlineStoreUnavailable, match=r"Redis Cluster at .* unreachable"):
            s.get_online_features([{"user_id": 1}], features=USER_STATS)
        assert s.online_store.ping() is False


def test_retire_and_cleanup_remove_a_version_from_every_primary(
    store: FeatureStore, redis_cluster: Any
) -> None:
    users = list(range(300))
    store.write_online("user_stats", user_stats(users, [ago(minutes=2)] * 300, users))
    replace_in_file(
        store.config.repo_path / "defs.py",
        'Field(name="txn_count", dtype=Int64)',
        'Field(name="txn_count", dtype=Int32)',
    )
    store.apply()
    v1 = layout(store, "user_stats", 1)
    store.promote("fraud_model")
    store.retire("user_stats", 1)
    left = {
        port: sum(client.hexists(k, v1.field) for k in client.keys(v1.prefix + b"*"))
        for port, client in nodes(redis_cluster).items()
    }
    assert left == dict.fromkeys(left, 0)  # every primary scanned, not only the first
    assert store.cleanup_online() == {"user_stats@v1": 0}


def test_a_removal_the_cluster_refuses_is_a_typed_error_not_a_smaller_count(
    store: FeatureStore, redis_cluster: Any
) -> None:
    users = list(range(20))
    store.write_online("user_stats", user_stats(users, [ago(minutes=2)] * 20, users))
    lay = layout(store, "user_stats")
    RedisCluster.from_url(redis_cluster.url).set(lay.prefix + b"99999", b"not a hash")
    with pytest.raises(OnlineStoreRefused, match=r"WRONGTYPE.*featurestore online cleanup"):
        store.online_store.delete_version(lay)
    with pytest.raises(OnlineStoreRefused, match="WRONGTYPE"):
        store.online_store.delete_entities(lay, [(99999,)])


def test_a_cluster_with_a_password_is_served_with_the_urls_credentials(
    tmp_path: Path,
) -> None:
    ports = devservices.free_ports(3, cluster_bus=True)
    url = f"redis://:s3cret@127.0.0.1:{ports[0]}/0"
    devservices.up(url, None, tmp_path / "state", redis_cluster=3)
    try:
        repo = online_repo(tmp_path / "repo", url, "pw", cluster=True)
        with FeatureStore(repo) as s:
            s.apply()
            users = list(range(60))
            s.write_online("user_stats", user_stats(users, [ago(minutes=1)] * 60, users))
            rows = [{"user_id": u} for u in users]
            values = s.get_online_features(rows, features=USER_STATS).to_dict()["avg_amount"]
            assert values == users
            async_values = asyncio.run(s.get_online_features_async(rows, features=USER_STATS))
            assert async_values.to_dict()["avg_amount"] == users
        wrong = online_repo(tmp_path / "wrong", url.replace("s3cret", "nope"), "pw", cluster=True)
        with FeatureStore(wrong) as s:
            s.apply()
            with pytest.raises(OnlineStoreUnavailable) as info:
                s.get_online_features(rows, features=USER_STATS)
        assert "nope" not in str(info.value)  # credentials redacted
        assert "s3cret" not in str(info.value)
    finally:
        devservices.down(tmp_path / "state")


def replica_of(cluster: Any, primary: int) -> int:
    """The port of a replica that follows ``primary``."""
    for port in cluster.replica_ports:
        try:
            role = redis.Redis(port=port, socket_timeout=2).execute_command("ROLE")
        except redis.ConnectionError:
            continue
        if role[0] == b"slave" and int(role[2]) == primary:
            return port
    raise AssertionError(f"no replica follows {primary}")


def test_a_primary_failing_over_to_its_replica_recovers_lookups_and_writes_by_themselves(
    store: FeatureStore, redis_cluster: Any
) -> None:
    users = list(range(300))
    store.write_online("user_stats", user_stats(users, [ago(minutes=10)] * 300, users))
    prefix = layout(store, "user_stats").prefix
    victim = owner(redis_cluster, prefix + b"0")
    heir = replica_of(redis_cluster, victim)
    primary = redis.Redis(port=victim, socket_timeout=5)
    assert primary.execute_command("WAIT", 1, 5000) == 1  # the replica has every write
    rows = [{"user_id": u} for u in users]
    client = store.online_client()
    assert client.get_online_features(rows, features=USER_STATS).to_dict()["avg_amount"] == users
    with contextlib.suppress(redis.ConnectionError):
        primary.shutdown(nosave=True)  # the primary dies; its replica takes over
    newer = user_stats(users, [ago(minutes=5)] * 300, [u + 1000 for u in users])
    written: list[Any] = []
    # A write while the primary is gone waits for the failover (its patience) and lands.
    writer = threading.Thread(
        target=lambda: written.append(store.write_online("user_stats", newer))
    )
    writer.start()
    failures: list[str] = []
    deadline = time.monotonic() + 60
    while True:  # lookups fail, typed, while no node serves those slots; then recover
        try:
            values = client.get_online_features(rows, features=USER_STATS).to_dict()["avg_amount"]
            break
        except OnlineStoreUnavailable as exc:
            failures.append(str(exc))
            assert time.monotonic() < deadline, "lookups did not recover"
            time.sleep(0.1)
    assert all("Redis Cluster at" in f and "unreachable" in f for f in failures)
    assert all(v in (float(u), float(u + 1000)) for u, v in zip(users, values, strict=True))
    writer.join(60)
    assert written, "the write did not finish"
    assert written[0].written == 300
    assert redis.Redis(port=heir).execute_command("ROLE")[0] == b"master"
    after = client.get_online_features(rows, features=USER_STATS).to_dict()["avg_amount"]
    assert after == [float(u + 1000) for u in users]
    async_after = asyncio.run(store.get_online_features_async(rows, features=USER_STATS))
    assert async_after.to_dict()["avg_amount"] == after
