"""The stream consumer's own work per event, without Kafka or I/O: CPU time of
``StreamProcessor.process`` (parse, per-event checks, 7 window aggregations) over the same
generated events as ``benchmarks/stream.py``'s view.

Run it with another checkout first on the path to compare two versions on this machine in
one sitting (what the input bounds and the offset check cost per event, for example):

    python benchmarks/stream_processing.py                         # this tree
    PYTHONPATH=../other python benchmarks/stream_processing.py     # another tree's code

Prints JSON: CPU microseconds per event (best and median of ``--rounds``) and events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import featurestore
from featurestore import (
    Aggregation,
    Entity,
    FeatureView,
    Field,
    Float64,
    Int64,
    KafkaSource,
    String,
    UnixTimestamp,
    expect_between,
    expect_not_null,
)
from featurestore.streaming.landing import StreamPosition
from featurestore.streaming.processor import StreamProcessor


def view() -> FeatureView:
    user = Entity(name="user", join_key="user_id", dtype=Int64)
    source = KafkaSource(
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
    minutes, hours, days = timedelta(minutes=10), timedelta(hours=1), timedelta(days=1)
    return FeatureView(
        name="velocity",
        entities=[user],
        source=source,
        aggregations=[
            Aggregation(function="count", window=minutes),
            Aggregation(function="count", window=hours),
            Aggregation(function="count", window=days),
            Aggregation(function="sum", column="amount", window=minutes),
            Aggregation(function="sum", column="amount", window=hours),
            Aggregation(function="sum", column="amount", window=days),
            Aggregation(function="max", column="amount", window=days),
        ],
        expectations=[expect_not_null("amount"), expect_between("amount", 0, 1_000_000)],
    )


def events(n: int, users: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    step = 7200 / n
    return [
        orjson.dumps(
            {
                "transaction_id": f"t{i}",
                "user_id": rng.randrange(users),
                "amount": round(rng.uniform(1, 500), 2),
                "currency": "EUR",
                "event_timestamp": (start + timedelta(seconds=i * step)).isoformat(),
            }
        )
        for i in range(n)
    ]


def one_round(v: FeatureView, raw: list[bytes]) -> float:
    proc = StreamProcessor(v, v.source)  # type: ignore[arg-type]
    proc.assign(0, StreamPosition(), StreamPosition())
    process = proc.process
    began = time.process_time()
    for offset, value in enumerate(raw):
        process(0, offset, value)
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    v = view()
    raw = events(args.events, args.users, seed=1)
    seconds = [one_round(v, raw) for _ in range(args.rounds)]
    per_event = [s / args.events * 1e6 for s in seconds]
    print(
        json.dumps(
            {
                "benchmark": "stream_processing",
                "code": str(Path(featurestore.__file__).resolve().parent.parent),
                "load_average": os.getloadavg(),
                "events": args.events,
                "cpu_us_per_event": {
                    "best": round(min(per_event), 3),
                    "median": round(statistics.median(per_event), 3),
                },
                "events_per_s_best": round(args.events / min(seconds)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
