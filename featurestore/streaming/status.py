"""What a stream consumer reports: its counters, the status file this machine's
``featurestore stream status`` reads, and its Prometheus metrics (``--metrics-port``)."""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from featurestore.store import FeatureStore
    from featurestore.streaming.consumer import StreamConsumer


@dataclass
class StreamStats:
    """Counters since start, for `featurestore stream status` and /metrics."""

    accepted: int = 0
    dead_letters: int = 0
    online_writes: int = 0
    offline_rows: int = 0
    logged_events: int = 0
    flushes: int = 0
    truncated_dead_letters: int = 0
    repeated: int = 0  # records delivered again below the next offset, skipped
    topic_restarts: int = 0  # partitions started over (their topic was recreated)
    started: float = field(default_factory=time.time)
    freshness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    lag: dict[int, int] = field(default_factory=dict)


def status_path(store: FeatureStore, view: str) -> Path:
    return store.config.state_dir / "stream" / f"{view}.{os.getpid()}.json"


def write_status(consumer: StreamConsumer, path: Path, rate: float) -> None:
    s = consumer.stats
    fresh = sorted(s.freshness_ms)
    doc = {
        "view": consumer.label,
        "group": consumer.group,
        "pid": os.getpid(),
        "partitions": sorted(consumer.processor.partitions),
        "events_per_s": round(rate, 1),
        "accepted": s.accepted,
        "dead_letters": s.dead_letters,
        "online_writes": s.online_writes,
        "offline_rows": s.offline_rows,
        "truncated_dead_letters": s.truncated_dead_letters,
        "repeated_deliveries": s.repeated,
        "topic_restarts": s.topic_restarts,
        "lag": {str(p): v for p, v in sorted(s.lag.items())},
        "freshness_ms": {
            "p50": round(statistics.median(fresh), 1) if fresh else None,
            "p99": round(fresh[int(0.99 * (len(fresh) - 1))], 1) if fresh else None,
        },
        "updated": time.time(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, path)


class Metrics:
    """Prometheus metrics of one consumer process (served on ``--metrics-port``)."""

    def __init__(self, view: str, port: int) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            start_http_server,
        )

        self.registry = CollectorRegistry()
        self.events = Counter(
            "featurestore_stream_events", "Accepted events", ["view"], registry=self.registry
        ).labels(view)
        self.dead_letters = Counter(
            "featurestore_stream_dead_letters",
            "Events sent to the dead-letter topic",
            ["view"],
            registry=self.registry,
        ).labels(view)
        self.topic_restarts = Counter(
            "featurestore_stream_topic_restarts",
            "Partitions started over because their topic was recreated",
            ["view"],
            registry=self.registry,
        ).labels(view)
        self._lag = Gauge(
            "featurestore_stream_lag",
            "Consumer lag (messages) per partition",
            ["view", "partition"],
            registry=self.registry,
        )
        self.view = view
        self.freshness = Histogram(
            "featurestore_stream_freshness_seconds",
            "Online write time minus event time",
            ["view"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=self.registry,
        ).labels(view)
        start_http_server(port, registry=self.registry)

    def set_lag(self, partition: int, lag: int) -> None:
        self._lag.labels(self.view, str(partition)).set(lag)
