"""Parse and check one Kafka event: JSON against the source schema, then the view's
expectations. A bad event gets a reason (it goes to the dead-letter topic), never an
exception: the consumer keeps going.

JSON types per dtype: integers for Int32/Int64 (no fractions, no booleans); numbers for
Float32/Float64; strings for String; true/false for Bool; base64 strings for Bytes; a
list of numbers for Array(Float32); for UnixTimestamp an ISO-8601 string (no zone
means UTC) or a number of seconds since the epoch. A missing field is null.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from featurestore.definitions import FeatureView, KafkaSource
from featurestore.definitions.expectations import Expectation
from featurestore.times import micros

Converter = Callable[[Any], Any]
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


class BadEvent(ValueError):
    """Why an event was refused (the dead letter's reason)."""


def _int(bounds: tuple[int, int]) -> Converter:
    lo, hi = bounds

    def convert(v: Any) -> int:
        if type(v) is not int:
            raise BadEvent(f"expected an integer, got {_kind(v)}")
        if not lo <= v <= hi:
            raise BadEvent(f"{v} is out of range")
        return v

    return convert


def _float(v: Any) -> float:
    if type(v) is float:
        return v
    if type(v) is int:
        return float(v)
    raise BadEvent(f"expected a number, got {_kind(v)}")


def _str(v: Any) -> str:
    if type(v) is not str:
        raise BadEvent(f"expected a string, got {_kind(v)}")
    return v


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise BadEvent(f"expected true or false, got {_kind(v)}")
    return v


def _bytes(v: Any) -> bytes:
    try:
        return base64.b64decode(_str(v), validate=True)
    except binascii.Error as exc:
        raise BadEvent("expected a base64 string") from exc


def _floats(v: Any) -> list[float]:
    if type(v) is not list:
        raise BadEvent(f"expected a list of numbers, got {_kind(v)}")
    return [_float(x) for x in v]


def parse_time_us(v: Any) -> int:
    """ISO-8601 (no zone: UTC) or epoch seconds -> microseconds since the epoch."""
    if type(v) is str:
        try:
            ts = datetime.fromisoformat(v)
        except ValueError:
            raise BadEvent(f"'{v[:40]}' is not an ISO-8601 time") from None
        return micros(ts)  # no zone: UTC
    if type(v) in (int, float):
        if not -1e11 < v < 1e11:
            raise BadEvent(f"{v} is not epoch seconds (milliseconds? divide by 1000)")
        return round(v * 1_000_000) if type(v) is float else v * 1_000_000
    raise BadEvent(f"expected an ISO-8601 string or epoch seconds, got {_kind(v)}")


CONVERTERS: dict[str, Converter] = {
    "int32": _int(INT32),
    "int64": _int(INT64),
    "float32": _float,
    "float64": _float,
    "string": _str,
    "bool": _bool,
    "bytes": _bytes,
    "timestamp": parse_time_us,
    "array<float32>": _floats,
}


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(v), f"a JSON {type(v).__name__}"
    )


def expectation_check(e: Expectation) -> Callable[[Any], str | None]:
    """An expectation as a per-event test: the failure's text, or None."""
    what = e.describe()
    if e.type == "not_null":
        return lambda v: f"expectation failed: {what}" if v is None else None
    if e.type == "between":
        lo, hi = e.min_value, e.max_value

        def between(v: Any) -> str | None:
            if v is None:
                return None  # as in Great Expectations: nulls are not_null's business
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                return f"expectation failed: {what} (got {v!r})"
            return None

        return between
    if e.type == "in_set":
        allowed = set(e.values or ())
        return lambda v: (
            None if v is None or v in allowed else f"expectation failed: {what} (got {v!r})"
        )
    pattern = re.compile(e.regex or "")
    return lambda v: (
        f"expectation failed: {what} (got {v!r})"
        if v is not None and not pattern.search(str(v))
        else None
    )


class EventParser:
    """Turns raw event bytes into typed values, or raises BadEvent with the reason."""

    def __init__(self, view: FeatureView, source: KafkaSource) -> None:
        self.fields = [(f.name, CONVERTERS[str(f.dtype)]) for f in source.schema]
        self.timestamp_field = source.timestamp_field
        self.keys = view.join_keys
        # Per event only whole-stream rules apply; a `mostly` fraction needs a batch.
        self.checks = [
            (e.column, expectation_check(e)) for e in view.expectations if e.mostly >= 1.0
        ]

    def parse(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None:
            raise BadEvent("empty message (no value)")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadEvent(f"not valid JSON: {exc}") from None
        if type(doc) is not dict:
            raise BadEvent(f"expected a JSON object, got {_kind(doc)}")
        out: dict[str, Any] = {}
        for name, convert in self.fields:
            v = doc.get(name)
            if v is not None:
                try:
                    v = convert(v)
                except BadEvent as exc:
                    raise BadEvent(f"field '{name}': {exc}") from None
            out[name] = v
        if out[self.timestamp_field] is None:
            raise BadEvent(f"field '{self.timestamp_field}' (the event time) is missing")
        for key in self.keys:
            if out.get(key) is None:
                raise BadEvent(f"field '{key}' (the entity key) is missing")
        for column, check in self.checks:
            failed = check(out.get(column))
            if failed:
                raise BadEvent(failed)
        return out
