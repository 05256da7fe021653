"""A brute-force point-in-time join, written from the contract (DESIGN.md, "Offline store").

It shares no code with ``featurestore.offline``: plain Python over lists of dicts, so a test can
compare either engine against it row by row.

The rule, for each entity row (keys k, time t) and each requested view version:

* candidates are the feature rows with the same keys (a null key on either side never matches) and
  ``t - ttl <= event_timestamp <= t`` (both inclusive; no TTL means no lower bound);
* the winner has the latest ``event_timestamp``; ties go to the larger ``created_timestamp`` (a
  null created time counts as the smallest), then to the later ``OfflineStore.write`` call, then,
  within one write, to the later row;
* with ``as_of``, only rows of writes that landed at or before it are candidates (``landed[i]`` is
  when the i-th write landed): what the store knew at that time;
* no candidate gives ``None`` for every feature of that view;
* entity rows keep their order and duplicates, and every input column passes through unchanged.

Timestamps are compared as UTC instants; naive datetimes are taken as UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

EVENT_TS = "event_timestamp"
CREATED_TS = "created_timestamp"


def utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime; naive values are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass
class OracleView:
    """One view version as the oracle sees it: its keys, TTL and the rows of each write, in order.

    ``writes[i]`` is the list of rows passed to the i-th ``OfflineStore.write`` call for this view
    version. Each row is a dict with the join keys, ``event_timestamp``, optionally
    ``created_timestamp`` (missing or None = null) and the feature values.
    """

    name: str
    join_keys: tuple[str, ...]
    ttl: timedelta | None
    writes: list[list[dict[str, Any]]] = field(default_factory=list)
    landed: list[datetime] = field(default_factory=list)  # when each write landed (as_of only)


def latest_row(
    view: OracleView, keys: Mapping[str, Any], at: datetime, as_of: datetime | None = None
) -> dict[str, Any] | None:
    """The feature row the contract picks for ``keys`` at time ``at``, or None."""
    if any(keys[k] is None for k in view.join_keys):
        return None
    t = utc(at)
    assert t is not None
    lower = None if view.ttl is None else t - view.ttl
    best: tuple[Any, ...] | None = None
    best_row: dict[str, Any] | None = None
    known = utc(as_of)
    for write_no, rows in enumerate(view.writes):
        if known is not None and utc(view.landed[write_no]) > known:  # type: ignore[operator]
            continue  # landed after as_of: not yet known
        for row_no, row in enumerate(rows):
            if any(row[k] is None or row[k] != keys[k] for k in view.join_keys):
                continue
            event = utc(row[EVENT_TS])
            assert event is not None, "feature rows need an event time"
            if event > t or (lower is not None and event < lower):
                continue
            created = utc(row.get(CREATED_TS))
            # A null created time sorts below every real one.
            rank = (event, created is not None, created or event, write_no, row_no)
            if best is None or rank > best:
                best, best_row = rank, row
    return best_row


def point_in_time_join(
    entity_rows: Sequence[Mapping[str, Any]],
    requested: Sequence[tuple[OracleView, str, str]],
    *,
    timestamp_column: str = EVENT_TS,
    as_of: datetime | None = None,
) -> list[dict[str, Any]]:
    """The expected training rows.

    ``requested`` lists ``(view, feature, output column name)``. Each output row is the entity row
    (all its columns, unchanged) plus one column per requested feature.
    """
    out = []
    for entity in entity_rows:
        row = dict(entity)
        matches: dict[str, dict[str, Any] | None] = {}
        for view, feature, name in requested:
            if view.name not in matches:
                matches[view.name] = latest_row(view, entity, entity[timestamp_column], as_of)
            match = matches[view.name]
            row[name] = None if match is None else match.get(feature)
        out.append(row)
    return out
