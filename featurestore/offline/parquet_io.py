"""Parquet in and out of the offline store, checked.

Every file the offline store writes (its tables, training sets) carries page checksums:
a CRC32 of each page's bytes in the page header. Every read of a source or offline file
through pyarrow verifies them where the file has them (files written without checksums
read as before). A file that cannot be read (truncated, not Parquet, a page whose bytes
do not match its checksum) raises ``CorruptFileError`` naming the file and what to do,
never pyarrow's bare error: a dataset read that fails is retried file by file to find
which one, so the check costs nothing until something is wrong.

DuckDB's Parquet reader does not verify page checksums (flipped bytes in a page read as
other values); see docs/materialization.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from featurestore.errors import CorruptFileError

COMPRESSION = "zstd"
# Spark (parquet-mr) reader and writer options: it writes page checksums by default and
# verifies none unless asked; both are set explicitly on every read and write.
SPARK_VERIFY = "parquet.page.verify-checksum.enabled"
SPARK_WRITE = "parquet.page.write-checksum.enabled"
SOURCE_FIX = (
    "Restore the file from where it came from, or remove it, and run the materialization "
    "again; nothing was committed."
)
OFFLINE_FIX = (
    "Restore it from a backup of the offline store, or re-materialize the window it holds "
    "(`featurestore materialize --start ... --end ...`)."
)


def write_table(table: pa.Table, path: str | Path, **options: Any) -> None:
    options.setdefault("compression", COMPRESSION)
    pq.write_table(table, path, write_page_checksum=True, **options)


def writer(path: str | Path, schema: pa.Schema, **options: Any) -> pq.ParquetWriter:
    options.setdefault("compression", COMPRESSION)
    return pq.ParquetWriter(path, schema, write_page_checksum=True, **options)


def file_format() -> ds.ParquetFileFormat:
    """The dataset format that verifies page checksums."""
    options = ds.ParquetFragmentScanOptions(page_checksum_verification=True)
    return ds.ParquetFileFormat(default_fragment_scan_options=options)


def problem(path: str | Path) -> str | None:
    """Why ``path`` is not readable Parquet (footer, pages, checksums), or None if it is.
    Reads one row group at a time."""
    try:
        source = pq.ParquetFile(path, page_checksum_verification=True)
        for i in range(source.num_row_groups):
            source.read_row_group(i)
    except FileNotFoundError:
        return None  # missing is not corrupt: the caller's own error says so
    except (pa.ArrowException, OSError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def corrupt(path: str | Path, why: str, what: str, fix: str) -> CorruptFileError:
    return CorruptFileError(
        f"{what}: {path} is not readable Parquet ({why}). {fix}", path=str(path)
    )


def find_corrupt(files: Sequence[str | Path], what: str, fix: str) -> CorruptFileError | None:
    """The error for the first of ``files`` that is corrupt, or None if every one reads."""
    for path in files:
        why = problem(path)
        if why is not None:
            return corrupt(path, why, what, fix)
    return None


@contextmanager
def checked(files: Sequence[str | Path], what: str, fix: str = SOURCE_FIX) -> Iterator[None]:
    """Turn a failed read of ``files`` into CorruptFileError when one of them is corrupt
    (other errors pass through unchanged)."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        found = find_corrupt(files, what, fix)
        if found is None:
            raise
        raise found from None


def read_table(path: str | Path, what: str, fix: str = SOURCE_FIX, **options: Any) -> pa.Table:
    with checked([path], what, fix):
        return pq.read_table(path, page_checksum_verification=True, **options)


def read_schema(path: str | Path, what: str, fix: str = SOURCE_FIX) -> pa.Schema:
    with checked([path], what, fix):
        return pq.read_schema(path)


def parquet_file(path: str | Path, what: str, fix: str = SOURCE_FIX) -> pq.ParquetFile:
    with checked([path], what, fix):
        return pq.ParquetFile(path, page_checksum_verification=True)


def dataset(files: Sequence[str | Path], what: str, fix: str = SOURCE_FIX, **options: Any) -> Any:
    """A dataset of ``files`` whose scans verify checksums (read it inside ``checked``)."""
    with checked(files, what, fix):
        return ds.dataset([str(f) for f in files], format=file_format(), **options)
