"""Where a stream consumer lands its micro-batches, and where it resumes after a crash.

Each streaming view version has two offline tables:

* its feature table (``<offline>/<project>/<view>/v<N>/``), read by training-data builds
  like any view's: one row per accepted event with the window aggregations as of it
  (plus corrections when a late event changes earlier rows: same keys and event time,
  later created time, so reads pick them);
* its event log (``.../v<N>/_events/``): the accepted events as parsed, with their
  Kafka partition and offset. The batch job recomputes the features from it, and a
  consumer rebuilds its window state from it after a restart or a rebalance.

Every commit to either table records, in the same atomic manifest commit, the next
Kafka offset per partition and the partition's largest accepted event time. That
record, not Kafka's committed offsets, is where a consumer resumes: rows of offsets
already recorded are skipped, so a replay after a crash never duplicates a row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from featurestore.definitions import FeatureView, KafkaSource
from featurestore.offline import parquet_io
from featurestore.offline.table import STREAM, Manifest, OfflineTable
from featurestore.offline.timestamps import UTC_US
from featurestore.offline.writer import CREATED_TS, EVENT_TS, offline_schema, write_files

PARTITION = "_partition"
OFFSET = "_offset"
EVENTS = "_events"


@dataclass
class StreamPosition:
    """Per partition: the next offset to read and the largest accepted event time (us)."""

    offsets: dict[int, int] = field(default_factory=dict)
    max_event_us: dict[int, int] = field(default_factory=dict)
    # When a partition started over (its topic was recreated): logged events landed
    # before that belong to the old topic's offsets.
    epoch_us: dict[int, int] = field(default_factory=dict)
    # A digest of the record just before the next offset (key and value): on restart it
    # tells whether that record is still there, which no offset answer of a broker can.
    digests: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest) -> StreamPosition:
        raw = manifest.detail.get(STREAM) or {}
        return cls(
            {int(p): int(o) for p, o in raw.get("offsets", {}).items()},
            {int(p): int(t) for p, t in raw.get("max_event_us", {}).items()},
            {int(p): int(t) for p, t in raw.get("epoch_us", {}).items()},
            {int(p): str(d) for p, d in raw.get("digests", {}).items()},
        )

    def merged(self, other: StreamPosition) -> StreamPosition:
        return StreamPosition(
            {**self.offsets, **other.offsets},
            {**self.max_event_us, **other.max_event_us},
            {**self.epoch_us, **other.epoch_us},
            {**self.digests, **other.digests},
        )

    def to_detail(self) -> dict[str, Any]:
        return {
            name: {str(p): v for p, v in sorted(getattr(self, name).items())}
            for name in ("offsets", "max_event_us", "epoch_us", "digests")
        }


def record_digest(key: bytes | None, value: bytes | None) -> str:
    """A short digest of a Kafka record's key and value (not a security boundary: it
    tells a record from a different one at the same offset)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(key or b"")
    h.update(b"\x00")
    h.update(value or b"")
    return h.hexdigest()


def events_schema(view: FeatureView, source: KafkaSource) -> pa.Schema:
    """The event log's columns: event_timestamp, created_timestamp, the source's other
    fields, then the Kafka partition and offset."""
    fields = [pa.field(EVENT_TS, UTC_US, nullable=False), pa.field(CREATED_TS, UTC_US)]
    for f in source.schema:
        if f.name != source.timestamp_field:
            fields.append(pa.field(f.name, f.dtype.arrow_type()))
    fields += [pa.field(PARTITION, pa.int32()), pa.field(OFFSET, pa.int64())]
    return pa.schema(fields)


def arrow_columns(cols: dict[str, list[Any]], schema: pa.Schema) -> list[pa.Array]:
    """Python column lists -> arrays of ``schema`` (timestamps given as epoch microseconds)."""
    return [
        pa.array(cols[f.name], pa.int64()).cast(f.type)
        if pa.types.is_timestamp(f.type)
        else pa.array(cols[f.name], f.type)
        for f in schema
    ]


