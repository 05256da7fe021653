"""The offline side of push: rows are buffered per view version and landed in batches.

A push is usually a handful of rows; one Parquet file (and one manifest commit) per push
would leave a table of tiny files that every training-data build must open. So pushed
rows wait in memory and go to the offline store's writer (``offline/writer.py``) as one
append per view version when ``max_rows`` are waiting or the oldest has waited
``max_seconds`` (checked by a background thread every ``tick_seconds``), and on
``flush``/``close``. One append writes one file per event date.

A clean stop (``close``, a server's shutdown) lands everything first. With a ``spool``
(``spool.py``), every buffered row is also written to a local file before the push
answers, so rows a crashed process had buffered are landed by the next process that
starts (``recover``); without one, a crash loses them (at most ``max_seconds`` worth, or
``max_rows`` per view version). A failed landing (a full disk) keeps the rows buffered
and is retried at the next tick; ``failures`` counts them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.config_sections import PushConfig
from featurestore.definitions import FeatureView
from featurestore.errors import PushSpoolError
from featurestore.push.rows import Row
from featurestore.push.spool import Spool, SpoolFile

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("featurestore.push")

DEFAULT_MAX_ROWS = PushConfig().offline_batch_rows  # `push:` in featurestore.yaml
DEFAULT_MAX_SECONDS = PushConfig().offline_flush_seconds


@dataclass(slots=True)
class _Pending:
    view: FeatureView
    version: int
    since: float  # when the oldest row was buffered (monotonic)
    rows: list[Row] = field(default_factory=list)
    files: list[SpoolFile] = field(default_factory=list)  # spooled copies, removed once landed


Landed = Callable[[str, int, int], None]  # view, version, rows


class OfflineBuffer:
    """Pushed rows waiting for the offline store, per view version."""

    def __init__(
        self,
        root: Path,
        project: str,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        on_landed: Landed = lambda _v, _n, _r: None,
        spool: Spool | None = None,
    ) -> None:
        self.root = Path(root)
        self.project = project
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.on_landed = on_landed
        self.spool = spool
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._lock = threading.Lock()
        self._landing = threading.Lock()  # one landing at a time, in buffered order
        self._in_flight = 0  # rows taken out for landing, not landed yet
        self.failures = 0
        self.files_added = 0
        self.rows_landed = 0

    def add(self, view: FeatureView, version: int, rows: list[Row]) -> None:
        key = (view.name, version)
        with self._lock:
            if self.spool is not None:
                try:
                    self.spool.append(view.name, version, rows)  # before the push answers
                except OSError as exc:
                    raise PushSpoolError(
                        f"Cannot spool pushed rows of {view.name}@v{version} under "
                        f"{self.spool.root}: {exc}. Their offline copy was not buffered (an "
                        "online write of the same push stands; pushing again is idempotent). "
                        "Make the repo's state_dir writable, or push to='online'."
                    ) from exc
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending(view, version, time.monotonic())
            pending.rows += rows
            full = len(pending.rows) >= self.max_rows
        if full:
            self.flush(only=key)

    def pending(self) -> int:
        """Rows buffered and not landed yet (those being landed included)."""
        with self._lock:
            return self._in_flight + sum(len(p.rows) for p in self._pending.values())

    def due(self) -> None:
        """Land every view version whose oldest row has waited ``max_seconds``."""
        cutoff = time.monotonic() - self.max_seconds
        with self._lock:
            keys = [k for k, p in self._pending.items() if p.since <= cutoff]
        for key in keys:
            self.flush(only=key)

    def flush(self, only: tuple[str, int] | None = None) -> int:
        """Land what is buffered (of one view version, or all); returns rows landed. A
        failure puts the rows back (ahead of newer ones) and raises."""
        landed = 0
        with self._landing:
            with self._lock:
                keys = [only] if only is not None else list(self._pending)
                taken = [self._pending.pop(k) for k in keys if k in self._pending]
                self._in_flight = sum(len(p.rows) for p in taken)
                if self.spool is not None:
                    for p in taken:
                        rotated = self.spool.rotate(p.view.name, p.version)
                        if rotated is not None:
                            p.files.append(rotated)
            for i, pending in enumerate(taken):
                try:
                    self._land(pending)
                except Exception:
                    self.failures += 1
                    with self._lock:
                        self._in_flight = 0
                        for back in taken[i:]:
                            newer = self._pending.pop((back.view.name, back.version), None)
                            if newer is not None:
                                back.rows += newer.rows
                                back.files += newer.files
                            self._pending[(back.view.name, back.version)] = back
                    raise
                for spooled in pending.files:
                    spooled.remove()
                landed += len(pending.rows)
                with self._lock:
                    self._in_flight -= len(pending.rows)
        return landed

    def close(self) -> None:
        """Land everything; then release the spool (rows a failed landing kept stay in
        it, for the next process)."""
        try:
            self.flush()
        finally:
            if self.spool is not None:
                with self._lock:
                    self.spool.close()

    def recover(self, view_of: Callable[[str, int], FeatureView | None]) -> int:
        """Land the rows of spool files no live process holds (a crashed one's); returns
        how many. ``view_of(view, version)`` gives the version's definition (None: leave
        the file, e.g. a view this registry does not know)."""
        if self.spool is None:
            return 0
        recovered = 0
        with self._landing:
            for view, version, rows, spooled in self.spool.orphans():
                definition = view_of(view, version)
                if definition is None or not rows:
                    if rows:
                        os.close(spooled.fd)
                        log.warning("push spool of unknown %s@v%s left in place", view, version)
                    else:
                        spooled.remove()
                    continue
                try:
                    self._land(_Pending(definition, version, 0.0, rows))
                except Exception as exc:
                    os.close(spooled.fd)
                    log.warning("push spool %s not landed, left in place: %s", spooled.path, exc)
                    continue
                spooled.remove()
                recovered += len(rows)
        return recovered

    def _land(self, pending: _Pending) -> None:
        from featurestore.offline.writer import OfflineStore

        table = to_arrow(pending.view, pending.rows)
        result = OfflineStore(self.root, self.project).write(pending.view, pending.version, table)
        self.files_added += result.files_added
        self.rows_landed += len(pending.rows)
        self.on_landed(pending.view.name, pending.version, len(pending.rows))


def to_arrow(view: FeatureView, rows: list[Row]) -> pa.Table:
    """Checked push rows as a table of the view's offline schema."""
    import pyarrow as pa

    from featurestore.offline.writer import CREATED_TS, EVENT_TS, offline_schema

    schema = offline_schema(view)
    entities = sorted(view.resolved_entities(), key=lambda e: e.name)  # the rows' key order
    columns: dict[str, list[Any]] = {e.join_key: [] for e in entities}
    key_names = list(columns)
    events: list[int] = []
    created: list[int | None] = []
    values: list[tuple[Any, ...]] = []
    for keys, event_us, created_us, vals in rows:
        for name, k in zip(key_names, keys, strict=True):
            columns[name].append(k)
        events.append(event_us)
        created.append(created_us)
        values.append(vals)
    columns[EVENT_TS] = events
    columns[CREATED_TS] = created
    for i, f in enumerate(view.schema):
        columns[f.name] = [v[i] for v in values]
    arrays = []
    for f in schema:
        if pa.types.is_timestamp(f.type):
            arrays.append(pa.array(columns[f.name], pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(columns[f.name], f.type))
    return pa.table(arrays, schema=schema)
