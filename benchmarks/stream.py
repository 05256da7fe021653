"""Streaming consumer, side by side in one run with the floor (a bare kafka-python loop).

Own Redis and Kafka-protocol broker (Tansu) on free ports; a topic of ``--partitions``
partitions holding ~90-byte JSON card transactions keyed by user. Two phases:

* **throughput**: ``--events`` events produced up front, then one consumer process end to
  end (Kafka -> parse and check -> 7 window aggregations -> Redis + Parquet landing) until
  it has landed everything; against the floor, a bare kafka-python consume loop over the
  same topic (and the same loop plus ``orjson.loads``);
* **freshness**: a producer process at a steady ``--rate`` events/s for ``--seconds``,
  event time = produce time; freshness = online write time minus event time, p50 / p99.

    python benchmarks/stream.py                  # ~2 min
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from featurestore import FeatureStore, devservices  # noqa: E402

DEFS = """
from datetime import timedelta

from featurestore import (
    Aggregation, Entity, FeatureView, Field, Float64, Int64, KafkaSource, String,
    UnixTimestamp, expect_between, expect_not_null,
)

user = Entity(name="user", join_key="user_id", dtype=Int64)
txns = KafkaSource(
    name="txns",
    topic="bench_txns",
    timestamp_field="event_timestamp",
    schema=[
        Field(name="transaction_id", dtype=String),
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
        Aggregation(function="count", window=timedelta(hours=1)),
        Aggregation(function="count", window=timedelta(days=1)),
        Aggregation(function="sum", column="amount", window=timedelta(minutes=10)),
        Aggregation(function="sum", column="amount", window=timedelta(hours=1)),
        Aggregation(function="sum", column="amount", window=timedelta(days=1)),
        Aggregation(function="max", column="amount", window=timedelta(days=1)),
    ],
    ttl=timedelta(days=1),
    expectations=[expect_not_null("amount"), expect_between("amount", 0, 50_000)],
)
"""
TOPIC = "bench_txns"


def log(message: str) -> None:
    print(f"[stream {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def event(i: int, users: int, ts: float) -> bytes:
    user = (i * 7919) % users
    return orjson.dumps(
        {
            "transaction_id": f"t{i}",
            "user_id": user,
            "amount": round(10 + (i % 997) * 0.37, 2),
            "currency": "EUR",
            "event_timestamp": ts,
        }
    )


def produce_bulk(bootstrap: str, n: int, users: int) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256_000)
    start = time.time() - 3600  # an hour of history, in order
    t0 = time.perf_counter()
    for i in range(n):
        raw = event(i, users, start + i * 3600 / n)
        producer.send(TOPIC, value=raw, key=str((i * 7919) % users).encode())
    producer.flush()
    producer.close()
    return time.perf_counter() - t0


def produce_steady(bootstrap: str, rate: int, seconds: float, users: int, offset: int) -> None:
    """Runs in its own process: ``rate`` events/s, event time = send time."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    t0 = time.perf_counter()
    i = 0
    while (elapsed := time.perf_counter() - t0) < seconds:
        due = int(elapsed * rate)
        while i < due:
            n = offset + i
            producer.send(
                TOPIC, value=event(n, users, time.time()), key=str((n * 7919) % users).encode()
            )
            i += 1
        time.sleep(0.002)
    producer.flush()
    producer.close()


