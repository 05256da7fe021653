"""Checking pushed rows: the stream consumer's per-event rules, applied to each row.

A row is a dict with the view's join keys, ``event_timestamp``, optionally
``created_timestamp``, and any of the view's features (a missing feature is null, as a
missing field of a Kafka event). Values follow the consumer's JSON types
(``streaming/events.py``), plus what a Python caller has at hand: ``datetime`` for
times and ``bytes`` for Bytes. NaN and infinities are refused (JSON cannot carry them,
so the consumer never accepts one either); so are nested lists and objects where a
scalar belongs, unknown fields, a key that is missing or null, a row larger than the
source's ``max_event_bytes``, and event times outside the bounds:

* ahead: more than the source's ``max_future_skew`` (5 minutes for a batch source)
  ahead of the pushing process's clock;
* behind: a stream source's ``allowed_lateness`` behind that clock (a push has no
  partition watermark, so the clock stands in for it); a batch source has no bound
  behind, since its rows may be backfilled at any time (the online writer still never
  lets an older value replace a newer one, and the TTL drops expired ones).

Every bad row is reported (its index, the field, the reason), and the push writes
nothing if any row is bad. Standard library only: the serving path imports it.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from featurestore.config_sections import PushConfig
from featurestore.definitions import FeatureView, KafkaSource
from featurestore.errors import EntityInputError, PushRejected, RequestTooLargeError
from featurestore.streaming.events import (
    CONVERTERS,
    BadEvent,
    expectation_check,
    parse_time_us,
)
from featurestore.times import from_micros, micros

EVENT_TS = "event_timestamp"
CREATED_TS = "created_timestamp"
DEFAULT_MAX_ROWS = PushConfig().max_rows  # per push; more: 413 (`push:` in featurestore.yaml)
DEFAULT_FUTURE_SKEW = timedelta(minutes=5)  # a batch source's (a stream source has its own)
DEFAULT_MAX_ROW_BYTES = 1_048_576
MAX_REPORTED = 100  # row errors listed in one answer (the count says how many in all)

Converter = Callable[[Any], Any]
Row = tuple[tuple[Any, ...], int, int | None, tuple[Any, ...]]  # the online writer's rows


def _time(v: Any) -> int:
    if isinstance(v, datetime):
        return micros(v)  # naive: UTC
    return parse_time_us(v)


def _finite(convert: Converter) -> Converter:
    def check(v: Any) -> Any:
        out = convert(v)
        if isinstance(out, float) and not math.isfinite(out):
            raise BadEvent(f"{out} is not a value (send null for a missing one)")
        if isinstance(out, list) and not all(math.isfinite(x) for x in out):
            raise BadEvent("the list holds NaN or an infinity")
        return out

    return check


def _bytes(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    if type(v) is not str:
        raise BadEvent("expected bytes or a base64 string")
    try:
        return base64.b64decode(v, validate=True)
    except binascii.Error as exc:
        raise BadEvent("expected a base64 string") from exc


def converter(dtype: str) -> Converter:
    """The consumer's converter of ``dtype``, with a Python caller's types added."""
    if dtype == "timestamp":
        return _time
    if dtype == "bytes":
        return _bytes
    base = CONVERTERS[dtype]
    return _finite(base) if dtype in ("float32", "float64", "array<float32>") else base


def _size(v: Any) -> int:
    if isinstance(v, str | bytes):
        return len(v)
    if isinstance(v, list):
        return 8 * len(v)
    return 8


@dataclass(frozen=True, slots=True)
class PushBounds:
    """How far ahead and behind the clock an event time may be, and how large a row."""

    future_us: int
    lateness_us: int | None  # None: no bound behind
    max_row_bytes: int
    max_rows: int = DEFAULT_MAX_ROWS

    @classmethod
    def of(cls, view: FeatureView, *, max_rows: int = DEFAULT_MAX_ROWS) -> PushBounds:
        source = view.source
        if isinstance(source, KafkaSource):
            return cls(
                future_us=source.max_future_skew // timedelta(microseconds=1),
                lateness_us=source.allowed_lateness // timedelta(microseconds=1),
                max_row_bytes=source.max_event_bytes,
                max_rows=max_rows,
            )
        return cls(
            future_us=DEFAULT_FUTURE_SKEW // timedelta(microseconds=1),
            lateness_us=None,
            max_row_bytes=DEFAULT_MAX_ROW_BYTES,
            max_rows=max_rows,
        )


class RowChecker:
    """Checks the rows of one push to one view version (built once per version)."""

    def __init__(self, view: FeatureView, version: int, bounds: PushBounds) -> None:
        self.label = f"{view.name}@v{version}"
        self.bounds = bounds
        entities = sorted(view.resolved_entities(), key=lambda e: e.name)  # the layout's order
        self.keys = [(e.join_key, converter(str(e.dtype))) for e in entities]
        self.features = [(f.name, converter(str(f.dtype))) for f in view.schema]
        self.known = {EVENT_TS, CREATED_TS, *(k for k, _ in self.keys), *view.feature_names}
        self.checks = [
            (e.column, expectation_check(e)) for e in view.expectations if e.mostly >= 1.0
        ]

    def check(self, rows: Any, now_us: int) -> list[Row]:
        """The rows as online-writer rows (keys, event us, created us, values), or
        PushRejected naming every bad row; RequestTooLargeError past ``max_rows``."""
        rows = as_row_list(rows, self.label)
        if len(rows) > self.bounds.max_rows:
            raise RequestTooLargeError(
                f"A push to {self.label} has {len(rows):,} rows; one push takes at most "
                f"{self.bounds.max_rows:,}. Split it into several pushes."
            )
        if not rows:
            raise EntityInputError(f"A push to {self.label} has no rows.")
        out: list[Row] = []
        errors: list[dict[str, object]] = []
        for i, row in enumerate(rows):
            problems = self._problems(row, now_us, out)
            errors += ({"row": i, "field": f, "reason": r} for f, r in problems)
        if errors:
            bad = len({e["row"] for e in errors})
            shown = "; ".join(
                f"row {e['row']}"
                + (f" field '{e['field']}'" if e["field"] else "")
                + f": {e['reason']}"
                for e in errors[:5]
            )
            raise PushRejected(
                f"Push to {self.label} refused: {bad:,} of {len(rows):,} rows are bad, so "
                f"nothing was written. {shown}{' ...' if len(errors) > 5 else ''}. Fix those "
                "rows and push again.",
                errors[:MAX_REPORTED],
                len(rows),
            )
        return out

    def _problems(self, row: Any, now_us: int, out: list[Row]) -> list[tuple[str | None, str]]:
        if type(row) is not dict:
            return [(None, f"a row must be an object of fields, got {_kind(row)}")]
        problems: list[tuple[str | None, str]] = []
        for name in row:
            if name not in self.known:
                problems.append((str(name), "unknown field: not a key or feature of the view"))
        keys = []
        for name, convert in self.keys:
            v = row.get(name)
            if v is None:
                problems.append((name, "the entity key is missing"))
                continue
            try:
                keys.append(convert(v))
            except BadEvent as exc:
                problems.append((name, str(exc)))
        event_us = self._time(row, EVENT_TS, problems, required=True)
        created_us = self._time(row, CREATED_TS, problems, required=False)
        values = []
        size = 0
        for name, convert in self.features:
            v = row.get(name)
            if v is not None:
                try:
                    v = convert(v)
                except BadEvent as exc:
                    problems.append((name, str(exc)))
                    continue
                size += _size(v)
            values.append(v)
        if size > self.bounds.max_row_bytes:
            problems.append(
                (None, f"too large: about {size:,} bytes, more than {self.bounds.max_row_bytes:,}")
            )
        if event_us is not None:
            problems += self._bounds(event_us, now_us)
        if not problems:
            by_name = dict(zip((n for n, _ in self.features), values, strict=True))
            for column, check in self.checks:
                failed = check(by_name.get(column))
                if failed:
                    problems.append((column, failed))
        if not problems:
            out.append((tuple(keys), event_us, created_us, tuple(values)))  # type: ignore[arg-type]
        return problems

    def _time(
        self, row: dict[str, Any], name: str, problems: list, *, required: bool
    ) -> int | None:
        v = row.get(name)
        if v is None:
            if required:
                problems.append((name, "the event time is missing"))
            return None
        try:
            return _time(v)
        except BadEvent as exc:
            problems.append((name, str(exc)))
        except (OverflowError, ValueError) as exc:
            problems.append((name, f"not a time: {exc}"))
        return None

    def _bounds(self, event_us: int, now_us: int) -> list[tuple[str | None, str]]:
        b = self.bounds
        if event_us > now_us + b.future_us:
            return [
                (
                    EVENT_TS,
                    f"future: {_iso(event_us)} is more than "
                    f"{timedelta(microseconds=b.future_us)} ahead of the clock "
                    f"({_iso(now_us)})",
                )
            ]
        if b.lateness_us is not None and event_us < now_us - b.lateness_us:
            return [
                (
                    EVENT_TS,
                    f"late: {_iso(event_us)} is more than "
                    f"{timedelta(microseconds=b.lateness_us)} (the source's allowed_lateness) "
                    f"behind the clock ({_iso(now_us)})",
                )
            ]
        return []


def as_row_list(rows: Any, label: str) -> Sequence[Any]:
    """A list of row dicts, a dict of equally long columns, or an Arrow table (what
    ``write_online`` takes; its timestamps arrive as datetimes), as a list of rows."""
    if hasattr(rows, "to_pylist") and hasattr(rows, "column_names"):
        return rows.to_pylist()
    if isinstance(rows, dict):
        lengths = {name: len(col) for name, col in rows.items() if isinstance(col, list | tuple)}
        if len(lengths) != len(rows) or len(set(lengths.values())) > 1:
            raise EntityInputError(
                f"Rows for {label} given as columns must map each field to a list, all of "
                f"one length (got {', '.join(f'{k}: {v}' for k, v in lengths.items()) or rows!r})."
            )
        names = list(rows)
        return [
            dict(zip(names, values, strict=True)) for values in zip(*rows.values(), strict=True)
        ]
    if isinstance(rows, list | tuple):
        return rows
    raise EntityInputError(
        f"Rows for {label} must be a list of dicts or a dict of columns (got {_kind(rows)})."
    )


def _kind(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return f"a {type(v).__name__}"


def _iso(us: int) -> str:
    try:
        return from_micros(us).isoformat()
    except OverflowError:
        return f"{us} us"
