"""Timestamps are UTC, stored as microseconds.

Naive timestamps (no zone) are taken as UTC: that is what Feast does and what
most warehouses export. Strings must be ISO 8601; a column that mixes strings
with and without a zone offset, or holds something unparseable, is refused
with the first bad value, because guessing would shift rows by hours.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import SchemaMismatchError

UTC_US = pa.timestamp("us", tz="UTC")


def to_utc_us(column: pa.ChunkedArray | pa.Array, context: str) -> pa.ChunkedArray:
    """Convert a timestamp, date or ISO-8601 string column to timestamp[us, UTC]."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column], type=column.type)
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            column = pc.assume_timezone(column, "UTC")
        return column.cast(UTC_US, safe=False)
    if pa.types.is_date(kind):
        return column.cast(pa.timestamp("us")).cast(UTC_US)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        for target in (UTC_US, pa.timestamp("us")):
            try:
                parsed = column.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            return to_utc_us(parsed, context)
        raise SchemaMismatchError(
            f"{context} has timestamps that cannot be read: {_first_bad(column)!r}. Use ISO 8601 "
            "('2026-01-07T10:00:00+00:00'), all with a zone offset or all without (then UTC)."
        )
    if pa.types.is_null(kind):
        return pa.chunked_array([pa.nulls(len(column), UTC_US)])
    raise SchemaMismatchError(
        f"{context} is {kind}, not a timestamp. Convert it to a timestamp (naive values are "
        "taken as UTC) or an ISO 8601 string."
    )


def _first_bad(column: pa.ChunkedArray) -> str | None:
    with_zone = None
    for value in column.to_pylist():
        if value is None:
            continue
        for target in (UTC_US, pa.timestamp("us")):
            try:
                pa.array([value]).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            zone = target.tz is not None
            if with_zone is None:
                with_zone = zone
            elif zone != with_zone:
                return value  # mixes values with and without a zone
            break
        else:
            return value
    return None
