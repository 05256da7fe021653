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
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from featurestore.definitions import FeatureView

US = 1_000_000


@dataclass(frozen=True, slots=True)
class AggSpec:
    function: str
    window_us: int
    column: int | None  # index into the view's input columns


# What each aggregation keeps per window (ints: the hot loop compares them).
COUNT_EVENTS, LAST, COUNT, SUM, MEAN, MIN, MAX = range(7)
KINDS = {"count": COUNT, "last": LAST, "sum": SUM, "mean": MEAN, "min": MIN, "max": MAX}
SCALE = 1074  # every finite double is an integer multiple of 2**-1074


def _scaled(v: float) -> int:
    """``v`` as an exact integer multiple of 2**-1074: integer sums are exact, and one
    true division (correctly rounded) gives the same value as ``math.fsum``."""
    n, d = v.as_integer_ratio()
    return n << (SCALE + 1 - d.bit_length())


@dataclass(frozen=True, slots=True)
class _Group:
    """The aggregations sharing one window length: one start pointer for all of them."""

    window_us: int
    members: tuple[tuple[int, int, int], ...]  # (output index, kind, input column)
    needs_values: bool


class Tail:
    """A window group's running state over the window that ends at the entity's newest
    event: events [lo, hi) (absolute indexes) and, per member, its non-null count, exact
    scaled sum, or monotonic queue of candidate indexes (min/max). Appending an event in
    time order and sliding the window's start are O(1) amortized."""

    __slots__ = ("hi", "lo", "n", "queues", "totals")

    def __init__(self, lo: int, members: int) -> None:
        self.lo = self.hi = lo
        self.n = [0] * members
        self.totals = [0] * members
        self.queues: list[deque[int]] = [deque() for _ in range(members)]


