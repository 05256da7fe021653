"""`featurestore stream repair`: remove what events from the future left in the stores.

Before sources bounded event times ahead (``max_future_skew``), an event stamped an hour
ahead or at 9999-12-31 was accepted: it moved its partition's watermark (so the normal
events after it were refused as late), its rows sit in the offline tables, and its online
value can never be replaced (the online store keeps the newest event time). A consumer
of this version already ignores such a watermark; this removes the rest:

* both offline tables lose their rows with an event time past the bound (the files that
  hold them are rewritten without them, in one manifest commit per table);
* each partition's landed watermark becomes its newest remaining logged event time;
* every entity that had such a row gets its newest remaining row online (or none).

Run it with the view's consumers stopped. Events refused as late because of a poisoned
watermark are in the dead-letter topic (`featurestore stream dlq`); produce them again
to the topic to have them counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.offline import parquet_io
from featurestore.offline.table import STREAM, OfflineTable
from featurestore.offline.writer import CREATED_TS, EVENT_TS, write_files
from featurestore.online.layout import ViewLayout
from featurestore.online.store import OnlineStore
from featurestore.streaming.landing import Landing, StreamPosition

WHAT = "stream table file"  # for CorruptFileError: which file could not be read


@dataclass
class RepairReport:
    bound_us: int
    feature_rows_removed: int = 0
    events_removed: int = 0
    entities_reset: int = 0
    # partition -> (landed watermark before, after)
    watermarks: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.feature_rows_removed or self.events_removed or self.watermarks)


def _split(
    table: OfflineTable, bound_us: int
) -> tuple[list[Any], list[tuple[pa.Table, int]], list[pa.Table]]:
    """(files kept as they are, the kept rows of files holding future rows with their
    landing time, those rows)."""
    keep, rest, removed = [], [], []
    for f in table.manifest().files:
        if f.max_ts <= bound_us:
            keep.append(f)
            continue
        data = parquet_io.read_table(table.root / f.path, WHAT, parquet_io.OFFLINE_FIX)
        future = pc.greater(data.column(EVENT_TS).cast(pa.int64()), bound_us)
        removed.append(data.filter(future))
        rest.append((data.filter(pc.invert(future)), table.landed_us(f)))
    return keep, rest, removed


def _rewrite(
    table: OfflineTable,
    bound_us: int,
    position: Callable[[StreamPosition], StreamPosition],
    *,
    always: bool,
) -> list[pa.Table]:
    """Commit ``table`` without its rows past ``bound_us`` and with ``position`` applied
    to its stream position (``always``: even if no row goes); returns the removed rows."""
    with table.writer_lock():
        base = table.manifest()
        keep, rest, removed = _split(table, bound_us)
        if not removed and not always:
            return []
        seq = base.sequence + 1
        # Kept rows keep their landing time: an as-of read still sees them from then.
        added = [
            f
            for part, landed in rest
            for f in write_files(table, part, seq, tie_free=False, landed_us=landed)
        ]
        table.commit(
            base,
            keep,
            added,
            operation="stream-repair",
            detail={
                "removed_future_rows": sum(t.num_rows for t in removed),
                STREAM: position(StreamPosition.of(base)).to_detail(),
            },
        )
        return removed


def newest_rows(table: OfflineTable, layout: ViewLayout, keys: set[tuple[Any, ...]]) -> list[Any]:
    """Each key's newest row (by event time, then created time) as online writer rows."""
    newest: dict[tuple[Any, ...], tuple[int, int, tuple[Any, ...]]] = {}
    for f in table.manifest().files:
        data = parquet_io.read_table(table.root / f.path, WHAT, parquet_io.OFFLINE_FIX)
        cols = {
            c: (
                data.column(c).cast(pa.int64()).to_pylist()
                if c in (EVENT_TS, CREATED_TS)
                else data.column(c).to_pylist()
            )
            for c in (*layout.join_keys, EVENT_TS, CREATED_TS, *layout.features)
        }
        for i in range(data.num_rows):
            key = tuple(cols[k][i] for k in layout.join_keys)
            if key not in keys:
                continue
            rank = (cols[EVENT_TS][i], cols[CREATED_TS][i] or -(2**63))
            if key not in newest or rank > newest[key][:2]:
                newest[key] = (*rank, tuple(cols[n][i] for n in layout.features))
    return [(key, t, created, values) for key, (t, created, values) in newest.items()]


def repair(
    landing: Landing,
    layout: ViewLayout,
    writer: OnlineStore | None,
    bound_us: int,
) -> RepairReport:
    """Remove rows with an event time past ``bound_us`` from the view version's stores."""
    report = RepairReport(bound_us)
    features, _events = landing.positions()
    poisoned = {p for p, t in features.max_event_us.items() if t > bound_us}
    marks = {p: landing.max_event_us(p, bound_us) for p in poisoned}
    for p in poisoned:
        report.watermarks[p] = (features.max_event_us[p], marks[p])

    def sane(pos: StreamPosition) -> StreamPosition:
        for p, mark in marks.items():
            if mark is None:
                pos.max_event_us.pop(p, None)
            else:
                pos.max_event_us[p] = mark
        return pos

    # The event log first: a crash in between leaves feature rows the next run removes.
    removed_events = _rewrite(landing.events, bound_us, sane, always=bool(marks))
    removed = _rewrite(landing.features, bound_us, sane, always=bool(marks))
    report.events_removed = sum(t.num_rows for t in removed_events)
    report.feature_rows_removed = sum(t.num_rows for t in removed)
    keys = {tuple(row[k] for k in layout.join_keys) for t in removed for row in t.to_pylist()}
    if writer is not None and keys:
        writer.delete_entities(layout, sorted(keys, key=repr))
        writer.write(layout, newest_rows(landing.features, layout, keys))
        report.entities_reset = len(keys)
    return report
