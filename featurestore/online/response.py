"""What a lookup returns: values, per-feature status and event times.

Stored column-wise (one list per feature, one slot per entity row), as Feast's
feature server answers, so ``to_json`` and ``to_dict`` need no transposing.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import msgpack
import orjson

from featurestore.online.layout import HEADER_SIZE
from featurestore.online.on_demand import ERROR, run_step
from featurestore.online.plan import LookupPlan
from featurestore.times import from_micros

PRESENT = "present"
MISSING = "missing"  # no value for this entity (never written, or expired and evicted)
EXPIRED = "expired"  # a value older than the view's TTL: never served
_HEADER_EVENT = struct.Struct(">q").unpack_from
_unpackb = msgpack.unpackb


class OnlineResponse:
    __slots__ = ("drift", "entities", "errors", "event_us", "plan", "statuses", "values")

    def __init__(
        self,
        plan: LookupPlan,
        entities: list[dict[str, Any]],
        values: list[list[Any]],
        statuses: list[list[str]],
        event_us: list[list[int | None]],
        drift: dict[str, Any] | None = None,
        errors: dict[int, list[str | None]] | None = None,
    ) -> None:
        self.plan = plan
        # On-demand features that failed: {output index: [message or None per row]}, for
        # the outputs with a failure (their status is "error" in those rows).
        self.errors = errors
        # The model's drift status when a monitor watches it: {"status": ok | warn | drift |
        # unknown, "features": {ref: status} for those not ok, "checked_at": ...}.
        self.drift = drift
        self.entities = entities
        self.values = values  # [feature][row]
        self.statuses = statuses
        self.event_us = event_us

    def __len__(self) -> int:
        return len(self.entities)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.plan.feature_names

    def to_dict(self) -> dict[str, list[Any]]:
        """Join keys and features as columns, like Feast's ``OnlineResponse.to_dict()``."""
        out: dict[str, list[Any]] = {
            k: [row.get(k) for row in self.entities] for k in self.plan.join_keys
        }
        out.update(zip(self.plan.feature_names, self.values, strict=True))
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict of feature values per entity row."""
        names = self.plan.feature_names
        return [dict(zip(names, row, strict=True)) for row in zip(*self.values, strict=True)]

    def status_dict(self) -> dict[str, list[str]]:
        return dict(zip(self.plan.feature_names, self.statuses, strict=True))

    def error_dict(self) -> dict[str, list[str | None]]:
        """Why on-demand features failed, by feature (only those with a failure)."""
        names = self.plan.feature_names
        return {names[o]: messages for o, messages in sorted((self.errors or {}).items())}

    def event_times(self) -> dict[str, list[Any]]:
        """Each value's event time as a UTC datetime (None where missing)."""
        return {
            name: [None if us is None else from_micros(us) for us in column]
            for name, column in zip(self.plan.feature_names, self.event_us, strict=True)
        }

    def to_json_dict(self) -> dict[str, Any]:
        times: dict[int, Any] = {}

        def when(us: int | None) -> Any:
            if us is None:
                return None
            t = times.get(us)
            if t is None:
                t = times[us] = from_micros(us)
            return t

        metadata: dict[str, Any] = {
            "model": self.plan.model,
            "feature_names": list(self.plan.feature_names),
            "features": list(self.plan.refs),
        }
        if self.drift is not None:
            metadata["drift"] = self.drift
        results = [
            {"values": v, "statuses": s, "event_timestamps": [when(us) for us in e]}
            for v, s, e in zip(self.values, self.statuses, self.event_us, strict=True)
        ]
        for o, messages in (self.errors or {}).items():
            results[o]["errors"] = messages
        return {
            "metadata": metadata,
            "entities": {k: [row.get(k) for row in self.entities] for k in self.plan.join_keys},
            "results": results,
        }

    def to_json(self) -> bytes:
        """The HTTP server's response body. NaN and infinities become null in JSON."""
        return orjson.dumps(self.to_json_dict(), default=_json_default, option=orjson.OPT_UTC_Z)

    def to_json_text(self, *, indent: bool = False) -> str:
        option = orjson.OPT_UTC_Z | (orjson.OPT_INDENT_2 if indent else 0)
        return orjson.dumps(self.to_json_dict(), default=_json_default, option=option).decode()

    def __repr__(self) -> str:
        return f"OnlineResponse({len(self)} rows x {self.plan.width} features)"


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):  # Bytes features travel as base64 in JSON
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def assemble(
    plan: LookupPlan,
    rows: list[dict[str, Any]],
    replies: list[list[Any]],
    now: int,
    requests: dict[str, list[Any]] | None = None,
) -> OnlineResponse:
    """The response from a lookup's replies (one per row and entity set, in command
    order): values past their view's TTL are reported expired, on-demand features
    computed (from the values read and ``requests``, the checked request fields), masks
    applied."""
    n = len(rows)
    width = plan.columns
    values: list[list[Any]] = [[None] * n for _ in range(width)]
    statuses: list[list[str]] = [[MISSING] * n for _ in range(width)]
    events: list[list[int | None]] = [[None] * n for _ in range(width)]
    j = 0
    for r in range(n):
        for kr in plan.key_reads:
            reply = replies[j]
            j += 1
            for view, raw in zip(kr.views, reply, strict=True):
                if raw is None:
                    continue
                (event,) = _HEADER_EVENT(raw)
                if view.ttl_us is not None and event < now - view.ttl_us:
                    for o in view.outputs:
                        statuses[o][r] = EXPIRED
                        events[o][r] = event
                    continue
                data = _unpackb(raw[HEADER_SIZE:])
                for pos, decode in view.decoders:
                    if data[pos] is not None:
                        data[pos] = decode(data[pos])
                for p, o in zip(view.positions, view.outputs, strict=True):
                    values[o][r] = data[p]
                    statuses[o][r] = PRESENT
                    events[o][r] = event
    errors = None
    if plan.on_demand.steps:
        errors = compute_on_demand(plan, n, values, statuses, events, requests or {})
        width = plan.width  # a property: read once
        del values[width:], statuses[width:], events[width:]
    if plan.masks:
        from featurestore.policy.engine import masker

        for o, how in plan.masks:
            mask = masker(how, plan.mask_key)
            values[o] = [mask(v) for v in values[o]]
    return OnlineResponse(plan, rows, values, statuses, events, errors=errors)


