"""The Parquet offline store: layout, window replaces, refused writes, atomic commits, GC, pruning.

``OfflineStore.write`` is the one write path (DESIGN.md, "Offline store"): rows land
Hive-partitioned by event date under ``<root>/<project>/<view>/v<version>/date=YYYY-MM-DD/``, every
write becomes visible through one manifest commit, and bad rows write nothing.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.definitions import FeatureView
from featurestore.errors import SchemaMismatchError
from featurestore.offline.table import OfflineTable
from featurestore.offline.writer import OfflineStore
from tests.helpers import BASE_REPO, write_repo

DAY1 = datetime(2026, 1, 7, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)
HOUR = timedelta(hours=1)
UTC_US = pa.timestamp("us", tz="UTC")


def us(value: datetime) -> int:
    """Microseconds since the epoch, exactly (no float arithmetic)."""
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    """BASE_REPO (user_stats keyed by int64 user_id: avg_amount float32, txn_count int64,
    country string), applied once for the module."""
    repo = write_repo(tmp_path_factory.mktemp("offline") / "repo", BASE_REPO)
    with FeatureStore(repo) as store:
        store.apply()
        yield store


@pytest.fixture
def store(applied: FeatureStore, tmp_path: Path) -> FeatureStore:
    """The module's repo with an empty offline store of its own."""
    config = dataclasses.replace(applied.config, offline_store_path=tmp_path / "offline")
    return FeatureStore(config.repo_path, config=config, registry=applied.registry)


@pytest.fixture
def view(applied: FeatureStore) -> FeatureView:
    return applied.snapshot().feature_view("user_stats", 1)


def rows(
    times: list[datetime],
    *,
    users: list[int] | None = None,
    amount: float = 1.0,
    created: datetime | None = DAY1,
) -> pa.Table:
    """user_stats rows, one per time; avg_amount = amount + position, so rows are told apart."""
    n = len(times)
    return pa.table(
        {
            "user_id": pa.array(users or [1] * n, pa.int64()),
            "event_timestamp": pa.array(times, UTC_US),
            "created_timestamp": pa.array([created] * n, UTC_US),
            "avg_amount": pa.array([amount + i for i in range(n)], pa.float32()),
            "txn_count": pa.array(range(n), pa.int64()),
            "country": pa.array(["DE"] * n),
        }
    )


def stored(table: OfflineTable) -> list[tuple[int, datetime, float]]:
    """(user, event time, avg_amount) of every row the newest manifest lists, sorted."""
    out = []
    for f in table.manifest().files:
        data = pq.read_table(table.root / f.path)
        out += zip(
            data.column("user_id").to_pylist(),
            data.column("event_timestamp").to_pylist(),
            data.column("avg_amount").to_pylist(),
            strict=True,
        )
    return sorted(out)


def expected(table: pa.Table) -> list[tuple[int, datetime, float]]:
    return sorted(
        zip(
            table.column("user_id").to_pylist(),
            table.column("event_timestamp").to_pylist(),
            table.column("avg_amount").to_pylist(),
            strict=True,
        )
    )


def parquet_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.glob("**/*.parquet")}


# -- layout ---------------------------------------------------------------------------------------


def test_rows_land_hive_partitioned_by_event_date(store: FeatureStore, view: FeatureView) -> None:
    times = [DAY1 + 23 * HOUR, DAY2, DAY2 + 5 * HOUR, DAY3 + timedelta(microseconds=1), DAY1]
    result = store.offline_store().write(view, 1, rows(times))
    assert (result.view, result.version, result.rows_written) == ("user_stats", 1, 5)
    assert result.files_added == 3
    assert result.manifest.sequence == 1

    root = store.config.offline_store_path / "demo" / "user_stats" / "v1"
    assert store.offline_store().table("user_stats", 1).root == root
    folders = sorted(p.name for p in root.iterdir() if p.name.startswith("date="))
    assert folders == ["date=2026-01-07", "date=2026-01-08", "date=2026-01-09"]
    for f in result.manifest.files:
        assert f.path.startswith(f"date={f.date}/")
        assert f.path.endswith(".parquet")
        data = pq.read_table(root / f.path)
        assert {t.strftime("%Y-%m-%d") for t in data.column("event_timestamp").to_pylist()} == {
            f.date
        }
        assert (f.rows, f.min_ts, f.max_ts) == (
            data.num_rows,
            us(min(data.column("event_timestamp").to_pylist())),
            us(max(data.column("event_timestamp").to_pylist())),
        )
    # Any Hive-aware reader sees the partition column and every row once.
    hive = pq.read_table(root, partitioning="hive")
    assert hive.num_rows == 5
    dates = [str(d) for d in hive.column("date").to_pylist()]
    events = hive.column("event_timestamp").to_pylist()
    assert dates == [e.strftime("%Y-%m-%d") for e in events]
    # Columns: keys, event and created time, features, in the declared types.
    schema = pq.read_schema(root / result.manifest.files[0].path)
    assert schema.names[:3] == ["user_id", "event_timestamp", "created_timestamp"]
    assert schema.field("event_timestamp").type == UTC_US
    assert schema.field("avg_amount").type == pa.float32()
    assert schema.field("txn_count").type == pa.int64()