def floor(bootstrap: str, n: int, parse: bool) -> dict[str, Any]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"floor-{parse}-{time.time()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    seen = 0
    t0 = None
    while seen < n:
        for records in consumer.poll(timeout_ms=200).values():
            if t0 is None:
                t0 = time.perf_counter()  # from the first batch: group join excluded
            for r in records:
                if parse:
                    orjson.loads(r.value)
            seen += len(records)
    seconds = time.perf_counter() - (t0 or time.perf_counter())
    consumer.close()
    return {"events": seen, "seconds": round(seconds, 3), "events_per_s": round(seen / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flush-seconds", type=float, default=5.0)
    parser.add_argument("--out", default=str(ROOT / "results" / "stream.json"))
    args = parser.parse_args()

    from kafka.admin import KafkaAdminClient, NewTopic

    from featurestore.streaming.consumer import StreamConsumer

    tmp = Path(tempfile.mkdtemp(prefix="fs-stream-bench-"))
    redis_url = f"redis://127.0.0.1:{devservices.free_port()}/0"
    bootstrap = f"127.0.0.1:{devservices.free_port()}"
    devservices.up(redis_url, bootstrap, tmp / "services")
    out: dict[str, Any] = {
        "benchmark": "stream",
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "settings": vars(args),
    }
    try:
        repo = tmp / "repo"
        repo.mkdir()
        (repo / "featurestore.yaml").write_text(
            f"project: streambench\nregistry: data/registry.db\n"
            f"online_store:\n  redis_url: {redis_url}\nkafka:\n  bootstrap_servers: {bootstrap}\n"
        )
        (repo / "defs.py").write_text(DEFS)
        with FeatureStore(repo) as store:
            store.apply()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(TOPIC, num_partitions=args.partitions, replication_factor=1)])
        admin.close()

        log(f"producing {args.events:,} events ...")
        out["produce_seconds"] = round(produce_bulk(bootstrap, args.events, args.users), 2)

        log("floor: bare consume loop, and consume + orjson.loads ...")
        out["floor_consume"] = floor(bootstrap, args.events, parse=False)
        out["floor_consume_parse"] = floor(bootstrap, args.events, parse=True)
        log(f"floor: {out['floor_consume']} / {out['floor_consume_parse']}")

        log("featurestore consumer, end to end ...")
        with FeatureStore(repo) as store:
            consumer = StreamConsumer(store, "velocity", flush_seconds=args.flush_seconds)
            consumer.connect()
            t0 = None
            while consumer.stats.accepted + consumer.stats.dead_letters < args.events:
                n = consumer.poll_once()
                if n and t0 is None:
                    t0 = time.perf_counter()  # group join excluded, as for the floor
                if time.monotonic() - consumer._last_flush >= consumer.flush_seconds:
                    consumer.flush()
            consumer.flush()  # everything landed offline and committed
            seconds = time.perf_counter() - (t0 or time.perf_counter())
            s = consumer.stats
            out["featurestore"] = {
                "events": s.accepted,
                "dead_letters": s.dead_letters,
                "seconds": round(seconds, 3),
                "events_per_s": round(s.accepted / seconds),
                "online_writes": s.online_writes,
                "offline_rows": s.offline_rows,
                "logged_events": s.logged_events,
                "flushes": s.flushes,
            }
            log(f"featurestore: {out['featurestore']}")

            log(f"freshness: {args.rate:,} events/s for {args.seconds:.0f}s ...")
            s.freshness_ms.clear()
            producer = mp.get_context("spawn").Process(
                target=produce_steady,
                args=(bootstrap, args.rate, args.seconds, args.users, args.events),
            )
            producer.start()
            before = s.accepted
            t0 = time.perf_counter()
            while True:
                n = consumer.poll_once()
                if not n and not producer.is_alive():
                    break
                if time.monotonic() - consumer._last_flush >= consumer.flush_seconds:
                    consumer.flush()
            consumer.flush()
            seconds = time.perf_counter() - t0
            fresh = sorted(s.freshness_ms)
            out["freshness"] = {
                "rate_target": args.rate,
                "events": s.accepted - before,
                "events_per_s_achieved": round((s.accepted - before) / seconds),
                "samples": len(fresh),
                "p50_ms": round(fresh[len(fresh) // 2], 1),
                "p99_ms": round(fresh[int(0.99 * (len(fresh) - 1))], 1),
                "max_ms": round(fresh[-1], 1),
            }
            log(f"freshness: {out['freshness']}")
            consumer.close()
        fs = out["featurestore"]["events_per_s"]
        out["ratios"] = {
            "featurestore_over_floor_consume": round(fs / out["floor_consume"]["events_per_s"], 2),
            "featurestore_over_floor_consume_parse": round(
                fs / out["floor_consume_parse"]["events_per_s"], 2
            ),
        }
        out["goals"] = {
            "events_per_s_at_least_30000": fs >= 30_000,
            "freshness_p99_under_1s_at_10000_per_s": out["freshness"]["p99_ms"] < 1000,
        }
    finally:
        devservices.down(tmp / "services")
        shutil.rmtree(tmp, ignore_errors=True)
    out["machine"]["load_average_at_end"] = os.getloadavg()
    out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = json.dumps(out, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
