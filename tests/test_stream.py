"""The Kafka stream consumer against the real broker (Tansu), a real Redis and real Parquet:
values, dead letters, crash and restart, SIGTERM, two consumers in one group."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from featurestore import FeatureStore
from featurestore.devservices import free_port
from featurestore.offline.writer import EVENT_TS
from featurestore.streaming import admin as stream_admin
from featurestore.streaming import consumer as stream_job
from featurestore.streaming.landing import OFFSET, PARTITION, StreamPosition
from featurestore.streaming.processor import StreamProcessor
from tests.helpers import write_repo

pytestmark = [pytest.mark.services]
_n = itertools.count()

DEFS = """
from datetime import timedelta

from featurestore import (
    Aggregation, Entity, FeatureView, Field, Float64, Int64, KafkaSource, String,
    UnixTimestamp, expect_between, expect_in_set,
)

user = Entity(name="user", join_key="user_id", dtype=Int64)
txns = KafkaSource(
    name="txns",
    topic="TOPIC",
    timestamp_field="event_timestamp",
    allowed_lateness=timedelta(minutes=10),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="amount", dtype=Float64),
        Field(name="currency", dtype=String),
        Field(name="event_timestamp", dtype=UnixTimestamp),
    ],
)
velocity = FeatureView(
    name="velocity",
    entities=[user],
    source=txns,
    aggregations=[
        Aggregation(function="count", window=timedelta(minutes=10)),
        Aggregation(function="sum", column="amount", window=timedelta(hours=1)),
        Aggregation(function="max", column="amount", window=timedelta(days=1)),
        Aggregation(function="last", column="amount", window=timedelta(days=1)),
    ],
    ttl=timedelta(days=30),
    expectations=[expect_between("amount", 0, 10_000), expect_in_set("currency", ["EUR", "USD"])],
)
"""

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=2)


@pytest.fixture
def repo(tmp_path: Path, services: Any) -> tuple[Path, str]:
    return stream_repo(tmp_path, services)


def stream_repo(tmp_path: Path, services: Any) -> tuple[Path, str]:
    """An applied repo with the `velocity` view and its new 4-partition topic."""
    n = next(_n)
    topic = f"txns{n}_{os.getpid()}"
    config = (
        f"project: stream{n}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
        f"kafka:\n  bootstrap_servers: {services.kafka_bootstrap}\n"
    )
    path = write_repo(
        tmp_path / "repo", {"featurestore.yaml": config, "defs.py": DEFS.replace("TOPIC", topic)}
    )
    with FeatureStore(path) as store:
        store.apply()
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    admin.close()
    return path, topic


def event(user: int, minutes: float, amount: Any, currency: str = "EUR") -> dict[str, Any]:
    ts = T0 + timedelta(minutes=minutes)
    return {
        "user_id": user,
        "amount": amount,
        "currency": currency,
        "event_timestamp": ts.isoformat(),
    }


def produce(bootstrap: str, topic: str, events: list[Any]) -> None:
    """Keyed by user, as a real producer must (an entity's events stay in one partition)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for e in events:
        raw = e if isinstance(e, bytes) else orjson.dumps(e)
        key = str(e["user_id"]).encode() if isinstance(e, dict) and "user_id" in e else b"x"
        producer.send(topic, value=raw, key=key)
    producer.flush()
    producer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    ends = {tp.partition: o for tp, o in consumer.end_offsets(parts).items()}
    consumer.close()
    return ends


def landed_positions(store: FeatureStore) -> tuple[StreamPosition, StreamPosition]:
    from featurestore.streaming.landing import Landing

    view, version, source = stream_job.stream_view(store, "velocity")
    root = store.offline_store().table("velocity", version).root
    return Landing(root, view, source).positions()


def landed_position(store: FeatureStore) -> StreamPosition:
    return landed_positions(store)[0]


def wait_until_landed(store: FeatureStore, ends: dict[int, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pos = landed_position(store)
        if all(pos.offsets.get(p, 0) >= o for p, o in ends.items() if o):
            return
        time.sleep(0.2)
    raise AssertionError(f"not landed within {timeout}s: {landed_position(store)} vs {ends}")


def consume_in_thread(store: FeatureStore, **options: Any) -> tuple[Any, threading.Thread]:
    consumer = stream_job.StreamConsumer(store, "velocity", flush_seconds=0.3, **options)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    return consumer, thread


def replay(store: FeatureStore, bootstrap: str, topic: str) -> StreamProcessor:
    """The oracle: every message of the topic through a fresh processor, in partition order."""
    view, _version, source = stream_job.stream_view(store, "velocity")
    proc = StreamProcessor(view, source)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    for tp in parts:
        proc.assign(tp.partition, StreamPosition(), StreamPosition())
    # Until the topic is quiet, not until its end_offsets: the bundled broker answers
    # those short.
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 1.5:
        for tp, records in consumer.poll(timeout_ms=300).items():
            idle_since = time.monotonic()
            for r in records:
                proc.process(tp.partition, r.offset, r.value)
    consumer.close()
    return proc


def offline_rows(store: FeatureStore, table: str = "") -> list[dict[str, Any]]:
    t = store.offline_store().table("velocity", 1)
    if table:
        t = type(t)(t.root / table)
    rows = []
    for f in t.manifest().files:
        rows += pq.read_table(t.root / f.path).to_pylist()
    return rows


def features_multiset(rows: list[dict[str, Any]], names: list[str]) -> Counter:
    return Counter(
        (r["user_id"], r[EVENT_TS].replace(tzinfo=UTC), *(r[n] for n in names)) for r in rows
    )


def online(store: FeatureStore, users: list[int]) -> dict[str, list[Any]]:
    refs = [
        f"velocity:{f}" for f in ("count_10m", "amount_sum_1h", "amount_max_1d", "amount_last_1d")
    ]
    return store.get_online_features([{"user_id": u} for u in users], features=refs).to_dict()


def test_values_dead_letters_and_offline_landing(repo: tuple[Path, str], services: Any) -> None:
    path, topic = repo
    events = [
        event(1, 0, 10.0),
        event(1, 5, 20.0),
        event(1, 9, 30.0),
        event(2, 0, 5.0, "USD"),
        event(1, 30, 40.0),  # count_10m at 30: just this one
        event(1, 25, 5.0),  # out of order (within the allowed lateness): corrects 30's row
        event(2, 1, -1.0),  # bad: amount below 0
        event(2, 2, 1.0, "GBP"),  # bad: currency not allowed
        b"{not json",
        {"user_id": "two", "amount": 1.0, "currency": "EUR", "event_timestamp": "x"},
        event(1, 30 - 11, 7.0),  # late: 11 min behind the partition's newest (> 10 min)
    ]
    produce(services.kafka_bootstrap, topic, events)
    with FeatureStore(path) as store:
        consumer, thread = consume_in_thread(store)
        wait_until_landed(store, end_offsets(services.kafka_bootstrap, topic))
        got = online(store, [1, 2, 3])
        status = stream_admin.group_status(store, "velocity")
        consumer.stop.set()
        thread.join(30)
        # Exact values, by hand: user 1 at minute 30 saw 40 and (late) 5 within 10 min.
        assert got["count_10m"] == [2, 1, None]
        assert got["amount_sum_1h"] == [105.0, 5.0, None]
        assert got["amount_max_1d"] == [40.0, 5.0, None]
        assert got["amount_last_1d"] == [40.0, 5.0, None]
        # Dead letters: every bad event, with its reason, partition and offset.
        letters = stream_admin.recent_dead_letters(store, ["velocity"], limit=50)
        reasons = sorted(d["reason"].split(":")[0] for d in letters)
        assert len(letters) == 5
        assert sorted(reasons) == sorted(
            [
                "expectation failed",
                "expectation failed",
                "not valid JSON",
                "field 'user_id'",
                "late",
            ]
        )
        assert any(d["value"] == "{not json" for d in letters)
        assert all(d["offset"] >= 0 and d["partition"] >= 0 for d in letters)
        # Offline: the event log holds each accepted event once; the feature rows equal a
        # replay from scratch (corrections included).
        logged = offline_rows(store, "_events")
        assert len(logged) == 6
        assert len({(r[PARTITION], r[OFFSET]) for r in logged}) == 6
        oracle = replay(store, services.kafka_bootstrap, topic)
        names = oracle.aggregator.features
        assert features_multiset(offline_rows(store), names) == Counter(
            (k, datetime.fromtimestamp(t / 1e6, UTC), *f) for k, t, _, f in oracle.feature_rows
        )
        # A training set at NOW sees what serving sees.
        import pyarrow as pa

        spine = pa.table(
            {"user_id": [1, 2], "event_timestamp": pa.array([NOW, NOW], pa.timestamp("us", "UTC"))}
        )
        train = store.get_training_data(spine, features=["velocity:amount_sum_1h"]).table
        assert train.column("amount_sum_1h").to_pylist() == [105.0, 5.0]
    assert status["total_lag"] == 0
    assert status["group"] == "featurestore." + status["group"].split(".", 1)[1]


def random_events(rng: random.Random, n: int, start_minute: float) -> list[Any]:
    """Mostly in order, some out of order, a few late or bad."""
    out: list[Any] = []
    for i in range(n):
        minute = start_minute + i * 0.01 - (rng.random() * 15 if rng.random() < 0.1 else 0)
        amount: Any = round(rng.uniform(0, 500), 2)
        if rng.random() < 0.02:
            amount = -5.0  # fails an expectation
        out.append(event(rng.randrange(40), minute, amount))
    return out


def start_consumer(path: Path, pause_at: str = "", *extra: str) -> subprocess.Popen:
    """The consumer in a subprocess; with ``pause_at``, one that stops at that stage
    (``tests/paused_job.py`` writes ``path / "paused"`` there)."""
    if pause_at:
        job = Path(__file__).with_name("paused_job.py")
        cmd = [sys.executable, str(job), pause_at, str(path / "paused"), "stream", str(path)]
        cmd += ["0.3", "velocity"]
    else:
        cmd = [sys.executable, "-m", "featurestore.cli", "stream", "velocity", "--repo", str(path)]
        cmd += [*extra, "--flush-seconds", "0.3"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check_equals_replay(store: FeatureStore, bootstrap: str, topic: str) -> None:
    oracle = replay(store, bootstrap, topic)
    names = oracle.aggregator.features
    logged = offline_rows(store, "_events")
    keys = [(r[PARTITION], r[OFFSET]) for r in logged]
    assert len(keys) == len(set(keys)) == oracle_accepted(oracle), "lost or duplicated events"
    assert features_multiset(offline_rows(store), names) == Counter(
        (k, datetime.fromtimestamp(t / 1e6, UTC), *f) for k, t, _, f in oracle.feature_rows
    )
    expected = {keys[0]: f for keys, _t, _c, f in oracle.online_rows()}
    users = sorted(expected)
    got = online(store, users)
    for i, u in enumerate(users):
        assert tuple(got[n][i] for n in names) == expected[u], u


def oracle_accepted(proc: StreamProcessor) -> int:
    return len(proc.event_rows)


def test_kill_9_at_random_moments_then_restart_loses_and_duplicates_nothing(
    repo: tuple[Path, str], services: Any
) -> None:
    path, topic = repo
    rng = random.Random(7)
    produce(services.kafka_bootstrap, topic, random_events(rng, 3000, 0))
    for round_ in range(3):
        proc = start_consumer(path)
        time.sleep(rng.uniform(4.0, 8.0))  # joins the group (~4 s), then works for a while
        proc.kill()  # SIGKILL: no chance to land or commit
        proc.wait()
        produce(services.kafka_bootstrap, topic, random_events(rng, 2000, 30 + 20 * round_))
    # And once at the worst moment: events logged, their feature rows not yet landed.
    proc = start_consumer(path, pause_at="events-landed")
    deadline = time.monotonic() + 30
    while not (path / "paused").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (path / "paused").exists()
    proc.kill()
    proc.wait()
    with FeatureStore(path) as store:
        features, events = landed_positions(store)
        assert events.offsets != features.offsets  # the log is ahead: a replay must skip it
    metrics_port = free_port()
    proc = start_consumer(path, "", "--metrics-port", str(metrics_port))
    with FeatureStore(path) as store:
        wait_until_landed(store, end_offsets(services.kafka_bootstrap, topic), timeout=90)
        # Lag is measured after the landing's commit: wait for it, bounded.
        lag_zero = 'featurestore_stream_lag{partition="0",view="velocity@v1"} 0.0'
        deadline = time.monotonic() + 15
        while True:
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
            text = metrics.decode()
            if lag_zero in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert 'featurestore_stream_events_total{view="velocity@v1"}' in text
        assert 'featurestore_stream_lag{partition="0",view="velocity@v1"} 0.0' in text
        assert "featurestore_stream_freshness_seconds_bucket" in text
        assert 'featurestore_stream_dead_letters_total{view="velocity@v1"}' in text
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "events accepted" in out
        check_equals_replay(store, services.kafka_bootstrap, topic)
        # SIGTERM committed the landed position to Kafka too: no lag left.
        assert stream_admin.group_status(store, "velocity")["total_lag"] == 0


def owned(store: FeatureStore) -> dict[int, list[int]]:
    folder = store.config.state_dir / "stream"
    out = {}
    for f in folder.glob("velocity.*.json"):
        doc = orjson.loads(f.read_bytes())
        out[doc["pid"]] = doc["partitions"]
    return out


def test_two_consumers_split_the_partitions_and_one_takes_over(
    repo: tuple[Path, str], services: Any
) -> None:
    path, topic = repo
    rng = random.Random(11)
    a, b = start_consumer(path), start_consumer(path)
    with FeatureStore(path) as store:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            parts = owned(store)
            if parts.get(a.pid) and parts.get(b.pid):
                break
            time.sleep(0.3)
        parts = owned(store)
        assert sorted(parts[a.pid] + parts[b.pid]) == [0, 1, 2, 3], parts
        produce(services.kafka_bootstrap, topic, random_events(rng, 2000, 0))
        wait_until_landed(store, end_offsets(services.kafka_bootstrap, topic))
        a.send_signal(signal.SIGTERM)
        assert a.wait(timeout=60) == 0
        produce(services.kafka_bootstrap, topic, random_events(rng, 2000, 30))
        wait_until_landed(store, end_offsets(services.kafka_bootstrap, topic), timeout=60)
        deadline = time.monotonic() + 5
        while owned(store)[b.pid] != [0, 1, 2, 3] and time.monotonic() < deadline:
            time.sleep(0.3)  # the status file is rewritten every second
        assert owned(store)[b.pid] == [0, 1, 2, 3]
        b.send_signal(signal.SIGTERM)
        assert b.wait(timeout=60) == 0
        check_equals_replay(store, services.kafka_bootstrap, topic)


@pytest.mark.slow
def test_the_spark_batch_job_gives_the_streams_values(
    repo: tuple[Path, str], services: Any, spark: Any
) -> None:
    from pyspark.sql import functions as F

    from featurestore.streaming.spark_batch import compute
    from featurestore.times import micros

    path, topic = repo
    produce(services.kafka_bootstrap, topic, random_events(random.Random(3), 3000, 0))
    with FeatureStore(path) as store:
        consumer, thread = consume_in_thread(store)
        wait_until_landed(store, end_offsets(services.kafka_bootstrap, topic))
        consumer.stop.set()
        thread.join(30)
        # The stream's rows, as a read sees them: the newest created per (entity, time).
        streamed: dict = {}
        for r in offline_rows(store):
            key = (r["user_id"], micros(r[EVENT_TS]))
            if key not in streamed or r["created_timestamp"] > streamed[key]["created_timestamp"]:
                streamed[key] = r
        rows, view, _ = compute(spark, store, "velocity", source="log")
        rows = rows.withColumn("us", F.unix_micros(EVENT_TS))
        batch = {(r["user_id"], r["us"]): r for r in (x.asDict() for x in rows.collect())}
    names = view.feature_names
    assert len(batch) == len(streamed) > 2000
    differ = [
        k
        for k in streamed
        if tuple(streamed[k][n] for n in names) != tuple(batch[k][n] for n in names)
    ]
    assert differ == []


def test_a_recreated_topic_starts_over_instead_of_skipping_its_events(
    repo: tuple[Path, str], services: Any
) -> None:
    path, topic = repo
    produce(
        services.kafka_bootstrap, topic, [event(u, m, 10.0) for u in range(8) for m in range(10)]
    )
    with FeatureStore(path) as store:
        consumer, thread = consume_in_thread(store)
        wait_until_landed(store, end_offsets(services.kafka_bootstrap, topic))
        consumer.stop.set()
        thread.join(30)
        recreate_topic(services.kafka_bootstrap, topic)
        # Fewer events than before: every landed offset is past the new partitions' ends.
        produce(services.kafka_bootstrap, topic, [event(u, 60, 99.0) for u in range(8)])
        notes: list[str] = []
        consumer, thread = consume_in_thread(store, progress=notes.append)
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and online(store, list(range(8)))["amount_last_1d"] != [99.0] * 8
        ):
            time.sleep(0.2)
        consumer.stop.set()
        thread.join(30)
        assert online(store, list(range(8)))["amount_last_1d"] == [99.0] * 8
        assert any("the topic was recreated" in n for n in notes), notes
        assert len(offline_rows(store, "_events")) == 80 + 8  # old and new events, all logged


def recreate_topic(bootstrap: str, topic: str) -> None:
    """Delete the topic, wait until the broker no longer lists it, create it again."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.delete_topics([topic])
    deadline = time.monotonic() + 10
    while topic in admin.list_topics() and time.monotonic() < deadline:
        time.sleep(0.1)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    admin.close()
