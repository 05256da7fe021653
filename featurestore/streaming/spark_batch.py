"""The batch side of a streaming view: its rows computed on Spark from historical events.

The events come from the view's event log (what the stream consumer accepted and landed)
or from the KafkaSource's ``batch_source`` (history from before the stream, e.g. a
backfill file). Spark shuffles them by entity and sorts each entity's events by
(event time, sequence); each task then runs the very window code the consumer runs
(``featurestore.streaming.windows``), so the two agree on every value: a training set
built from backfilled rows sees what serving would have seen.

Each (entity, event time) gets one row (events at the same time share their windows);
the rows replace the offline table's window [first event, last event] in one commit.
"""

from __future__ import annotations

import functools
import itertools
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from featurestore.definitions import FeatureView, KafkaSource
from featurestore.errors import MaterializationError, SourceNotFoundError
from featurestore.materialize.spark import (
    column_dtype,
    configure,
    read_parquet,
    spark_type,
    stage_files,
    with_date,
)
from featurestore.offline import parquet_io
from featurestore.offline.writer import CREATED_TS, EVENT_TS, offline_schema
from featurestore.streaming.consumer import stream_view
from featurestore.streaming.events import expectation_check
from featurestore.streaming.landing import OFFSET, Landing, arrow_columns, timestamps_as_micros
from featurestore.streaming.windows import WindowAggregator, ordered_rows
from featurestore.times import from_micros, micros

if TYPE_CHECKING:
    from featurestore.store import FeatureStore  # the store calls this module

SEQ = "__seq"
SOURCES = ("log", "source")


def events_frame(
    spark: SparkSession, store: FeatureStore, view: FeatureView, version: int, source: str
) -> DataFrame:
    """The view's events: keys, event_timestamp, its input columns and a sequence."""
    kafka = view.source
    assert isinstance(kafka, KafkaSource)
    if source == "log":
        root = store.offline_store().table(view.name, version).root
        landing = Landing(root, view, kafka)
        files = [str(landing.events.root / f.path) for f in landing.events.manifest().files]
        if not files:
            raise SourceNotFoundError(
                f"{view.name}@v{version} has no event log yet: run `featurestore stream "
                f"{view.name}` first, or backfill --from source."
            )
        df = spark.read.option(parquet_io.SPARK_VERIFY, "true").parquet(*files)
        return df.withColumnRenamed(OFFSET, SEQ)
    if source != "source":
        raise MaterializationError(f"Unknown --from {source!r}; use one of {', '.join(SOURCES)}.")
    batch = kafka.batch_source
    if batch is None:
        raise SourceNotFoundError(
            f"KafkaSource '{kafka.name}' of {view.name} has no batch_source: declare the "
            "Parquet history there, or backfill --from log."
        )
    path = store.config.repo_path / batch.path
    if not path.exists():
        raise SourceNotFoundError(
            f"{view.name}: batch_source '{batch.name}' has no data at {path}. Write the "
            "history there (Hive date= folders of Parquet), or fix its path."
        )
    df = read_parquet(spark, path)
    df = df.withColumnRenamed(kafka.timestamp_field, EVENT_TS).withColumn(
        SEQ, F.monotonically_increasing_id()
    )
    created = batch.created_timestamp_field
    if created:
        # Events at one time arrive in created order (file order after): the later
        # created one is the last, as the offline store's ties are broken.
        tie = Window.partitionBy(*view.join_keys, EVENT_TS).orderBy(
            F.col(created).asc_nulls_first(), F.col(SEQ)
        )
        df = df.withColumn(SEQ, F.row_number().over(tie))
    return df


def compute(
    spark: SparkSession,
    store: FeatureStore,
    view_name: str,
    *,
    source: str = "log",
    created_at: datetime | None = None,
) -> tuple[DataFrame, FeatureView, int]:
    """The view's rows (offline schema) computed from its events, as a DataFrame."""
    view, version, kafka = stream_view(store, view_name)
    configure(spark)
    events = events_frame(spark, store, view, version, source)
    aggregator = WindowAggregator(view)
    keys = view.join_keys
    inputs = [EVENT_TS if c == kafka.timestamp_field else c for c in aggregator.inputs]
    checked = sorted({e.column for e in view.expectations if e.mostly >= 1.0} - set(inputs))
    columns = list(dict.fromkeys([*keys, EVENT_TS, SEQ, *inputs, *checked]))
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise MaterializationError(
            f"{view.name}: the events have no column(s) {', '.join(missing)} (have: "
            f"{', '.join(events.columns)})."
        )
    schema = offline_schema(view)
    out_schema = T.StructType(
        [T.StructField(f.name, spark_type(column_dtype(view, f.name)), True) for f in schema]
    )
    task = functools.partial(
        entity_rows,
        view=view,
        inputs=inputs,
        created_us=micros(created_at or datetime.now(UTC)),
        schema=schema,
    )
    rows = (
        events.select(*columns)
        .where(F.col(EVENT_TS).isNotNull())
        .repartition(*keys)
        .sortWithinPartitions(*keys, EVENT_TS, SEQ)
        .mapInArrow(task, out_schema)
    )
    return rows, view, version


