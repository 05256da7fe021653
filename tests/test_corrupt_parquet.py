"""Corrupt Parquet: a flipped byte in a page, a truncated or garbage file, in a source or in
the offline store, is a CorruptFileError naming the file, and nothing is written (real
Parquet files with page checksums, real Redis, the in-process materialization engine)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import CorruptFileError
from featurestore.materialize.job import materialize
from featurestore.offline import parquet_io
from tests.helpers import write_repo

pytestmark = [pytest.mark.services]
UTC_US = pa.timestamp("us", tz="UTC")
_projects = itertools.count()
DEFS = """
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource

user = Entity(name="user", join_key="user_id", dtype=Int64)
src = ParquetSource(name="src", path="data/src", timestamp_field="ts")
stats = FeatureView(
    name="stats",
    entities=[user],
    source=src,
    schema=[Field(name="amount", dtype=Float64), Field(name="txn_count", dtype=Int64)],
    ttl=timedelta(days=30),
)
"""
USERS = 2000
DAY0 = (datetime.now(UTC) - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)


def rows(day: datetime, seed: int) -> pa.Table:
    rng = random.Random(seed)
    return pa.table(
        {
            "user_id": pa.array(range(USERS), pa.int64()),
            "ts": pa.array([day + timedelta(seconds=i) for i in range(USERS)], UTC_US),
            "amount": [rng.uniform(0, 1000) for _ in range(USERS)],
            "txn_count": pa.array([rng.randrange(2**40) for _ in range(USERS)], pa.int64()),
        }
    )


def flip_in_data_page(path: Path, column: str) -> None:
    """Flip bytes in the middle of ``column``'s data pages (row group 0): inside page
    data, not a page header or the footer (offsets from the file's metadata)."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index(column))
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    end = start + chunk.total_compressed_size
    middle = (chunk.data_page_offset + end) // 2
    data = bytearray(path.read_bytes())
    for i in range(middle, middle + 4):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def store(tmp_path: Path, services: Any) -> Iterator[FeatureStore]:
    config = (
        f"project: corrupt{next(_projects)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": config, "defs.py": DEFS})
    with FeatureStore(repo) as s:
        s.apply()
        yield s


def source_file(store: FeatureStore, day: datetime) -> Path:
    folder = store.config.repo_path / "data" / "src" / f"date={day.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "part.parquet"


def state(store: FeatureStore) -> tuple[int, dict[str, list]]:
    """The offline manifest's sequence and every user's online values."""
    online = store.get_online_features(
        [{"user_id": u} for u in range(0, USERS, 4)], features=["stats:amount", "stats:txn_count"]
    ).to_dict()
    return store.offline_store().table("stats", 1).manifest().sequence, online


def test_a_flipped_byte_in_a_source_page_fails_the_run_by_name(store: FeatureStore) -> None:
    good = source_file(store, DAY0)
    pq.write_table(rows(DAY0, 1), good, write_page_checksum=True)
    materialize(store, ["stats"], engine="local")
    before = state(store)
    assert before[0] == 1
    # A second day's file whose txn_count (no expectation checks it) is damaged in a page.
    day1 = DAY0 + timedelta(days=1)
    bad = source_file(store, day1)
    fresh = rows(day1, 2)
    pq.write_table(fresh, bad, write_page_checksum=True, compression="none", use_dictionary=False)
    flip_in_data_page(bad, "txn_count")
    read = pq.read_table(bad)  # without verification: other values, no error
    assert read.column("txn_count") != fresh.column("txn_count")
    assert read.column("amount") == fresh.column("amount")

    with pytest.raises(CorruptFileError) as info:
        materialize(store, ["stats"], engine="local")
    message = str(info.value)
    assert str(bad) in message
    assert "checksum" in message.lower()
    assert "Restore the file" in message
    assert "run the materialization again" in message
    assert info.value.path == str(bad)
    assert state(store) == before  # nothing committed offline, nothing written online
    assert store.registry.runs.records(store.project, "stats")[0].status == "failed"


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_truncated_or_garbage_source_file_is_named(store: FeatureStore, damage: str) -> None:
    pq.write_table(rows(DAY0, 1), source_file(store, DAY0), write_page_checksum=True)
    materialize(store, ["stats"], engine="local")
    before = state(store)
    bad = source_file(store, DAY0 + timedelta(days=1))
    pq.write_table(rows(DAY0 + timedelta(days=1), 2), bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not parquet" * 99)
    with pytest.raises(CorruptFileError) as info:
        materialize(store, ["stats"], engine="local")
    assert str(bad) in str(info.value)
    assert "Restore the file" in str(info.value)
    assert "Traceback" not in str(info.value)
    assert state(store) == before


def test_offline_files_carry_checksums_and_reads_verify_them(store: FeatureStore) -> None:
    view = store.snapshot().feature_view("stats")
    offline = store.offline_store()
    table = rows(DAY0, 1).rename_columns(["user_id", "event_timestamp", "amount", "txn_count"])
    offline.write(view, 1, table)
    [data_file] = offline.table("stats", 1).manifest().files
    path = offline.table("stats", 1).root / data_file.path
    assert pq.read_table(path, page_checksum_verification=True).num_rows == USERS
    flip_in_data_page(path, "amount")
    with pytest.raises(OSError, match="CRC"):  # the writer wrote checksums
        pq.read_table(path, page_checksum_verification=True)
    with pytest.raises(CorruptFileError) as info:
        parquet_io.read_table(path, "offline store file", parquet_io.OFFLINE_FIX)
    assert str(path) in str(info.value)
    # Replacing part of the file's window reads it to keep the rest: verified, so the
    # damage is not rewritten under a fresh checksum, and nothing is committed.
    window = (DAY0, DAY0 + timedelta(seconds=10))
    with pytest.raises(CorruptFileError, match="re-materialize"):
        offline.write(view, 1, table.slice(0, 10), window=window)
    assert offline.table("stats", 1).manifest().sequence == 1
    # A truncated offline file fails a training set (DuckDB) by name, not with DuckDB's error.
    path.write_bytes(path.read_bytes()[:100])
    entities = pa.table(
        {"user_id": pa.array([1], pa.int64()), "event_timestamp": pa.array([DAY0], UTC_US)}
    )
    with pytest.raises(CorruptFileError) as info:
        store.get_training_data(entities, features=["stats:amount"])
    assert str(path) in str(info.value)