def compute_on_demand(
    plan: LookupPlan,
    n: int,
    values: list[list[Any]],
    statuses: list[list[str]],
    events: list[list[int | None]],
    requests: dict[str, list[Any]],
) -> dict[int, list[str | None]] | None:
    """Fill the on-demand outputs: values, status present (or error, with its message),
    and as event time the latest of the row's input values' (None from requests only)."""
    errors: dict[int, list[str | None]] | None = None
    for step in plan.on_demand.steps:
        inputs = {name: values[column] for name, column in step.inputs}
        for name, _dtype, _source in step.requests:
            inputs[name] = requests[name]
        result = run_step(step, inputs, n)
        latest: list[int | None]
        if step.one_record:  # the inputs' event times are one record's, equal per row
            latest = events[step.inputs[0][1]]
        else:
            input_events = [events[column] for _, column in step.inputs]
            latest = []
            for r in range(n):
                times = [t for e in input_events if (t := e[r]) is not None]
                latest.append(max(times) if times else None)
        for k, (_name, o, _dtype) in enumerate(step.outputs):
            values[o] = result.values[k]
            statuses[o] = [PRESENT] * n
            events[o] = list(latest)
            if result.errors is not None and any(m is not None for m in result.errors[k]):
                failed = result.errors[k]
                statuses[o] = [ERROR if m is not None else PRESENT for m in failed]
                errors = errors or {}
                errors[o] = failed
    return errors