def entity_rows(
    batches: Iterator[pa.RecordBatch],
    *,
    view: FeatureView,
    inputs: list[str],
    created_us: int,
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """Runs on executors: events sorted by (keys, time, seq) -> one row per (entity, time)."""
    aggregator = WindowAggregator(view)
    keys = view.join_keys
    checks = [(e.column, expectation_check(e)) for e in view.expectations if e.mostly >= 1.0]
    out: dict[str, list[Any]] = {f.name: [] for f in schema}
    features = [out[name] for name in aggregator.features]
    key_out = [out[k] for k in keys]

    def events() -> Iterator[tuple[Any, int, int, list[Any]]]:
        for batch in batches:
            cols = timestamps_as_micros(pa.Table.from_batches([batch])).to_pydict()
            key_cols = [cols[k] for k in keys]
            input_cols = [cols[c] for c in inputs]
            times, seqs = cols[EVENT_TS], cols[SEQ]
            for i in range(batch.num_rows):
                key = key_cols[0][i] if len(keys) == 1 else tuple(c[i] for c in key_cols)
                if key is None or (len(keys) > 1 and None in key):
                    continue  # the stream refuses events without an entity key too
                if any(check(cols[column][i]) for column, check in checks):
                    continue  # ... and events that fail the view's expectations
                yield key, times[i], seqs[i], [c[i] for c in input_cols]

    # Events arrive sorted by (keys, time, seq): one entity after another.
    for key, group in itertools.groupby(events(), key=lambda e: e[0]):
        spelled = key if len(keys) > 1 else (key,)
        for time_us, row in ordered_rows(aggregator, ((t, s, v) for _k, t, s, v in group)):
            for column, value in zip(key_out, spelled, strict=True):
                column.append(value)
            out[EVENT_TS].append(time_us)
            out[CREATED_TS].append(created_us)
            for column, value in zip(features, row, strict=True):
                column.append(value)
        if len(out[EVENT_TS]) >= 50_000:
            yield pa.RecordBatch.from_arrays(arrow_columns(out, schema), schema=schema)
            for column in out.values():
                column.clear()
    yield pa.RecordBatch.from_arrays(arrow_columns(out, schema), schema=schema)


def backfill(
    store: FeatureStore,
    view_name: str,
    *,
    source: str = "source",
    session: SparkSession | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Compute the view's rows from historical events and commit them offline, replacing
    the window they cover."""
    from featurestore.offline.spark_engine import session_from_config

    spark = session or session_from_config(store.config)
    t0 = time.perf_counter()
    rows, view, version = compute(spark, store, view_name, source=source)
    label = f"{view.name}@v{version}"
    table = store.offline_store().table(view.name, version)
    staging = table.root / "_staging" / f"backfill-{uuid.uuid4().hex[:8]}"
    try:
        staged = stage_files(with_date(rows), staging)
        bounds = spark.read.parquet(str(staging)).agg(F.min(EVENT_TS), F.max(EVENT_TS)).first()
        if bounds is None or bounds[0] is None:
            progress(f"{label}: no events to backfill from ({source})")
            return {"view": label, "rows": 0}
        low, high = (b.replace(tzinfo=UTC) if b.tzinfo is None else b for b in bounds)
        result = store.offline_store().commit_files(
            view,
            version,
            staged,
            window=(low, from_micros(micros(high) + 1)),
            detail={"backfill": source},
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - t0
    progress(
        f"{label}: {result.rows_written:,} rows from the {source} committed offline "
        f"({result.rows_replaced:,} replaced) in {seconds:.1f}s"
    )
    return {
        "view": label,
        "rows": result.rows_written,
        "replaced": result.rows_replaced,
        "seconds": round(seconds, 2),
    }
