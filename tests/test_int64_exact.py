"""Int64 values beyond ±2^53 (hashed ids, nanosecond counters) stay exact on every path:
source -> materialization (offline and online) -> lookup, and training sets on both
engines with their reference profiles (real Parquet, Redis, DuckDB and Spark)."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.materialize.job import materialize
from tests.helpers import write_repo

pytestmark = [pytest.mark.services]
UTC_US = pa.timestamp("us", tz="UTC")
_projects = itertools.count()

DEFS = """
from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, Int64, Model, ParquetSource

account = Entity(name="account", join_key="account_id", dtype=Int64)
src = ParquetSource(name="src", path="data/src", timestamp_field="ts")
ids = FeatureView(
    name="ids",
    entities=[account],
    source=src,
    schema=[Field(name="hashed", dtype=Int64), Field(name="counter_ns", dtype=Int64)],
    ttl=timedelta(days=30),
)
svc = FeatureService(name="svc", features=[ids])
scorer = Model(name="scorer", feature_services=[svc], purpose="fraud", owner="risk")
"""

# The extremes, the first integers float64 cannot hold, and ordinary values.
VALUES = [-(2**63), 2**63 - 1, 2**53 + 1, -(2**53 + 1), 2**62 + 3, 0, 7, -12]
KEYS = [2**63 - 1, -(2**63), 2**53 + 1, 2**53, -(2**53 + 1), 1, 2, 3]
COUNTERS = list(reversed(VALUES))
AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture
def store(tmp_path: Path, services: Any) -> Iterator[FeatureStore]:
    config = (
        f"project: ints{next(_projects)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": config, "defs.py": DEFS})
    with FeatureStore(repo) as s:
        s.apply()
        folder = repo / "data" / "src" / f"date={AT.date().isoformat()}"
        folder.mkdir(parents=True)
        source = pa.table(
            {
                "account_id": pa.array(KEYS, pa.int64()),
                "ts": pa.array([AT] * len(KEYS), UTC_US),
                "hashed": pa.array(VALUES, pa.int64()),
                "counter_ns": pa.array(COUNTERS, pa.int64()),
            }
        )
        pq.write_table(source, folder / "part.parquet")
        yield s


def spine() -> pa.Table:
    return pa.table(
        {
            "account_id": pa.array([*KEYS, 99], pa.int64()),
            "event_timestamp": pa.array([AT + timedelta(minutes=1)] * (len(KEYS) + 1), UTC_US),
        }
    )


def assert_exact(store: FeatureStore, engine: Any) -> pa.Table:
    """Offline rows, online lookups and a training set (with its profile) hold every value
    exactly; returns the training set."""
    table = store.offline_store().table("ids", 1)
    offline = pa.concat_tables(pq.read_table(table.root / f.path) for f in table.manifest().files)
    columns = [offline.column(c).to_pylist() for c in ("account_id", "hashed", "counter_ns")]
    got = {key: (hashed, counter) for key, hashed, counter in zip(*columns, strict=True)}
    assert got == dict(zip(KEYS, zip(VALUES, COUNTERS, strict=True), strict=True))
    online = store.get_online_features(
        [{"account_id": k} for k in KEYS], features=["ids:hashed", "ids:counter_ns"]
    ).to_dict()
    assert online["hashed"] == VALUES
    assert online["counter_ns"] == COUNTERS
    training = store.get_training_data(spine(), model="scorer", engine=engine)
    result = training.table
    assert result is not None
    assert result.schema.field("hashed").type == pa.int64()
    assert result.column("hashed").to_pylist() == [*VALUES, None]
    assert result.column("counter_ns").to_pylist() == [*COUNTERS, None]
    profile = store.registry.drift.profiles(store.project, training.record.id)["ids@v1:hashed"]
    assert (profile["min"], profile["max"]) == (-(2**63), 2**63 - 1)
    assert all(type(e) is int for e in profile["edges"])
    assert set(profile["edges"]) <= set(VALUES)
    assert sum(profile["fractions"]) == pytest.approx(1.0)
    return result


def test_large_int64_values_are_exact_in_process_and_duckdb(store: FeatureStore) -> None:
    [run] = materialize(store, ["ids"], engine="local")
    assert run.record.rows_offline == len(KEYS)
    assert_exact(store, "duckdb")


@pytest.mark.slow
def test_large_int64_values_are_exact_with_spark(
    store: FeatureStore, spark: Any, tmp_path: Path
) -> None:
    """Spark materializes and joins; the training set equals DuckDB's, value for value."""
    from featurestore.offline.spark_engine import SparkEngine

    [run] = materialize(store, ["ids"], session=spark)
    assert run.record.rows_offline == len(KEYS)
    # Spark's offline files carry page checksums too: a damaged copy fails verification.
    table = store.offline_store().table("ids", 1)
    damaged = tmp_path / "damaged.parquet"
    data = bytearray((table.root / table.manifest().files[0].path).read_bytes())
    chunk = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(0).column(1)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data[start + chunk.total_compressed_size - 2] ^= 0xFF  # the last page's last bytes
    damaged.write_bytes(bytes(data))
    with pytest.raises(OSError, match="CRC"):
        pq.read_table(damaged, page_checksum_verification=True)
    sparked = assert_exact(store, SparkEngine(spark))
    duck = store.get_training_data(spine(), model="scorer", engine="duckdb").table
    assert sparked.equals(duck)
