"""The example data generator: its data matches the example repo's definitions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from featurestore.config import load_config
from featurestore.definitions import KafkaSource, OnDemandFeatureView, ParquetSource
from featurestore.repo import load_repo
from pipelines.generate_data import GeneratorSettings, generate, produce_events
from tests.conftest import Services

SMALL = GeneratorSettings(
    users=300,
    merchants=40,
    days=5,
    transactions=5_000,
    seed=3,
    end=datetime(2026, 1, 10, tzinfo=UTC),
)


def _read(path: Path) -> pa.Table:
    return ds.dataset(path, format="parquet", partitioning="hive").to_table()


@pytest.fixture
def generated(example_repo: Path) -> Path:
    generate(load_config(example_repo), SMALL)
    return example_repo


def test_sources_have_every_column_the_views_need_with_their_dtypes(generated: Path) -> None:
    contents = load_repo(generated)
    labels = pq.read_schema(generated / "data" / "labels.parquet")
    for view in contents.feature_views.values():
        if isinstance(view, OnDemandFeatureView):
            # Computed, not stored: a training set takes its request fields from the
            # entity rows, which the labels file is.
            assert view.request_fields, view.name
            for f in view.request_fields:
                assert labels.field(f.name).type == f.dtype.arrow_type(), (view.name, f.name)
            continue
        source = view.source
        parquet = source.batch_source if isinstance(source, KafkaSource) else source
        assert isinstance(parquet, ParquetSource)
        table = _read(generated / parquet.path)
        schema = table.schema
        expected = {e.join_key: e.dtype for e in view.resolved_entities()}
        if isinstance(source, KafkaSource):
            expected |= {f.name: f.dtype for f in source.schema}
        else:
            expected |= {f.name: f.dtype for f in view.schema}
        for column, dtype in expected.items():
            assert schema.field(column).type == dtype.arrow_type(), (view.name, column)
        assert schema.field(parquet.timestamp_field).type == pa.timestamp("us", tz="UTC")
        if parquet.created_timestamp_field:
            assert schema.field(parquet.created_timestamp_field).type == pa.timestamp(
                "us", tz="UTC"
            )


def test_sizes_partitions_and_time_range(generated: Path) -> None:
    root = generated / "data" / "sources"
    transactions = _read(root / "transactions")
    assert transactions.num_rows == SMALL.transactions
    assert _read(root / "merchant_stats").num_rows == SMALL.merchants * SMALL.days
    profiles = _read(root / "user_profile")
    assert set(profiles["user_id"].to_pylist()) == set(range(1, SMALL.users + 1))
    partitions = sorted(p.name for p in (root / "transactions").iterdir())
    assert partitions == [f"date=2026-01-0{d}" for d in range(5, 10)]
    times = transactions["event_timestamp"].to_pylist()
    assert min(times) >= datetime(2026, 1, 5, tzinfo=UTC)
    assert max(times) < datetime(2026, 1, 10, tzinfo=UTC)
    # Every row sits in the partition of its own date.
    for row in transactions.slice(0, 200).to_pylist():
        assert row["date"] == row["event_timestamp"].date().isoformat()
    # Ties on event time exist only where created_timestamp breaks them.
    assert all(
        c >= e
        for e, c in zip(
            profiles["event_timestamp"].to_pylist(),
            profiles["created_timestamp"].to_pylist(),
            strict=True,
        )
    )


def test_same_seed_same_rows_and_a_rerun_replaces_not_appends(example_repo: Path) -> None:
    config = load_config(example_repo)
    generate(config, SMALL)
    first = _read(example_repo / "data/sources/transactions").sort_by("transaction_id")
    generate(config, SMALL)
    second = _read(example_repo / "data/sources/transactions").sort_by("transaction_id")
    assert second.num_rows == SMALL.transactions
    assert first.equals(second)
    leftovers = [
        p.name for p in (example_repo / "data/sources").iterdir() if p.name.startswith(".")
    ]
    assert leftovers == []


@pytest.mark.services
def test_kafka_events_match_the_stream_schema(example_repo: Path, services: Services) -> None:
    from kafka import KafkaConsumer, TopicPartition

    (example_repo / "featurestore.yaml").write_text(
        (example_repo / "featurestore.yaml")
        .read_text()
        .replace("${FEATURESTORE_KAFKA:-127.0.0.1:9092}", services.kafka_bootstrap)
    )
    config = load_config(example_repo)
    topic = "card_transactions_test"
    assert produce_events(config, SMALL, 500, topic=topic, partitions=2) == 500
    consumer = KafkaConsumer(bootstrap_servers=services.kafka_bootstrap, consumer_timeout_ms=3000)
    partitions = [TopicPartition(topic, p) for p in (0, 1)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    events = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    assert len(events) == 500
    source = load_repo(example_repo).sources["transactions_stream"]
    assert isinstance(source, KafkaSource)
    names = {f.name for f in source.schema}
    for event in events:
        assert set(event) == names
        assert isinstance(event["user_id"], int)
        assert 1 <= event["user_id"] <= SMALL.users
        assert isinstance(event["amount"], float)
        assert datetime.fromisoformat(event["event_timestamp"]).tzinfo is not None


def test_spark_reads_the_sources_with_the_declared_types(generated: Path, spark: Any) -> None:
    """Batch jobs read these files with Spark: same rows, UTC timestamps, partition pruning."""
    from pyspark.sql import functions as F

    path = str(generated / "data/sources/transactions")
    df = spark.read.parquet(path)
    assert df.count() == SMALL.transactions
    types = dict(df.dtypes)
    assert (types["user_id"], types["amount"], types["event_timestamp"]) == (
        "bigint",
        "double",
        "timestamp",
    )
    one_day = df.where(F.col("date") == "2026-01-07")
    expected = _read(generated / "data/sources/transactions/date=2026-01-07").num_rows
    assert one_day.count() == expected > 0
    day = one_day.agg(F.date_format(F.min("event_timestamp"), "yyyy-MM-dd")).first()[0]
    assert day == "2026-01-07"  # the session reads UTC