def test_each_version_has_its_own_folder(store: FeatureStore, view: FeatureView) -> None:
    offline = store.offline_store()
    offline.write(view, 1, rows([DAY1]))
    offline.write(view, 2, rows([DAY1, DAY2]))
    assert stored(offline.table("user_stats", 1)) == expected(rows([DAY1]))
    assert stored(offline.table("user_stats", 2)) == expected(rows([DAY1, DAY2]))
    other = OfflineStore(store.config.offline_store_path, "other_project")
    assert other.table("user_stats", 1).manifest().sequence == 0
    assert other.table("user_stats", 1).files() == []


def test_writes_take_naive_and_string_times_as_utc(store: FeatureStore, view: FeatureView) -> None:
    offline = store.offline_store()
    naive = rows([DAY1]).set_column(
        1, "event_timestamp", pa.array([DAY1.replace(tzinfo=None) + HOUR], pa.timestamp("ns"))
    )
    text = rows([DAY1]).set_column(1, "event_timestamp", pa.array(["2026-01-07T03:00:00+01:00"]))
    no_created = rows([DAY1 + 3 * HOUR]).drop_columns(["created_timestamp"])
    offline.write(view, 1, naive)
    offline.write(view, 1, text)
    offline.write(view, 1, no_created, created_at=DAY2)
    table = offline.table("user_stats", 1)
    events = sorted(t for _, t, _ in stored(table))
    assert events == [DAY1 + HOUR, DAY1 + 2 * HOUR, DAY1 + 3 * HOUR]
    created = [
        pq.read_table(table.root / f.path).column("created_timestamp").to_pylist()
        for f in table.manifest().files
    ]
    assert created[-1] == [DAY2]


# -- window replaces ------------------------------------------------------------------------------


def test_replacing_a_window_twice_leaves_exactly_the_new_rows(
    store: FeatureStore, view: FeatureView
) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    old = rows([DAY1 + 10 * HOUR, DAY2 + HOUR, DAY2 + 20 * HOUR, DAY3 + HOUR], amount=100)
    offline.write(view, 1, old)
    window = (DAY2, DAY3)
    new = rows([DAY2, DAY2 + HOUR, DAY2 + 2 * HOUR], users=[1, 1, 2], amount=200)

    first = offline.write(view, 1, new, window=window)
    assert (first.rows_written, first.rows_replaced) == (3, 2)
    assert first.manifest.operation == "replace"
    outside = [r for r in expected(old) if not DAY2 <= r[1] < DAY3]
    assert stored(table) == sorted(outside + expected(new))

    again = offline.write(view, 1, new, window=window)
    assert (again.rows_written, again.rows_replaced) == (3, 3)
    assert stored(table) == sorted(outside + expected(new))
    assert table.manifest().rows == 5

    # Naive window bounds are UTC; replacing with nothing empties the window.
    emptied = offline.write(
        view, 1, rows([]), window=(DAY2.replace(tzinfo=None), DAY3.replace(tzinfo=None))
    )
    assert emptied.rows_replaced == 3
    assert stored(table) == sorted(outside)


