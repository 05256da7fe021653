"""The serving log: a sample of served feature vectors, for drift monitors.

A lookup of a monitored model is sampled at its ``DriftMonitor.sample_rate``; a sampled
lookup hands its response to a bounded in-memory queue and returns. A background thread
appends the queue to a Redis stream per model (``fs:<project>:@served:<model>``, trimmed
to about ``maxlen`` entries), many entries per round trip. So a lookup pays a random
draw, and a sampled one a queue append; if Redis is slow or down the oldest samples are
dropped (and counted), never the lookup.

Entry (MessagePack in field ``d``): lookup time (µs), the features (``view@vN:feature``),
which outputs were masked, the entity rows' join keys, and per feature the values and
their event times (µs). Stream ids are the append time, so a monitor reads a time window
with one XRANGE.

This module is on the online read path: standard library, msgpack and redis only.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import datetime
from typing import Any

import msgpack
import redis

from featurestore.times import micros

log = logging.getLogger("featurestore.serving_log")
DEFAULT_MAXLEN = 100_000
QUEUE_LIMIT = 10_000


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return micros(value)
    raise TypeError(f"cannot log {type(value).__name__}")


def encode_entry(plan: Any, rows: list[dict[str, Any]], response: Any, now_us: int) -> bytes:
    return msgpack.packb(
        {
            "t": now_us,
            "f": list(plan.refs),
            "m": [i for i, _ in plan.masks],
            "k": [{k: row.get(k) for k in plan.join_keys} for row in rows],
            "v": response.values,
            "e": response.event_us,
        },
        default=_default,
        use_bin_type=True,
    )


def decode_entry(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class ServingLog:
    def __init__(self, redis_url: str, *, maxlen: int = DEFAULT_MAXLEN) -> None:
        self.redis_url = redis_url
        self.maxlen = maxlen
        self.dropped = 0
        self.written = 0
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._redis: redis.Redis | None = None

    def offer(self, key: bytes, entry: bytes) -> None:
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()  # the oldest sample goes, never the lookup
            self.dropped += 1
        self._queue.append((key, entry))
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="featurestore-serving-log", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until the queue is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)

    def _run(self) -> None:
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            while self._queue:
                batch = []
                while self._queue and len(batch) < 500:
                    batch.append(self._queue.popleft())
                try:
                    self._write(batch)
                except redis.RedisError as exc:
                    self.dropped += len(batch)
                    log.warning("serving log: %d samples dropped: %s", len(batch), exc)
                    self._redis = None
                    time.sleep(1.0)

    def _write(self, batch: list[tuple[bytes, bytes]]) -> None:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        pipe = self._redis.pipeline(transaction=False)
        for key, entry in batch:
            pipe.xadd(key, {b"d": entry}, maxlen=self.maxlen, approximate=True)
        pipe.execute()
        self.written += len(batch)
