"""Local backfill of batch views: source Parquet -> offline store (and online store).

A single-machine stand-in for the Spark materialization job, for the demo and
for tests: it reads each batch view's ParquetSource (the whole source, or the
event-time window given), maps the source's timestamp fields to
``event_timestamp`` / ``created_timestamp``, and replaces that window of the
view version's offline data through the one offline write path. It runs no
transformation and no validation; ``featurestore materialize`` does.
With ``--online`` it also writes each entity's latest row to Redis through the
online store's event-time-monotonic writer. Streaming views (KafkaSource) are
skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from featurestore.definitions import FeatureView, ParquetSource
from featurestore.offline import parquet_io
from featurestore.offline.timestamps import to_utc_us
from featurestore.offline.writer import CREATED_TS, EVENT_TS, WriteResult, last_per_group
from featurestore.online.writer import WriteStats
from featurestore.store import FeatureStore


def read_source(
    source: ParquetSource, repo: Path, start: datetime | None, end: datetime | None
) -> pa.Table:
    path = Path(source.path) if Path(source.path).is_absolute() else repo / source.path
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    what = f"source '{source.name}' file"
    fix = "Restore the file or remove it, and run the backfill again; nothing was committed."
    with parquet_io.checked(files, what, fix):
        dataset = ds.dataset(path, format=parquet_io.file_format(), partitioning="hive")
        table = dataset.to_table()
    ts = to_utc_us(table.column(source.timestamp_field), f"{source.name}.{source.timestamp_field}")
    mask = None
    if start is not None:
        mask = pc.greater_equal(ts, pa.scalar(start, ts.type))
    if end is not None:
        upper = pc.less(ts, pa.scalar(end, ts.type))
        mask = upper if mask is None else pc.and_(mask, upper)
    table = table.set_column(
        table.column_names.index(source.timestamp_field), source.timestamp_field, ts
    )
    return table if mask is None else table.filter(mask)


def backfill_view(
    store: FeatureStore,
    view: FeatureView,
    version: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> WriteResult | None:
    source = view.source
    if not isinstance(source, ParquetSource):
        return None
    rows = read_source(source, store.config.repo_path, start, end)
    renames = {source.timestamp_field: EVENT_TS}
    if source.created_timestamp_field:
        renames[source.created_timestamp_field] = CREATED_TS
    rows = rows.rename_columns([renames.get(c, c) for c in rows.column_names])
    if rows.num_rows == 0:
        return None
    ts = rows.column(EVENT_TS)
    window_start = start or pc.min(ts).as_py()
    window_end = end or pc.max(ts).as_py() + timedelta(microseconds=1)
    return store.offline_store().write(view, version, rows, window=(window_start, window_end))


def push_online(store: FeatureStore, view: FeatureView, version: int) -> WriteStats:
    """Each entity's latest offline row (as a point-in-time read would pick it) -> Redis."""
    from featurestore.online.layout import ViewLayout

    table = store.offline_store().table(view.name, version)
    files = [str(table.root / f.path) for f in table.manifest().files]
    if not files:
        return WriteStats()
    with parquet_io.checked(files, "offline store file", parquet_io.OFFLINE_FIX):
        rows = parquet_io.dataset(files, "offline store file", parquet_io.OFFLINE_FIX).to_table()
    latest = last_per_group(rows, [e.join_key for e in view.resolved_entities()])
    layout = ViewLayout.from_view(store.project, view, version)
    return store.online_writer().write_table(layout, latest)


def backfill(
    store: FeatureStore,
    views: list[str] | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    online: bool = False,
) -> dict[str, int]:
    """Backfill the latest version of each named (default: every batch) view."""
    snapshot = store.snapshot()
    names = views or snapshot.stored_views()
    written: dict[str, int] = {}
    for name in names:
        version = snapshot.latest_version(name)
        view = snapshot.feature_view(name, version)
        result = backfill_view(store, view, version, start=start, end=end)
        if result is None:
            progress(f"{name}@v{version}: skipped (streaming source or no rows)")
            continue
        written[f"{name}@v{version}"] = result.rows_written
        progress(
            f"{name}@v{version}: {result.rows_written:,} rows written offline "
            f"({result.rows_replaced:,} replaced), manifest {result.manifest.sequence}"
        )
        if online:
            stats = push_online(store, view, version)
            progress(
                f"{name}@v{version}: {stats.written:,} entities written online "
                f"({stats.skipped_expired:,} past the TTL, {stats.skipped_older:,} already newer)"
            )
    return written
