"""The serving log: a sample of served feature vectors, for drift monitors.

A lookup of a monitored model is sampled at its ``DriftMonitor.sample_rate``; a sampled
lookup encodes its response onto a bounded in-memory queue and returns. A background
thread wakes every ``interval`` (or when a batch is full) and appends what queued to a
Redis stream per model (``fs:<project>:@served:<model>``), one stream entry per batch:
one round trip and little Python work per batch, so the writer hardly competes with
lookups for the interpreter. So a lookup pays a random draw, and a sampled one an encode
and a queue append; if Redis is slow or down the oldest samples are dropped (and
counted), never the lookup.

Stream entry: field ``d``, a MessagePack list of samples, each a MessagePack map of the
lookup time (µs), the features (``view@vN:feature``), which outputs were masked, the
entity rows' join keys, and per feature the values and their event times (µs). Stream
ids are the append time, so a monitor reads a time window with one XRANGE; the stream
keeps about ``maxlen`` batches.

The log writes through the online store it is given (``OnlineStore.append_served``).

This module is on the online read path: standard library and msgpack only.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgpack

from featurestore.errors import OnlineStoreUnavailable
from featurestore.times import micros

if TYPE_CHECKING:
    from featurestore.online.store import OnlineStore

log = logging.getLogger("featurestore.serving_log")
DEFAULT_MAXLEN = 20_000  # batches
QUEUE_LIMIT = 10_000  # samples waiting; beyond, the oldest are dropped
BATCH = 1_000


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


def decode_batch(data: bytes) -> list[dict[str, Any]]:
    return [
        msgpack.unpackb(sample, raw=False, strict_map_key=False)
        for sample in msgpack.unpackb(data, raw=False)
    ]


class ServingLog:
    def __init__(
        self, store: OnlineStore, *, maxlen: int = DEFAULT_MAXLEN, interval: float = 0.25
    ) -> None:
        self.store = store
        self.maxlen = maxlen
        self.interval = interval
        self.offered = 0
        self.dropped = 0
        self.written = 0
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def offer(self, key: bytes, entry: bytes) -> None:
        self.offered += 1
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()  # the oldest sample goes, never the lookup
            self.dropped += 1
        self._queue.append((key, entry))
        if self._thread is None:
            self._start()
        elif len(self._queue) >= BATCH:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="featurestore-serving-log", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every offered sample is written or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.written + self.dropped < self.offered and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            while self._queue:
                batch: dict[bytes, list[bytes]] = {}
                for _ in range(min(len(self._queue), QUEUE_LIMIT)):
                    key, entry = self._queue.popleft()
                    batch.setdefault(key, []).append(entry)
                try:
                    self.store.append_served(batch, self.maxlen)
                except OnlineStoreUnavailable as exc:
                    lost = sum(len(v) for v in batch.values())
                    self.dropped += lost
                    log.warning("serving log: %d samples dropped: %s", lost, exc)
                    time.sleep(1.0)
                    continue
                self.written += sum(len(v) for v in batch.values())
