"""Sliding-window aggregations: one implementation for the stream consumer and the batch job.

Semantics (docs/streaming.md has the long form):

* A streaming view yields one feature row per accepted event ``e`` of an entity, at
  ``e``'s event time ``t``. Each aggregation covers that entity's events ``x`` with
  ``t - window < t_x <= t``: the lower bound is exclusive, the upper inclusive, and
  events at exactly ``t`` (whatever order they arrived in) are all inside.
* ``count`` without a column counts events; with a column, its non-null values.
  ``sum``, ``mean``, ``min`` and ``max`` use the non-null values and are null when
  there are none. ``sum`` is exact (``math.fsum``: correctly rounded, whatever the
  order of the values), so a stream and a batch job agree to the last bit.
  ``mean`` is that sum over the non-null count. ``last`` is the value of the event
  with the largest (event time, arrival sequence) in the window.
* A view without aggregations passes its schema's fields through: the row at ``t``
  holds the values of the last event (by arrival) at ``t``.

Events of an entity are kept sorted by (event time, arrival sequence); the stream
consumer inserts late events in place and re-derives the rows they change, the
batch job feeds an entity's events in order. Both call ``row_at``, so they cannot
disagree.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featurestore.definitions import FeatureView

US = 1_000_000


@dataclass(frozen=True, slots=True)
class AggSpec:
    function: str
    window_us: int
    column: int | None  # index into the view's input columns


class EntityEvents:
    """One entity's retained events, sorted by (event time, sequence)."""

    __slots__ = ("columns", "order", "times")

    def __init__(self, n_columns: int) -> None:
        self.order: list[tuple[int, int]] = []
        self.times: list[int] = []
        self.columns: list[list[Any]] = [[] for _ in range(n_columns)]

    def __len__(self) -> int:
        return len(self.times)

    def add(self, time_us: int, seq: int, values: Sequence[Any]) -> int:
        """Insert an event; returns its index."""
        key = (time_us, seq)
        if not self.order or key > self.order[-1]:
            i = len(self.order)
            self.order.append(key)
            self.times.append(time_us)
            for col, v in zip(self.columns, values, strict=True):
                col.append(v)
            return i
        i = bisect_left(self.order, key)
        if i < len(self.order) and self.order[i] == key:
            return i  # the same event again (a replay): already here
        self.order.insert(i, key)
        self.times.insert(i, time_us)
        for col, v in zip(self.columns, values, strict=True):
            col.insert(i, v)
        return i

    def contains(self, time_us: int, seq: int) -> bool:
        i = bisect_left(self.order, (time_us, seq))
        return i < len(self.order) and self.order[i] == (time_us, seq)

    def evict_through(self, horizon_us: int) -> None:
        """Drop events with event time <= horizon_us (no row to come can need them)."""
        n = bisect_right(self.times, horizon_us)
        if n:
            del self.order[:n], self.times[:n]
            for col in self.columns:
                del col[:n]


class WindowAggregator:
    """Computes a streaming view's feature rows from its entities' events."""

    def __init__(self, view: FeatureView) -> None:
        self.features = view.feature_names
        if view.aggregations:
            inputs = sorted({a.column for a in view.aggregations if a.column is not None})
            self.specs: tuple[AggSpec, ...] | None = tuple(
                AggSpec(
                    a.function,
                    int(a.window.total_seconds() * US),
                    inputs.index(a.column) if a.column is not None else None,
                )
                for a in view.aggregations
            )
            by_name = {a.name: i for i, a in enumerate(view.aggregations)}
            # Features follow the schema's order (it may list some aggregations first).
            self._order = [by_name[f] for f in self.features]
            self.max_window_us = max(s.window_us for s in self.specs)
        else:
            inputs = list(self.features)
            self.specs = None
            self._order = list(range(len(inputs)))
            self.max_window_us = 0
        self.inputs: list[str] = inputs

    def new_entity(self) -> EntityEvents:
        return EntityEvents(len(self.inputs))

    def row_at(self, events: EntityEvents, i: int) -> tuple[Any, ...]:
        """The feature values of the row at event ``i`` (in the schema's order)."""
        times = events.times
        t = times[i]
        hi = bisect_right(times, t)  # events at exactly t are all inside
        if self.specs is None:  # pass-through: the last event at t (so ties agree)
            return tuple(col[hi - 1] for col in events.columns)
        out = [_aggregate(s, events, bisect_right(times, t - s.window_us), hi) for s in self.specs]
        return tuple(out[j] for j in self._order)

    def affected(self, events: EntityEvents, time_us: int) -> range:
        """Indexes of the rows an event at ``time_us`` changes: ties and the next window."""
        lo = bisect_left(events.times, time_us)
        if self.specs is None:
            return range(lo, bisect_right(events.times, time_us))
        return range(lo, bisect_left(events.times, time_us + self.max_window_us))


def _aggregate(spec: AggSpec, events: EntityEvents, lo: int, hi: int) -> Any:
    fn = spec.function
    if spec.column is None:  # count of events
        return hi - lo
    values = events.columns[spec.column][lo:hi]
    if fn == "last":
        return values[-1] if values else None
    if None in values:
        values = [v for v in values if v is not None]
    if fn == "count":
        return len(values)
    if not values:
        return None
    if fn == "sum":
        return _fsum(values)
    if fn == "mean":
        return _fsum(values) / len(values)
    if fn == "min":
        return min(values)
    return max(values)


def _fsum(values: list[Any]) -> float:
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf if sum(1 if v > 0 else -1 for v in values) > 0 else -math.inf


def batch_rows(
    aggregator: WindowAggregator,
    events: Sequence[tuple[int, int, Sequence[Any]]],
) -> list[tuple[int, tuple[Any, ...]]]:
    """Rows for one entity's complete event list ``(time us, seq, input values)``: the
    batch side. Returns ``(time us, features)`` per event, in (time, seq) order."""
    state = aggregator.new_entity()
    for time_us, seq, values in sorted(events, key=lambda e: (e[0], e[1])):
        state.add(time_us, seq, values)
    return [(state.times[i], aggregator.row_at(state, i)) for i in range(len(state))]