def test_replacing_a_window_that_cuts_a_file_keeps_the_rows_outside(
    store: FeatureStore, view: FeatureView
) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    minutes = [0, 59, 60, 90, 119, 120, 180]  # one file: all on DAY1
    old = rows([DAY1 + timedelta(minutes=m) for m in minutes], amount=10)
    offline.write(view, 1, old)
    window = (DAY1 + timedelta(minutes=60), DAY1 + timedelta(minutes=120))  # [start, end)
    new = rows([DAY1 + timedelta(minutes=75)], amount=500)
    result = offline.write(view, 1, new, window=window)
    assert result.rows_replaced == 3  # minutes 60, 90 and 119
    kept = [r for r in expected(old) if r[1] < window[0] or r[1] >= window[1]]
    assert [r[1] for r in kept] == [DAY1 + timedelta(minutes=m) for m in (0, 59, 120, 180)]
    assert stored(table) == sorted(kept + expected(new))


def test_rewritten_remainders_keep_their_place_in_write_order(
    store: FeatureStore, view: FeatureView
) -> None:
    """A remainder rewritten by a replace is the old write: a later write still wins ties."""
    offline = store.offline_store()
    offline.write(view, 1, rows([DAY1 + HOUR, DAY1 + 5 * HOUR], amount=1))  # seq 1
    offline.write(view, 1, rows([DAY1 + 5 * HOUR], amount=20))  # seq 2: same fact, later write
    offline.write(view, 1, rows([DAY1 + HOUR], amount=3), window=(DAY1, DAY1 + 2 * HOUR))
    entities = pa.table(
        {"user_id": pa.array([1, 1], pa.int64()), "event_timestamp": [DAY1 + HOUR, DAY1 + 6 * HOUR]}
    )
    result = store.get_training_data(entities, features=["user_stats:avg_amount"]).table
    assert result is not None
    assert result.column("avg_amount").to_pylist() == [3.0, 20.0]


def test_rows_outside_the_window_are_refused_and_write_nothing(
    store: FeatureStore, view: FeatureView
) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    offline.write(view, 1, rows([DAY1, DAY2]))
    before = (table.manifest(), parquet_files(table.root))
    for bad in ([DAY2, DAY3], [DAY2 - timedelta(microseconds=1)]):  # end excluded, start included
        with pytest.raises(SchemaMismatchError, match="outside the window"):
            offline.write(view, 1, rows(bad), window=(DAY2, DAY3))
        assert (table.manifest(), parquet_files(table.root)) == before


def test_window_bounds_are_exact_to_the_microsecond(store: FeatureStore, view: FeatureView) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    start = datetime(2040, 3, 3, 15, 15, 39, 27856, tzinfo=UTC)
    just_before = start - timedelta(microseconds=1)
    offline.write(view, 1, rows([just_before, start], amount=1))
    offline.write(view, 1, rows([start], amount=7), window=(start, start + HOUR))
    assert stored(table) == [(1, just_before, 1.0), (1, start, 7.0)]


# -- bad rows -------------------------------------------------------------------------------------


def _with(table: pa.Table, name: str, values: Any) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