def timestamps_as_micros(table: pa.Table) -> pa.Table:
    """The table with every timestamp column as int64 epoch microseconds (as events carry
    them)."""
    return pa.table(
        [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns],
        names=table.column_names,
    )


class Landing:
    """The two offline tables of one streaming view version."""

    def __init__(self, table_root: Path, view: FeatureView, source: KafkaSource) -> None:
        self.features = OfflineTable(table_root)
        self.events = OfflineTable(table_root / EVENTS)
        self.features_schema = offline_schema(view)
        self.events_schema = events_schema(view, source)

    def positions(self) -> tuple[StreamPosition, StreamPosition]:
        """(features, events): each table's committed position."""
        return StreamPosition.of(self.features.manifest()), StreamPosition.of(
            self.events.manifest()
        )

    def append(self, table: OfflineTable, rows: pa.Table, position: StreamPosition) -> Manifest:
        """Append ``rows`` and advance the table's position in one commit."""
        with table.writer_lock():
            base = table.manifest()
            merged = StreamPosition.of(base).merged(position)
            seq = base.sequence + 1
            # Stream files may hold corrections of one another: never marked tie-free.
            added = write_files(table, rows, seq, tie_free=False)
            return table.commit(
                base,
                list(base.files),
                added,
                operation="stream-append",
                detail={"rows": rows.num_rows, STREAM: merged.to_detail()},
            )

    def load_events(
        self,
        before: dict[int, int],
        since_us: dict[int, int],
        columns: list[str],
        epoch_us: dict[int, int] | None = None,
    ) -> pa.Table:
        """Logged events of the given partitions with offset < ``before[p]``, event time
        > ``since_us[p]`` and landed at or after ``epoch_us[p]``, sorted by (partition,
        event time, offset)."""
        if not before:
            return self.events_schema.empty_table().select(columns)
        low = min(since_us.get(p, -(2**62)) for p in before)
        files = [self.events.root / f.path for f in self.events.files(low + 1, None)]
        if not files:
            return self.events_schema.empty_table().select(columns)
        what, fix = "event log file", parquet_io.OFFLINE_FIX
        dataset = parquet_io.dataset(files, what, fix, schema=self.events_schema)
        ts = ds.field(EVENT_TS)
        wanted = None
        for p, offset in before.items():
            cond = (ds.field(PARTITION) == p) & (ds.field(OFFSET) < offset)
            if p in since_us:
                cond = cond & (ts > pa.scalar(since_us[p], pa.int64()).cast(UTC_US))
            if epoch_us and p in epoch_us:
                landed = pa.scalar(epoch_us[p], pa.int64()).cast(UTC_US)
                cond = cond & (ds.field(CREATED_TS) >= landed)
            wanted = cond if wanted is None else wanted | cond
        with parquet_io.checked(files, what, fix):
            table = dataset.to_table(columns=columns, filter=wanted)
        return table.sort_by([(c, "ascending") for c in (PARTITION, EVENT_TS, OFFSET)])

    def max_event_us(self, partition: int, bound_us: int) -> int | None:
        """The largest logged event time of ``partition`` at or before ``bound_us``: the
        watermark a partition poisoned by an event from the future should have had."""
        files = [self.events.root / f.path for f in self.events.files() if f.min_ts <= bound_us]
        if not files:
            return None
        what, fix = "event log file", parquet_io.OFFLINE_FIX
        dataset = parquet_io.dataset(files, what, fix, schema=self.events_schema)
        bound = pa.scalar(bound_us, pa.int64()).cast(UTC_US)
        cond = (ds.field(PARTITION) == partition) & (ds.field(EVENT_TS) <= bound)
        with parquet_io.checked(files, what, fix):
            times = dataset.to_table(columns=[EVENT_TS], filter=cond).column(EVENT_TS)
        if len(times) == 0:
            return None
        return pc.max(times.cast(pa.int64())).as_py()
