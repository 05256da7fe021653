"""Feast 0.67's feature-server JSON: a lookup's response and an error, as ``feast serve``
writes them (``feast/feature_server_utils.py`` ``convert_response_to_dict``, and
``FeastError.to_error_detail`` in its exception handler).

A response is ``{"metadata": {"feature_names": [...]}, "results": [...]}``, one result per
column: first the join keys, in the order the request's ``entities`` gave them (status
PRESENT, event time the epoch, as Feast answers), then the features grouped by view in
the order their views first appear in the request, stored views before on-demand ones
(Feast groups them so; inside a view its order comes from a Python set, so it varies
between Feast processes: here it is the request's). Event times are RFC 3339 UTC with
Feast's adaptive precision (none, 3 or 6 digits); a value not found, and an on-demand
feature, has the epoch (as in Feast). NaN and infinities are the strings Feast sends
("NaN", "Infinity", "-Infinity"), bytes are base64 and timestamps epoch seconds.

Statuses keep Feast's names with the meaning Feast's protocol gives them: PRESENT,
NULL_VALUE (stored, and null), NOT_FOUND (nothing stored for the entity) and
OUTSIDE_MAX_AGE (older than the view's TTL: its value is not served, its event time is).
Feast's own Redis store answers PRESENT for all four (it checks no TTL online and reports
a missing entity as present nulls); docs/api.md lists the difference. An on-demand
feature whose function failed for a row is INVALID there, null, and the result carries
``errors`` (a message or null per row): Feast fails the whole request instead.

An error is a JSON string holding ``{"module", "class", "message"}``: Feast's own class
where one means the same thing (so Feast's REST client raises it again), otherwise ours.

This module is on the online read path: standard library and orjson only.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from featurestore.errors import (
    AccessDeniedError,
    FeatureStoreError,
    FeatureViewNotFound,
)
from featurestore.online.on_demand import ERROR
from featurestore.online.response import EXPIRED, MISSING, OnlineResponse
from featurestore.urls import redact

__all__ = [
    "EPOCH_TEXT",
    "detail_body",
    "error_body",
    "feast_response",
    "feast_time",
    "response_body",
]

EPOCH_TEXT = "1970-01-01T00:00:00Z"  # Feast's unset Timestamp
_NAIVE_EPOCH = datetime(1970, 1, 1)  # naive: isoformat() then adds no offset to strip
PRESENT = "PRESENT"
NULL_VALUE = "NULL_VALUE"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"
INVALID = "INVALID"
_AS_IS = frozenset({"int32", "int64", "string", "bool"})  # JSON as they come (masks: str)


def feast_time(us: int | None) -> str:
    """An event time as Feast writes it: no fraction, milliseconds or microseconds,
    whichever is exact; the epoch for none."""
    if not us:
        return EPOCH_TEXT
    frac = us % 1_000_000  # of the floored second, as protobuf's nanos
    spec = "seconds" if frac == 0 else "milliseconds" if frac % 1000 == 0 else "microseconds"
    return (_NAIVE_EPOCH + timedelta(microseconds=us)).isoformat(timespec=spec) + "Z"


def _value(v: Any) -> Any:
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, bytes):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, datetime):
        return math.floor(v.timestamp())  # Feast's unix_timestamp_val: whole seconds
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def _view_of(ref: str) -> tuple[str, int | None]:
    """('view', N) of 'view@vN:feature'."""
    view = ref.split(":", 1)[0]
    name, _, version = view.partition("@v")
    return name, int(version) if version.isdigit() else None


def feature_order(refs: Sequence[str], computed: frozenset[int] = frozenset()) -> list[int]:
    """Output positions grouped by view, views in order of first appearance: stored views
    first, then on-demand ones (``computed``), as Feast answers."""
    groups: dict[tuple[bool, str], list[int]] = {}
    for i, ref in enumerate(refs):
        groups.setdefault((i in computed, _view_of(ref)[0]), []).append(i)
    ordered = sorted(groups.items(), key=lambda item: item[0][0])  # stable: keeps first use
    return [i for _, group in ordered for i in group]


def feast_response(
    response: OnlineResponse,
    key_order: Sequence[str],
    *,
    version_metadata: bool = False,
) -> dict[str, Any]:
    """Feast's response dict for ``response``; ``key_order`` is the request's entity
    columns (those that are join keys of the plan come first, in that order)."""
    plan = response.plan
    needed = set(plan.join_keys)
    keys = [k for k in key_order if k in needed]
    keys += [k for k in plan.join_keys if k not in keys]
    n = len(response)
    epochs = [EPOCH_TEXT] * n
    results: list[dict[str, Any]] = [
        {
            "values": [_value(row.get(k)) for row in response.entities],
            "statuses": [PRESENT] * n,
            "event_timestamps": epochs,
        }
        for k in keys
    ]
    computed = plan.on_demand.computed
    order = feature_order(plan.refs, computed)
    times: dict[int | None, str] = {None: EPOCH_TEXT}  # a row's views share event times
    for o in order:
        values = response.values[o]
        statuses = []
        for status, v in zip(response.statuses[o], values, strict=True):
            if status == MISSING:
                statuses.append(NOT_FOUND)
            elif status == EXPIRED:
                statuses.append(OUTSIDE_MAX_AGE)
            elif status == ERROR:
                statuses.append(INVALID)
            else:
                statuses.append(NULL_VALUE if v is None else PRESENT)
        if o in computed:  # Feast gives on-demand features no event time
            stamps = [EPOCH_TEXT] * n
        else:
            stamps = []
            for us in response.event_us[o]:
                text = times.get(us)
                if text is None:
                    text = times[us] = feast_time(us)
                stamps.append(text)
        result = {
            "values": list(values) if plan.dtypes[o] in _AS_IS else [_value(v) for v in values],
            "statuses": statuses,
            "event_timestamps": stamps,
        }
        if response.errors and o in response.errors:
            result["errors"] = response.errors[o]  # Feast would fail the whole request
        results.append(result)
    metadata: dict[str, Any] = {
        "feature_names": keys + [plan.feature_names[o] for o in order],
    }
    if version_metadata:
        seen: dict[str, dict[str, Any]] = {}
        for o in order:
            name, version = _view_of(plan.refs[o])
            entry: dict[str, Any] = {"name": name}
            if version:
                entry["version"] = version
            seen.setdefault(name, entry)
        metadata["feature_view_metadata"] = list(seen.values())
    return {"metadata": metadata, "results": results}


def response_body(
    response: OnlineResponse, key_order: Sequence[str], *, version_metadata: bool = False
) -> bytes:
    return orjson.dumps(feast_response(response, key_order, version_metadata=version_metadata))


def _feast_class(exc: FeatureStoreError) -> tuple[str, str]:
    """(module, class) a Feast client should see for ``exc``."""
    if isinstance(exc, FeatureViewNotFound):
        return "feast.errors", "FeatureViewNotFoundException"
    if isinstance(exc, AccessDeniedError):
        return "feast.errors", "FeastPermissionError"
    return type(exc).__module__, type(exc).__name__


def error_body(exc: FeatureStoreError, *, feast_class: tuple[str, str] | None = None) -> bytes:
    """Feast's error answer: a JSON string of a JSON object (as ``feast serve`` sends
    ``to_error_detail()``), with our message, redacted."""
    module, name = feast_class or _feast_class(exc)
    return detail_body(module, name, str(exc))


def detail_body(module: str, name: str, message: str) -> bytes:
    detail = json.dumps({"module": module, "class": name, "message": redact(message)})
    return orjson.dumps(detail)