BAD_ROWS = {
    "missing feature column": (lambda t: t.drop_columns(["txn_count"]), "txn_count"),
    "missing key column": (lambda t: t.drop_columns(["user_id"]), "user_id"),
    "missing event time": (lambda t: t.drop_columns(["event_timestamp"]), "event_timestamp"),
    "uncastable string": (lambda t: _with(t, "txn_count", pa.array(["1", "many"])), "txn_count"),
    "fraction into int64": (lambda t: _with(t, "txn_count", pa.array([1.0, 1.5])), "txn_count"),
    "string key for int64": (lambda t: _with(t, "user_id", pa.array(["1", "x"])), "user_id"),
    "list into string": (lambda t: _with(t, "country", pa.array([[1], [2]])), "country"),
    "null event time": (
        lambda t: _with(t, "event_timestamp", pa.array([DAY1, None], UTC_US)),
        "event_timestamp",
    ),
    "integer event time": (
        lambda t: _with(t, "event_timestamp", pa.array([1, 2])),
        "event_timestamp",
    ),
    "unparseable event time": (
        lambda t: _with(t, "event_timestamp", pa.array(["2026-01-07", "soon"])),
        "event_timestamp",
    ),
    "mixed zone strings": (
        lambda t: _with(
            t, "event_timestamp", pa.array(["2026-01-07T00:00:00Z", "2026-01-07T00:00:00"])
        ),
        "event_timestamp",
    ),
    "unparseable created time": (
        lambda t: _with(t, "created_timestamp", pa.array(["2026-01-07", "later"])),
        "created_timestamp",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_rows_raise_naming_the_column_and_write_nothing(
    store: FeatureStore, view: FeatureView, case: str
) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    offline.write(view, 1, rows([DAY1]))
    before = (table.manifest(), parquet_files(table.root))
    spoil, column = BAD_ROWS[case]
    for window in (None, (DAY1, DAY3)):
        with pytest.raises(SchemaMismatchError) as caught:
            offline.write(view, 1, spoil(rows([DAY1 + HOUR, DAY2])), window=window)
        assert f"'{column}'" in str(caught.value)
        assert "user_stats@v1" in str(caught.value)
        assert (table.manifest(), parquet_files(table.root)) == before


def test_a_refused_first_write_leaves_no_table(store: FeatureStore, view: FeatureView) -> None:
    offline = store.offline_store()
    with pytest.raises(SchemaMismatchError):
        offline.write(view, 1, rows([DAY1]).drop_columns(["country"]))
    table = offline.table("user_stats", 1)
    assert table.manifest().sequence == 0
    assert not list(table.root.glob("**/*.parquet"))


def test_exact_repeats_within_one_write_keep_only_the_last(
    store: FeatureStore, view: FeatureView
) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    data = rows([DAY1, DAY1, DAY1 + HOUR, DAY1 + 2 * HOUR], users=[1, 1, 2, 3], amount=10)
    result = offline.write(view, 1, data)
    assert result.rows_written == 3
    assert stored(table) == [(1, DAY1, 11.0), (2, DAY1 + HOUR, 12.0), (3, DAY1 + 2 * HOUR, 13.0)]


def test_event_time_ties_within_one_write_keep_what_a_join_would_pick(
    store: FeatureStore, view: FeatureView
) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    created = [DAY1 + HOUR, DAY1 + 2 * HOUR, None, DAY1 + 2 * HOUR, DAY1, None]
    data = rows([DAY1, DAY1, DAY1, DAY1, DAY1 + HOUR, DAY1 + HOUR], users=[1, 1, 1, 1, 2, 2])
    data = data.set_column(2, "created_timestamp", pa.array(created, UTC_US))
    result = offline.write(view, 1, data)
    # user 1: the largest created time wins, the last of equals (row 3, not row 1);
    # user 2: a null created time loses to any created time.
    assert result.rows_written == 2
    assert stored(table) == [(1, DAY1, 4.0), (2, DAY1 + HOUR, 5.0)]
    assert all(f.tie_free for f in table.manifest().files)


def test_only_files_overlapping_another_write_need_a_dedupe() -> None:
    from featurestore.offline.join import needs_dedupe
    from featurestore.offline.table import DataFile

    def f(name: str, lo: int, hi: int, seq: int, tie_free: bool = True) -> DataFile:
        return DataFile(name, "d", 1, lo, hi, seq, tie_free)

    files = [
        f("a", 0, 10, 1),
        f("b", 11, 20, 2),  # touches nothing: a later window
        f("c", 20, 30, 3),  # shares t=20 with b: may tie
        f("d", 40, 50, 4, tie_free=False),  # written before writes reduced ties
        f("e", 60, 70, 5),
        f("f", 65, 66, 5),  # same write as e: already reduced
    ]
    assert sorted(x.path for x in needs_dedupe(files)) == ["b", "c", "d"]


# -- atomic commits -------------------------------------------------------------------------------


def test_readers_see_whole_writes_or_nothing(store: FeatureStore, view: FeatureView) -> None:
    """Two writers commit multi-date batches while a reader polls: every manifest it sees lists
    only files that exist, and holds whole writes only."""
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    per_write, writes_each = 30, 8
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(user: int) -> None:
        try:
            for i in range(writes_each):
                times = [DAY1 + timedelta(hours=2 * k, minutes=i) for k in range(per_write)]
                offline.write(view, 1, rows(times, users=[user] * per_write))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    seen: list[int] = []

    def reader() -> None:
        try:
            last = 0
            while not done.is_set():
                manifest = OfflineTable(table.root).manifest()
                assert manifest.sequence >= last
                last = manifest.sequence
                assert manifest.rows == per_write * manifest.sequence
                assert len({f.date for f in manifest.files}) in (0, 3)
                by_seq: dict[int, int] = {}
                for f in manifest.files:
                    assert (table.root / f.path).exists(), f.path
                    by_seq[f.seq] = by_seq.get(f.seq, 0) + f.rows
                assert all(n == per_write for n in by_seq.values())
                assert sorted(by_seq) == list(range(1, manifest.sequence + 1))
                seen.append(manifest.sequence)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(u,)) for u in (1, 2)]
    polling = threading.Thread(target=reader)
    polling.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    polling.join()
    assert not errors, errors
    assert len(set(seen)) > 2  # the reader really did poll during the writes
    final = table.manifest()
    assert final.sequence == 2 * writes_each
    assert final.rows == 2 * writes_each * per_write
    assert len(stored(table)) == final.rows


