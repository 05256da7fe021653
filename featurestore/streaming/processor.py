"""The stream consumer's logic, without Kafka: events in; feature rows, logged events,
online rows and dead letters out. ``consumer.py`` feeds it from a consumer group.

Per Kafka partition it keeps a watermark (the largest accepted event time) and each
entity's events within reach of a future row. An event older than the watermark minus
the source's ``allowed_lateness`` is refused as late (a dead letter), so what is accepted
depends only on the partition's own order: a restart or a rebalance decides the same.

Event times are bounded ahead too: an event stamped more than the source's
``max_future_skew`` ahead of the consumer's clock (a producer with a fast clock, or a
garbage time such as 9999-12-31) is a dead letter and never moves the watermark, so it
cannot make the partition's normal events "late" or pin an online value forever.

A record at an offset below the partition's next offset is a repeated delivery (a broker
or a seek that answered wrongly) and is skipped: every offset is processed at most once
per epoch, so the offline landing never holds an event twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from featurestore.definitions import FeatureView, KafkaSource
from featurestore.offline.writer import CREATED_TS, EVENT_TS
from featurestore.streaming.events import BadEvent, EventParser
from featurestore.streaming.landing import (
    OFFSET,
    PARTITION,
    StreamPosition,
    arrow_columns,
    timestamps_as_micros,
)
from featurestore.streaming.windows import EntityEvents, WindowAggregator
from featurestore.times import from_micros


@dataclass(slots=True)
class DeadLetter:
    partition: int
    offset: int
    reason: str


@dataclass
class PartitionState:
    max_event_us: int | None = None
    next_offset: int | None = None
    epoch_us: int | None = None
    entities: dict[Any, EntityEvents] = field(default_factory=dict)
    # Events below this offset are in the event log already: a consumer resumes at the
    # feature table's position, which the event log's (committed first) may be ahead of.
    events_from: int = 0
    # record_digest of the record at next_offset - 1 (set by the consumer per poll).
    last_digest: str | None = None


class StreamProcessor:
    def __init__(
        self,
        view: FeatureView,
        source: KafkaSource,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.view = view
        self.source = source
        self.parser = EventParser(view, source)
        self.aggregator = WindowAggregator(view)
        self.keys = view.join_keys
        self.ts_field = source.timestamp_field
        self.lateness_us = int(source.allowed_lateness.total_seconds() * 1_000_000)
        self.future_us = int(source.max_future_skew.total_seconds() * 1_000_000)
        self.max_event_bytes = source.max_event_bytes
        self.clock = clock
        self.reach_us = self.lateness_us + self.aggregator.max_window_us
        self.event_fields = [f.name for f in source.schema if f.name != self.ts_field]
        self.partitions: dict[int, PartitionState] = {}
        self._last_created = 0
        self.reset_pending()

    def reset_pending(self) -> None:
        # Offline rows waiting for the next landing, column-wise.
        self.feature_rows: list[tuple[Any, int, int, tuple[Any, ...]]] = []
        self.event_rows: list[tuple[int, int, int, dict[str, Any]]] = []
        # (partition, key) -> the entity's newest row if known, for the online write
        self.touched: dict[tuple[int, Any], tuple[Any, ...] | None] = {}
        self.accepted = 0
        self.dead = 0
        self.repeated = 0

    # -- state -----------------------------------------------------------------------

    def assign(
        self,
        partition: int,
        features: StreamPosition,
        events: StreamPosition,
        *,
        restart_at: int | None = None,
        watermark: int | None = None,
    ) -> int:
        """Start tracking a partition; returns the offset to read from. ``restart_at``:
        the topic was recreated, so the landed position means nothing any more.
        ``watermark``: instead of the landed one (which an event from the future, landed
        before the bound existed, may have poisoned)."""
        if restart_at is not None:
            state = PartitionState(
                next_offset=restart_at, events_from=restart_at, epoch_us=time.time_ns() // 1000
            )
        else:
            if watermark is None:
                watermark = features.max_event_us.get(partition)
            if watermark is not None:
                # A watermark from the future (landed before the bound existed) is held
                # to the bound, so the partition's normal events are not refused as late.
                watermark = min(watermark, self.future_bound_us())
            state = PartitionState(
                max_event_us=watermark,
                next_offset=features.offsets.get(partition, 0),
                events_from=events.offsets.get(partition, 0),
                epoch_us=features.epoch_us.get(partition),
                last_digest=features.digests.get(partition),
            )
        self.partitions[partition] = state
        return state.next_offset or 0

    def future_bound_us(self) -> int:
        """The latest event time accepted now (the consumer's clock plus the skew)."""
        return self.clock() // 1000 + self.future_us

    def restore(self, partition: int, events: pa.Table) -> None:
        """Rebuild a partition's window state from its logged events (sorted by time)."""
        state = self.partitions[partition]
        cols = timestamps_as_micros(events).to_pydict()  # as the parser gives them
        times = cols[EVENT_TS]
        key_cols = [cols[k] for k in self.keys]
        inputs = [cols[c] for c in self._input_columns()]
        bound = self.future_bound_us()
        for i, (t, offset) in enumerate(zip(times, cols[OFFSET], strict=True)):
            if t > bound:
                continue  # logged before the bound existed: `stream repair` removes it
            key = key_cols[0][i] if len(key_cols) == 1 else tuple(c[i] for c in key_cols)
            entity = state.entities.get(key)
            if entity is None:
                entity = state.entities[key] = self.aggregator.new_entity()
            entity.add(t, offset, [c[i] for c in inputs])

    def revoke(self, partition: int) -> None:
        self.partitions.pop(partition, None)

    def restore_columns(self) -> list[str]:
        return [*dict.fromkeys([*self.keys, *self._input_columns()]), EVENT_TS, PARTITION, OFFSET]

    def _input_columns(self) -> list[str]:
        return [EVENT_TS if c == self.ts_field else c for c in self.aggregator.inputs]

    # -- events ------------------------------------------------------------------------

    def process(self, partition: int, offset: int, raw: bytes | None) -> DeadLetter | None:
        state = self.partitions[partition]
        if state.next_offset is not None and offset < state.next_offset:
            self.repeated += 1  # delivered again: processed (landed or dead) already
            return None
        state.next_offset = offset + 1
        if raw is not None and len(raw) > self.max_event_bytes:
            self.dead += 1
            return DeadLetter(
                partition,
                offset,
                f"too large: {len(raw):,} bytes, more than the source's max_event_bytes "
                f"({self.max_event_bytes:,})",
            )
        try:
            event = self.parser.parse(raw)
        except BadEvent as exc:
            self.dead += 1
            return DeadLetter(partition, offset, str(exc))
        except Exception as exc:  # no single event may stop the consumer
            self.dead += 1
            return DeadLetter(partition, offset, f"unreadable: {type(exc).__name__}: {exc}")
        t = event[self.ts_field]
        bound = self.future_bound_us()
        if t > bound:
            self.dead += 1
            return DeadLetter(
                partition,
                offset,
                f"future: event time {format_us(t)} is more than "
                f"{self.source.max_future_skew} ahead of the consumer's clock "
                f"({format_us(bound - self.future_us)})",
            )
        if state.max_event_us is not None and t < state.max_event_us - self.lateness_us:
            self.dead += 1
            return DeadLetter(
                partition,
                offset,
                f"late: event time {format_us(t)} is more than "
                f"{self.source.allowed_lateness} behind partition {partition}'s newest "
                f"({format_us(state.max_event_us)})",
            )
        if state.max_event_us is None or t > state.max_event_us:
            state.max_event_us = t
        keys = self.keys
        key = event[keys[0]] if len(keys) == 1 else tuple(event[k] for k in keys)
        entity = state.entities.get(key)
        if entity is None:
            entity = state.entities[key] = self.aggregator.new_entity()
        i = entity.add(t, offset, [event[c] for c in self.aggregator.inputs])
        rows = (i,) if i == len(entity) - 1 else self.aggregator.affected(entity, t)
        created = self._created()
        row_at = self.aggregator.row_at
        newest = None
        for j in rows:
            row = row_at(entity, j)
            self.feature_rows.append((key, entity.times[j], created, row))
            if j == len(entity) - 1:
                newest = row
        if offset >= state.events_from:
            self.event_rows.append((t, partition, offset, event))
        self.touched[(partition, key)] = newest  # the online row, if just computed
        horizon = state.max_event_us - self.reach_us
        if entity.times[0] <= horizon:
            entity.evict_through(horizon)
        self.accepted += 1
        return None

    def _created(self) -> int:
        # Strictly increasing, so a correction always sorts after the row it corrects.
        now = time.time_ns() // 1000
        self._last_created = now if now > self._last_created else self._last_created + 1
        return self._last_created

    def evict_idle(self) -> int:
        """Drop entities with no event within reach; returns how many are kept."""
        kept = 0
        for state in self.partitions.values():
            if state.max_event_us is None:
                continue
            horizon = state.max_event_us - self.reach_us
            for key in [k for k, e in state.entities.items() if e.times[-1] <= horizon]:
                del state.entities[key]
            kept += len(state.entities)
        return kept

    # -- outputs -------------------------------------------------------------------------

    def online_rows(self) -> list[tuple[Any, int, int, tuple[Any, ...]]]:
        """Each touched entity's latest row, for the online writer; clears the touched set."""
        out = []
        row_at = self.aggregator.row_at
        created = self._created()
        for (partition, key), row in self.touched.items():
            entity = self.partitions[partition].entities.get(key)
            if entity is None or not len(entity):
                continue
            last = len(entity) - 1
            keys = (key,) if len(self.keys) == 1 else key
            out.append(
                (
                    keys,
                    entity.times[last],
                    created,
                    row if row is not None else row_at(entity, last),
                )
            )
        self.touched = {}
        return out

    def positions(self, only: Iterable[int] | None = None) -> StreamPosition:
        out = StreamPosition()
        chosen = self.partitions if only is None else {p: self.partitions[p] for p in only}
        for p, s in chosen.items():
            if s.next_offset is not None:
                out.offsets[p] = s.next_offset
            if s.max_event_us is not None:
                out.max_event_us[p] = s.max_event_us
            if s.epoch_us is not None:
                out.epoch_us[p] = s.epoch_us
            if s.last_digest is not None:
                out.digests[p] = s.last_digest
        return out

    def feature_table(self, schema: pa.Schema) -> pa.Table:
        rows = self.feature_rows
        cols: dict[str, list[Any]] = {}
        if len(self.keys) == 1:
            cols[self.keys[0]] = [r[0] for r in rows]
        else:
            for i, k in enumerate(self.keys):
                cols[k] = [r[0][i] for r in rows]
        cols[EVENT_TS] = [r[1] for r in rows]
        cols[CREATED_TS] = [r[2] for r in rows]
        for i, name in enumerate(self.aggregator.features):
            cols[name] = [r[3][i] for r in rows]
        return pa.table(arrow_columns(cols, schema), schema=schema)

    def event_table(self, schema: pa.Schema, created_us: int) -> pa.Table:
        rows = self.event_rows
        cols: dict[str, list[Any]] = {
            EVENT_TS: [r[0] for r in rows],
            CREATED_TS: [created_us] * len(rows),
        }
        for name in self.event_fields:
            cols[name] = [r[3][name] for r in rows]
        cols[PARTITION] = [r[1] for r in rows]
        cols[OFFSET] = [r[2] for r in rows]
        return pa.table(arrow_columns(cols, schema), schema=schema)


def format_us(t: int) -> str:
    """An event time for a message; times past what datetime holds are shown as numbers."""
    try:
        return from_micros(t).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{t} us since the epoch"
