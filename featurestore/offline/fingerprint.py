"""A content fingerprint of a table: rows, order, values and column types, nothing else.

The same rows give the same fingerprint however they are chunked, whether they were held
in memory or read back from Parquet, and on any installation (any pyarrow version): so a
rebuilt or exported training set can be checked against the one recorded.

Not a hash of Arrow IPC bytes: those depend on batch boundaries, on whether an array
without nulls carries a validity bitmap, and on whatever bytes sit under null slots.
Instead every column is taken apart into plain streams (validity, fixed-width values
with nulls as zero, lengths, string bytes, list items, recursively), each hashed on its
own across batches, and the fingerprint is a SHA-256 over the canonical schema, the row
count and those streams' digests. ``string`` and ``large_string`` (likewise binary) and
dictionary-encoded columns count as their plain type: Parquet may hand either back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ALGORITHM = "sha256/fs-content-1"  # bump if the canonical form ever changes


def canonical_type(dtype: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(dtype):
        return canonical_type(dtype.value_type)
    if pa.types.is_large_string(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype):
        return pa.binary()
    if pa.types.is_large_list(dtype) or pa.types.is_list(dtype):
        return pa.list_(canonical_type(dtype.value_type))
    return dtype


class ContentDigest:
    """Fed batch by batch (``update``), then ``hexdigest()``; see the module docstring."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.types = [canonical_type(f.type) for f in schema]
        self.rows = 0
        self._streams: dict[str, Any] = {}  # stream -> sha256

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.rows += batch.num_rows
        for i, dtype in enumerate(self.types):
            column = batch.column(i)
            chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
            for chunk in chunks:
                if pa.types.is_dictionary(chunk.type):
                    chunk = chunk.dictionary_decode()
                self._array(str(i), chunk.cast(dtype) if chunk.type != dtype else chunk)

    def hexdigest(self) -> str:
        final = hashlib.sha256(ALGORITHM.encode())
        for field, dtype in zip(self.schema, self.types, strict=True):
            final.update(f"{field.name}\x00{dtype}\x00".encode())
        final.update(str(self.rows).encode())
        for name in sorted(self._streams):
            final.update(f"{name}={self._streams[name].hexdigest()};".encode())
        return final.hexdigest()

    def _feed(self, stream: str, data: bytes) -> None:
        digest = self._streams.get(stream)
        if digest is None:
            digest = self._streams[stream] = hashlib.sha256()
        digest.update(data)

    def _array(self, path: str, array: pa.Array) -> None:
        dtype = array.type
        self._feed(path + ".valid", _numpy(pc.is_valid(array), np.bool_))
        if pa.types.is_string(dtype) or pa.types.is_binary(dtype):
            filled = pc.fill_null(array, pa.scalar(b"" if pa.types.is_binary(dtype) else "", dtype))
            self._feed(path + ".len", _numpy(pc.binary_length(filled), np.int64))
            offsets = np.frombuffer(filled.buffers()[1], np.int32)
            start, end = offsets[filled.offset], offsets[filled.offset + len(filled)]
            data = filled.buffers()[2]
            self._feed(path + ".data", b"" if data is None else data.to_pybytes()[start:end])
        elif pa.types.is_list(dtype):
            lengths = pc.fill_null(pc.list_value_length(array), 0)
            self._feed(path + ".len", _numpy(lengths, np.int64))
            self._array(path + ".item", pc.list_flatten(array))
        elif pa.types.is_timestamp(dtype) or pa.types.is_date(dtype) or pa.types.is_time(dtype):
            width = pa.int32() if dtype.bit_width == 32 else pa.int64()
            self._array_fixed(path, array.cast(width))
        elif (
            pa.types.is_boolean(dtype) or pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
        ):
            self._array_fixed(path, array)
        else:  # decimals, structs...: not feature types; their Python values, in order
            self._feed(path + ".py", repr(array.to_pylist()).encode())

    def _array_fixed(self, path: str, array: pa.Array) -> None:
        zero = pa.scalar(False if pa.types.is_boolean(array.type) else 0, array.type)
        values = pc.fill_null(array, zero)
        self._feed(path + ".values", _numpy(values, values.type.to_pandas_dtype()))


def _numpy(array: pa.Array, dtype: Any) -> bytes:
    # Little-endian whatever the machine, so two installations agree.
    out = np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)
    return out.astype(out.dtype.newbyteorder("<"), copy=False).tobytes()


def fingerprint_batches(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> str:
    digest = ContentDigest(schema)
    for batch in batches:
        digest.update(batch)
    return digest.hexdigest()


def fingerprint_of_table(table: pa.Table) -> str:
    return fingerprint_batches(table.schema, table.to_batches())


def fingerprint_of_file(path: Path, what: str, fix: str) -> str:
    """The fingerprint of a Parquet file's table, read batch by batch (checked pages)."""
    from featurestore.offline.parquet_io import checked, parquet_file

    source = parquet_file(path, what, fix)
    with checked([path], what, fix):  # a damaged page: CorruptFileError naming the file
        return fingerprint_batches(source.schema_arrow, source.iter_batches(batch_size=65_536))
