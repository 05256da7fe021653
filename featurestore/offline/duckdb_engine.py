"""Point-in-time joins with DuckDB: embedded, ASOF joins, bounded memory.

Per view, exact ties on (keys, event time) are first reduced to the row with
the largest created time (then the latest write), because ASOF picks an
arbitrary row among equal times. The ASOF join then finds the latest row at
or before each entity time, and the TTL bound nulls matches that are too
old: if the latest row is older than t - ttl, no row lies in [t - ttl, t].
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from featurestore.offline import parquet_io
from featurestore.offline.join import ROW, TS, JoinRequest, ViewJoin
from featurestore.offline.writer import CREATED_TS, EVENT_TS


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine:
    """The default engine. ``memory_limit`` (e.g. ``"2GB"``) bounds DuckDB's memory;
    beyond it, joins spill to ``temp_directory``."""

    name = "duckdb"

    def __init__(
        self,
        *,
        memory_limit: str | None = None,
        temp_directory: str | None = None,
        threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.memory_limit = memory_limit
        self.temp_directory = temp_directory
        self.threads = threads
        self.progress = progress

    def _connect(self) -> duckdb.DuckDBPyConnection:
        # Times are compared as epoch microseconds: exact, and free of DuckDB's time-zone
        # handling (which needs the ICU extension, not always installable offline).
        conn = duckdb.connect()
        if self.memory_limit:
            conn.execute(f"SET memory_limit = {_lit(self.memory_limit)}")
        temp = self.temp_directory or os.path.join(tempfile.gettempdir(), "featurestore-duckdb")
        conn.execute(f"SET temp_directory = {_lit(temp)}")
        conn.execute("SET preserve_insertion_order = false")
        if self.threads:
            conn.execute(f"SET threads = {int(self.threads)}")
        if self.progress:  # DuckDB prints a bar for queries running over ~2 s
            conn.execute("SET enable_progress_bar = true")
            conn.execute("SET enable_progress_bar_print = true")
        return conn

    def join(self, request: JoinRequest) -> pa.Table:
        conn = self._connect()
        try:
            with _named_corrupt_file(request):
                features = conn.sql(self._prepare(conn, request)).to_arrow_table()
        finally:
            conn.close()
        return request.assemble(features)

    def join_to_parquet(self, request: JoinRequest, path: Path, batch_rows: int = 200_000) -> int:
        """Stream the result to one Parquet file, batch by batch, in input order."""
        conn = self._connect()
        writer = None
        offset = 0
        try:
            with _named_corrupt_file(request):
                reader = conn.sql(self._prepare(conn, request)).to_arrow_reader(batch_rows)
                for batch in reader:
                    part = request.assemble(pa.Table.from_batches([batch]), offset)
                    if writer is None:
                        writer = parquet_io.writer(path, part.schema)
                    writer.write_table(part)
                    offset += part.num_rows
        finally:
            if writer is not None:
                writer.close()
            conn.close()
        return offset

    def _prepare(self, conn: duckdb.DuckDBPyConnection, request: JoinRequest) -> str:
        """Register the keys and times (never the other input columns: DuckDB's names are
        case-insensitive) and return the query: row number and features, in row order."""
        conn.register(
            "entities", _with_micros(request.entities.select([ROW, TS, *request.join_keys]))
        )
        return _join_sql(request, [ROW]) + f" ORDER BY e.{_q(ROW)}"


@contextmanager
def _named_corrupt_file(request: JoinRequest) -> Iterator[None]:
    """DuckDB's error for an unreadable offline file, as CorruptFileError naming it (found
    with pyarrow, which also checks page checksums; DuckDB does not)."""
    try:
        yield
    except duckdb.Error:
        files = [path for view in request.views for path, _seq in view.files]
        found = parquet_io.find_corrupt(files, "offline store file", parquet_io.OFFLINE_FIX)
        if found is None:
            raise
        raise found from None


def _with_micros(entities: pa.Table) -> pa.Table:
    index = entities.column_names.index(TS)
    return entities.set_column(index, TS, entities.column(TS).cast(pa.int64()))


def _source_sql(view: ViewJoin) -> str:
    """The view's rows, one per (keys, event time): the largest created time, then latest
    write. Only files that may hold ties go through the (costly) window."""
    cols = [*view.join_keys, EVENT_TS, CREATED_TS, *view.features]
    select = ", ".join(_q(c) for c in cols)
    timed = f"{select}, epoch_us({_q(EVENT_TS)}) AS __t"
    if not view.files:
        # No data yet: an empty relation with the right columns and types.
        typed = ", ".join(
            f"CAST(NULL AS {_duck_type(view.schema.field(c).type)}) AS {_q(c)}" for c in cols
        )
        return f"SELECT {typed}, CAST(NULL AS BIGINT) AS __t WHERE false"
    clean = [p for p, _ in view.files if p not in view.dedupe_files]
    tied = [(p, seq) for p, seq in view.files if p in view.dedupe_files]
    parts = []
    if clean:  # no row here ties with another: no window needed
        parts.append(f"SELECT {timed} FROM read_parquet([{', '.join(map(_lit, clean))}])")
    if tied:
        by_seq: dict[int, list[str]] = {}
        for path, seq in tied:
            by_seq.setdefault(seq, []).append(path)
        union = " UNION ALL ".join(
            f"SELECT {select}, {seq} AS __seq FROM read_parquet([{', '.join(map(_lit, ps))}])"
            for seq, ps in sorted(by_seq.items())
        )
        keys = ", ".join(_q(k) for k in [*view.join_keys, EVENT_TS])
        parts.append(
            f"SELECT {timed} FROM ({union}) QUALIFY row_number() OVER (PARTITION BY {keys} "
            f"ORDER BY {_q(CREATED_TS)} DESC NULLS LAST, __seq DESC) = 1"
        )
    return " UNION ALL ".join(parts)


def _join_sql(request: JoinRequest, entity_columns: list[str]) -> str:
    ctes = []
    joins = []
    selects = [f"e.{_q(c)}" for c in entity_columns]
    for i, view in enumerate(request.views):
        alias = f"f{i}"
        ctes.append(f"{alias} AS ({_source_sql(view)})")
        on = " AND ".join(f"e.{_q(k)} = {alias}.{_q(k)}" for k in view.join_keys)
        joins.append(f"ASOF LEFT JOIN {alias} ON {on} AND e.{_q(TS)} >= {alias}.__t")
        fresh = "TRUE" if view.ttl_us is None else f"{alias}.__t >= e.{_q(TS)} - {int(view.ttl_us)}"
        for feature, name in zip(view.features, view.output_names, strict=True):
            selects.append(f"CASE WHEN {fresh} THEN {alias}.{_q(feature)} END AS {_q(name)}")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM entities e {' '.join(joins)}"


def _duck_type(dtype: pa.DataType) -> str:
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMPTZ"
    if pa.types.is_list(dtype):
        return "FLOAT[]"
    return {
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.string(): "VARCHAR",
        pa.binary(): "BLOB",
        pa.bool_(): "BOOLEAN",
    }[dtype]
