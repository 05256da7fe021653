"""What the materialization job runs on Spark's executors, kept light to import.

Each Python worker imports this module to run a task: it pulls in pyarrow and the
online writer (redis), not the registry, the repo loader or pyspark's SQL layer, so
workers start quickly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from featurestore.errors import TransformationError
from featurestore.offline.writer import CREATED_TS
from featurestore.online.layout import ViewLayout


def apply_transformation(
    batches: Iterator[pa.RecordBatch],
    *,
    transformation: Callable[[pa.Table], pa.Table],
    renames: dict[str, str],
    schema: pa.Schema,
    created_us: int,
    label: str,
) -> Iterator[pa.RecordBatch]:
    """Runs on executors: the user's function on each Arrow batch, conformed to the view."""
    name = getattr(transformation, "__name__", "transformation")
    for batch in batches:
        try:
            out = transformation(pa.Table.from_batches([batch]))
        except Exception as exc:
            raise TransformationError(
                f"{label}: transformation '{name}' raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(out, pa.Table):
            raise TransformationError(
                f"{label}: transformation '{name}' returned {type(out).__name__}; it must "
                "return a pyarrow.Table."
            )
        out = out.rename_columns([renames.get(c, c) for c in out.column_names])
        if CREATED_TS not in out.column_names:
            stamp = pa.array([created_us] * out.num_rows, pa.int64())
            out = out.append_column(CREATED_TS, stamp.cast(schema.field(CREATED_TS).type))
        columns = []
        for f in schema:
            if f.name not in out.column_names:
                raise TransformationError(
                    f"{label}: transformation '{name}' returned no column '{f.name}' "
                    f"(returned: {', '.join(out.column_names)})."
                )
            try:
                columns.append(out.column(f.name).cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise TransformationError(
                    f"{label}: transformation '{name}' returned column '{f.name}' as "
                    f"{out.column(f.name).type}, which does not convert to {f.type} ({exc})."
                ) from exc
        yield from pa.table(columns, schema=schema).to_batches()


def write_partition(
    batches: Iterator[pa.RecordBatch], *, redis_url: str, cluster: bool, layout: ViewLayout
) -> Iterator[pa.RecordBatch]:
    """Runs on executors: one online store (one connection per node) per partition,
    pipelined batches."""
    from featurestore.online.store import open_online_store

    store = open_online_store(redis_url, cluster=cluster)
    written = older = expired = 0
    try:
        for batch in batches:
            stats = store.write_table(layout, pa.Table.from_batches([batch]))
            written += stats.written
            older += stats.skipped_older
            expired += stats.skipped_expired
    finally:
        store.close()
    yield pa.RecordBatch.from_pydict({"written": [written], "older": [older], "expired": [expired]})


def count_repeats(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Runs on executors: how many values of the task's one column repeat (after a sort)."""
    import numpy as np

    parts = [b.column(0).to_numpy() for b in batches]
    values = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
    yield pa.RecordBatch.from_pydict({"repeats": [int((values[1:] == values[:-1]).sum())]})


def file_info(uri: str) -> dict[str, Any]:
    path = uri.removeprefix("file://").removeprefix("file:")
    try:
        mtime = datetime.fromtimestamp(os.stat(path).st_mtime, UTC).isoformat()
    except OSError:
        mtime = None
    return {"path": path, "mtime": mtime}
