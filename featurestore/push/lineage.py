"""Pushes in the lineage: counted per view version and interval, recorded as one run each.

A push is a materialization from a service instead of a source, so it is a run in the
registry (``registry/runs.py``, engine ``push``) with rows accepted, written online and
landed offline. A run per push would make the run log as large as the traffic, so the
counts of each interval (``interval_seconds``, aligned to the clock: 12:00:00-12:01:00)
are kept in memory and added to that interval's run once it has ended (and on
``flush``). Rows landed offline are counted in the interval they landed in. A crash
loses the counts of the open interval, not any data.

Standard library only (the registry is reached through the callable it is given).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from featurestore.config_sections import PushConfig
from featurestore.times import from_micros

DEFAULT_INTERVAL_SECONDS = PushConfig().run_interval_seconds  # `push:` in featurestore.yaml


@dataclass(slots=True)
class PushCounts:
    pushes: int = 0
    rows: int = 0
    rows_online: int = 0
    rows_offline: int = 0


# (view, version, (window start, end), counts): what ``RunLog.record_push`` takes.
Recorder = Callable[[str, int, tuple[datetime, datetime], PushCounts], None]


class PushLineage:
    def __init__(
        self,
        record: Recorder,
        *,
        interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.record = record
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._open: dict[tuple[str, int, int], PushCounts] = {}
        self._lock = threading.Lock()

    def count(
        self,
        view: str,
        version: int,
        *,
        pushes: int = 0,
        rows: int = 0,
        online: int = 0,
        offline: int = 0,
    ) -> None:
        start = int(self.clock()) // self.interval_seconds * self.interval_seconds
        with self._lock:
            counts = self._open.get((view, version, start))
            if counts is None:
                counts = self._open[(view, version, start)] = PushCounts()
            counts.pushes += pushes
            counts.rows += rows
            counts.rows_online += online
            counts.rows_offline += offline

    def due(self) -> None:
        """Record the intervals that have ended."""
        self._record(lambda start: start + self.interval_seconds <= self.clock())

    def flush(self) -> None:
        """Record every interval, the open one included (on close)."""
        self._record(lambda _start: True)

    def _record(self, closed: Callable[[int], bool]) -> None:
        with self._lock:
            keys = [k for k in self._open if closed(k[2])]
            taken = [(k, self._open.pop(k)) for k in keys]
        for (view, version, start), counts in taken:
            window = (
                from_micros(start * 1_000_000),
                from_micros((start + self.interval_seconds) * 1_000_000),
            )
            try:
                self.record(view, version, window, counts)
            except Exception:
                with self._lock:  # put the counts back for the next try
                    again = self._open.setdefault((view, version, start), PushCounts())
                    again.pushes += counts.pushes
                    again.rows += counts.rows
                    again.rows_online += counts.rows_online
                    again.rows_offline += counts.rows_offline
                raise