class EntityEvents:
    """One entity's retained events, sorted by (event time, sequence).

    Indexes are positions in the lists; ``base`` counts the events evicted from the
    front, so a tail's absolute index ``a`` is at position ``a - base``.
    """

    __slots__ = ("base", "columns", "order", "tails", "times")

    def __init__(self, n_columns: int) -> None:
        self.order: list[tuple[int, int]] = []
        self.times: list[int] = []
        self.columns: list[list[Any]] = [[] for _ in range(n_columns)]
        self.base = 0
        self.tails: list[Tail] | None = None  # None: rebuild before use

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
        self.tails = None  # an event inside the running windows: rebuild them
        return i

    def evict_through(self, horizon_us: int) -> None:
        """Drop events with event time <= horizon_us (no row to come can need them).
        Evicts in chunks: deleting a list's front costs its length."""
        n = bisect_right(self.times, horizon_us)
        if n and (n >= 64 or n * 4 >= len(self.times)):
            del self.order[:n], self.times[:n]
            for col in self.columns:
                del col[:n]
            self.base += n
            if self.tails is not None and any(t.lo < self.base for t in self.tails):
                self.tails = None


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
            groups = []
            for window in sorted({s.window_us for s in self.specs}):
                members = tuple(
                    (i, COUNT_EVENTS if s.column is None else KINDS[s.function], s.column or 0)
                    for i, s in enumerate(self.specs)
                    if s.window_us == window
                )
                groups.append(_Group(window, members, any(k >= COUNT for _, k, _ in members)))
            self.groups = tuple(groups)
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
        if hi == len(times):  # the newest row: from the running tails
            out = self._advance(events)
        else:
            out = [
                _aggregate(s, events, bisect_right(times, t - s.window_us), hi) for s in self.specs
            ]
        return tuple(out[j] for j in self._order)

    def affected(self, events: EntityEvents, time_us: int) -> range:
        """Indexes of the rows an event at ``time_us`` changes: ties and the next window."""
        lo = bisect_left(events.times, time_us)
        if self.specs is None:
            return range(lo, bisect_right(events.times, time_us))
        return range(lo, bisect_left(events.times, time_us + self.max_window_us))

    def _advance(self, events: EntityEvents) -> list[Any]:
        """Bring every window group up to the newest event and read its values."""
        base, times, columns = events.base, events.times, events.columns
        end = base + len(times)
        newest = times[-1]
        if events.tails is None:  # rebuild: each window's start, then append the rest
            events.tails = [
                Tail(base + bisect_right(times, newest - g.window_us), len(g.members))
                for g in self.groups
            ]
        out: list[Any] = [None] * len(self.specs or ())
        for group, tail in zip(self.groups, events.tails, strict=True):
            members = group.members
            if group.needs_values:
                for a in range(tail.hi, end):
                    for m, (_i, kind, c) in enumerate(members):
                        if kind < COUNT:
                            continue
                        v = columns[c][a - base]
                        if v is None:
                            continue
                        tail.n[m] += 1
                        if kind <= MEAN:
                            tail.totals[m] += _scaled(v)
                        else:  # MIN or MAX
                            q, col = tail.queues[m], columns[c]
                            if kind == MIN:
                                while q and col[q[-1] - base] >= v:
                                    q.pop()
                            else:
                                while q and col[q[-1] - base] <= v:
                                    q.pop()
                            q.append(a)
            tail.hi = end
            start = newest - group.window_us
            lo = tail.lo
            while lo < end and times[lo - base] <= start:
                if group.needs_values:
                    for m, (_i, kind, c) in enumerate(members):
                        if kind < COUNT:
                            continue
                        v = columns[c][lo - base]
                        if v is None:
                            continue
                        tail.n[m] -= 1
                        if kind <= MEAN:
                            tail.totals[m] -= _scaled(v)
                        elif kind >= MIN and tail.queues[m] and tail.queues[m][0] == lo:
                            tail.queues[m].popleft()
                lo += 1
            tail.lo = lo
            for m, (i, kind, c) in enumerate(members):
                if kind == COUNT_EVENTS:
                    out[i] = end - lo
                elif kind == LAST:
                    out[i] = columns[c][end - 1 - base] if end > lo else None
                elif kind == COUNT:
                    out[i] = tail.n[m]
                elif not tail.n[m]:
                    out[i] = None
                elif kind == SUM:
                    out[i] = _unscale(tail.totals[m])
                elif kind == MEAN:
                    out[i] = _unscale(tail.totals[m]) / tail.n[m]
                else:
                    out[i] = columns[c][tail.queues[m][0] - base]
        return out


def _unscale(total: int) -> float:
    try:
        return total / (1 << SCALE)  # int / int: correctly rounded
    except OverflowError:
        return math.inf if total > 0 else -math.inf


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
        return _exact_sum(values)
    if fn == "mean":
        return _exact_sum(values) / len(values)
    if fn == "min":
        return min(values)
    return max(values)


def _exact_sum(values: list[Any]) -> float:
    """The running windows' exact sum, over a slice: the two paths cannot disagree."""
    return _unscale(sum(map(_scaled, values)))


def ordered_rows(
    aggregator: WindowAggregator, events: Iterable[tuple[int, int, Sequence[Any]]]
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """The batch side: one entity's events ``(time us, seq, input values)`` in (time, seq)
    order -> ``(time us, features)``, one row per distinct time (events at one time share
    their windows). Running windows, so O(1) per event; memory: one window of events."""
    state = aggregator.new_entity()
    prev: int | None = None
    for time_us, seq, values in events:
        if prev is not None and time_us != prev:
            yield prev, aggregator.row_at(state, len(state) - 1)
            # Older than every window of the rows to come (the tails are past them too).
            state.evict_through(prev - aggregator.max_window_us)
        state.add(time_us, seq, values)
        prev = time_us
    if prev is not None:
        yield prev, aggregator.row_at(state, len(state) - 1)


def batch_rows(
    aggregator: WindowAggregator, events: Sequence[tuple[int, int, Sequence[Any]]]
) -> list[tuple[int, tuple[Any, ...]]]:
    """``ordered_rows`` of events in any order."""
    return list(ordered_rows(aggregator, sorted(events, key=lambda e: (e[0], e[1]))))