# -- garbage collection ---------------------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_replaced_files_are_collected_only_after_the_retention(
    store: FeatureStore, view: FeatureView
) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    offline.write(view, 1, rows([DAY1, DAY2]))
    held = table.manifest()  # a reader that took the manifest before the replace
    offline.write(view, 1, rows([DAY2], amount=9), window=(DAY2, DAY3))
    unreferenced = {f.path for f in held.files} - {f.path for f in table.manifest().files}
    assert len(unreferenced) == 1
    # Within the retention the old reader can still read everything its manifest lists.
    for f in held.files:
        assert pq.read_table(table.root / f.path).num_rows == f.rows

    # Past the retention (here: none), the next commit deletes unreferenced files and old
    # manifests only.
    impatient = OfflineStore(offline.root, offline.project, retention_seconds=0)
    time.sleep(0.01)
    impatient.write(view, 1, rows([DAY3]))
    current = table.manifest()
    assert parquet_files(table.root) == {f.path for f in current.files}
    assert [p.name for p in table.manifests_dir.glob("*.json")] == [f"{current.sequence:010d}.json"]
    assert len(stored(table)) == 3


def test_retention_counts_from_when_a_file_stopped_being_referenced(
    store: FeatureStore, view: FeatureView
) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    offline.write(view, 1, rows([DAY1, DAY2]))
    for path in table.root.glob("date=*/*.parquet"):  # written yesterday, current until now
        _age(path, 86_400)
    held = table.manifest()  # a join starts reading this manifest ...
    offline.write(view, 1, rows([DAY2], amount=9), window=(DAY2, DAY3))  # ... a replace lands
    for f in held.files:  # ... and the join reads its files
        assert (table.root / f.path).exists(), f"{f.path} deleted while a reader holds it"


# -- pruning --------------------------------------------------------------------------------------


def test_files_prune_by_event_time_range(store: FeatureStore, view: FeatureView) -> None:
    offline = store.offline_store()
    table = offline.table("user_stats", 1)
    offline.write(view, 1, rows([DAY1 + 10 * HOUR, DAY1 + 12 * HOUR]))
    offline.write(view, 1, rows([DAY2 + 10 * HOUR, DAY2 + 12 * HOUR, DAY3 + 10 * HOUR]))
    by_date = {f.date: f for f in table.files()}
    assert sorted(by_date) == ["2026-01-07", "2026-01-08", "2026-01-09"]
    day1, day2, day3 = (by_date[d] for d in sorted(by_date))
    assert (day2.min_ts, day2.max_ts) == (us(DAY2 + 10 * HOUR), us(DAY2 + 12 * HOUR))

    def dates(start: datetime | None, end: datetime | None) -> list[str]:
        found = table.files(None if start is None else us(start), None if end is None else us(end))
        return sorted(f.date for f in found)

    assert dates(None, None) == ["2026-01-07", "2026-01-08", "2026-01-09"]
    assert dates(DAY2, DAY3) == ["2026-01-08"]
    assert dates(DAY2 + 11 * HOUR, DAY2 + 11 * HOUR) == ["2026-01-08"]  # inside one file
    assert dates(DAY1 + 12 * HOUR, DAY2 + 10 * HOUR) == ["2026-01-07", "2026-01-08"]  # inclusive
    one_us = timedelta(microseconds=1)
    assert dates(DAY1 + 12 * HOUR + one_us, DAY2 + 10 * HOUR - one_us) == []  # the gap
    assert dates(None, DAY1 + 10 * HOUR) == ["2026-01-07"]
    assert dates(DAY3 + 10 * HOUR, None) == ["2026-01-09"]
    assert dates(DAY3 + 10 * HOUR + one_us, None) == []
    assert dates(None, DAY1) == []
    assert {f.path for f in table.files()} == {day1.path, day2.path, day3.path}
