"""A spine: entity rows taken from one stored view's own offline rows, not from a file.

``spine="transactions", start=T0, end=T1`` makes one entity row per distinct
(join keys, ``event_timestamp``) of that view with event time in [T0, T1) (the
view's latest version, or ``VIEW@vN``), ordered by event time then keys, so the
same spine over the same data gives the same rows in the same order. With
``as_of``, only the spine's rows landed by then count, like every other read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import EntityInputError, InvalidReferenceError, OnDemandViewError
from featurestore.offline import parquet_io
from featurestore.offline.table import OfflineTable
from featurestore.offline.writer import EVENT_TS, table_path
from featurestore.registry.snapshot import RegistrySnapshot
from featurestore.times import as_utc, micros

_SPINE = re.compile(r"^(?P<view>[A-Za-z_][A-Za-z0-9_]*)(?:@v(?P<version>[1-9][0-9]*))?$")


@dataclass(frozen=True, slots=True)
class SpineRequest:
    """Entity rows to take from ``view``'s rows in [start, end) (None: unbounded)."""

    view: str
    start: datetime | None = None
    end: datetime | None = None


def entity_source(
    entities: Any,
    spine: str | None,
    start: datetime | None,
    end: datetime | None,
    timestamp_column: str,
) -> Any:
    """What the training set's entity rows come from: ``entities`` as given, or a spine."""
    if spine is None:
        if start is not None or end is not None:
            raise EntityInputError(
                "start= and end= bound a spine's rows; pass spine='view' too, or drop them."
            )
        return entities
    if entities is not None:
        raise EntityInputError(
            "Give entity rows or spine=..., not both: a spine takes the entity rows from "
            f"view '{spine}' itself."
        )
    if timestamp_column != EVENT_TS:
        raise EntityInputError(
            "A spine's entity rows are timed by the view's event_timestamp; drop "
            f"timestamp_column={timestamp_column!r}."
        )
    return SpineRequest(spine, start, end)


@dataclass(frozen=True, slots=True)
class Spine:
    """The entity rows of a spine and what they came from (for the training set record)."""

    rows: pa.Table  # join keys and event_timestamp
    view: str  # "view@vN"
    start: datetime | None
    end: datetime | None

    def describe(self) -> dict[str, str]:
        out = {"view": self.view}
        if self.start is not None:
            out["start"] = self.start.isoformat()
        if self.end is not None:
            out["end"] = self.end.isoformat()
        return out


def spine_rows(
    snapshot: RegistrySnapshot,
    offline_root: Path,
    request: SpineRequest,
    as_of_us: int | None = None,
) -> Spine:
    """Read the spine's rows in [start, end) (None: unbounded on that side)."""
    spine, start, end = request.view, request.start, request.end
    if not isinstance(spine, str) or (match := _SPINE.match(spine.strip())) is None:
        raise InvalidReferenceError(
            f"spine={spine!r} is not a view name; give 'view' (its latest version) or 'view@v2'."
        )
    for name, value in (("start", start), ("end", end)):
        if value is not None and not isinstance(value, datetime):
            raise EntityInputError(f"Spine {name} must be a datetime (got {type(value).__name__}).")
    start, end = as_utc(start), as_utc(end)
    if start is not None and end is not None and start >= end:
        raise EntityInputError(
            f"Spine window [{start.isoformat()}, {end.isoformat()}) is empty: start must be "
            "before end."
        )
    name, pinned = match.group("view"), match.group("version")
    version = snapshot.view_version(name, int(pinned) if pinned else None)
    if version.on_demand:
        raise OnDemandViewError(
            f"{version.label} is an on-demand view and cannot be a spine: it has no rows of "
            "its own. Use the stored view whose rows you want as entity rows."
        )
    view = snapshot.feature_view(name, version.version)
    label = version.label
    keys = [e.join_key for e in view.resolved_entities()]
    table = OfflineTable(table_path(offline_root, snapshot.project, name, version.version))
    lo = None if start is None else micros(start)
    hi = None if end is None else micros(end) - 1  # overlaps() takes an inclusive end
    parts = []
    for f in table.files(lo, hi):
        if as_of_us is not None and table.landed_us(f) > as_of_us:
            continue
        part = parquet_io.read_table(
            table.root / f.path,
            f"offline table of spine {label}",
            parquet_io.OFFLINE_FIX,
            columns=[*keys, EVENT_TS],
        )
        ts = part.column(EVENT_TS).cast(pa.int64())
        inside = pc.and_(
            pc.greater_equal(ts, lo) if lo is not None else pc.is_valid(ts),
            pc.less_equal(ts, hi) if hi is not None else pc.is_valid(ts),
        )
        parts.append(part.filter(inside))
    rows = pa.concat_tables(parts) if parts else None
    if rows is None or rows.num_rows == 0:
        window = f"[{start.isoformat() if start else '-inf'}, {end.isoformat() if end else 'inf'})"
        raise EntityInputError(
            f"Spine {label} has no rows with event time in {window}"
            + (" that had landed by as_of" if as_of_us is not None else "")
            + ". Widen the window or materialize the view first."
        )
    # A corrected fact appears once per write: one entity row per (keys, event time).
    group = [*keys, EVENT_TS]
    distinct = rows.group_by(group, use_threads=False).aggregate([])
    ordered = distinct.sort_by([(EVENT_TS, "ascending"), *((k, "ascending") for k in keys)])
    return Spine(ordered.select(group).combine_chunks(), label, start, end)
