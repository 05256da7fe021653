"""Online decisions coalesced into one audit record per caller, rule and window.

A caller can send a new feature list with every request, and each one is a new denial (or
a new masked plan). Logging each would let one key write the audit log as fast as it can
send requests, so ``DecisionWindows`` tallies them instead: per (action, model, key, rule)
a window opens at the first decision and closes ``WINDOW_SECONDS`` later, when it becomes
one record with the count, the first and last time, up to ``MAX_FEATURES`` of the features
decided and up to ``MAX_EXAMPLES`` requests. The tallies are bounded by the registry (its
models, keys and rules), not by what callers send.

Adding is a dictionary update under a lock, on the request's thread; records are made by
the audit writer's thread. Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

WINDOW_SECONDS = 60.0
MAX_EXAMPLES = 5  # requests kept per record, as sent (feature lists cut to MAX_FEATURES)
MAX_FEATURES = 20  # distinct features denied or masked, kept per record

Key = tuple[str, str, str, str | None]  # action, model, rule, key label


@dataclass(slots=True)
class _Tally:
    fields: dict[str, Any]  # the first decision's action, subject, decision, rule
    first: float
    last: float
    count: int = 0
    features: dict[str, None] = field(default_factory=dict)  # an ordered set
    examples: list[dict[str, Any]] = field(default_factory=list)


class DecisionWindows:
    """Tallies of online decisions; ``due()`` and ``drain()`` turn them into records'
    fields (``AuditRecord(**fields)`` with project and actor added)."""

    def __init__(
        self, window_seconds: float = WINDOW_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self.window_seconds = window_seconds
        self._clock = clock
        self._open: dict[Key, _Tally] = {}
        self._lock = threading.Lock()

    def add(self, fields: dict[str, Any]) -> None:
        """One decision: ``action``, ``subject`` (the model), ``decision``, ``rule`` and
        ``detail`` with ``key``, ``features`` and maybe ``requested`` and ``message``."""
        detail = fields.get("detail", {})
        key = (
            fields["action"],
            fields.get("subject", ""),
            fields.get("rule", ""),
            detail.get("key"),
        )
        now = self._clock()
        with self._lock:
            tally = self._open.get(key)
            if tally is None:
                tally = self._open[key] = _Tally(fields, now, now)
            tally.count += 1
            tally.last = now
            for feature in detail.get("features", ()):
                if len(tally.features) >= MAX_FEATURES:
                    break
                tally.features[feature] = None
            if len(tally.examples) < MAX_EXAMPLES:
                tally.examples.append(_example(detail))

    def due(self) -> list[dict[str, Any]]:
        """The records of windows that have closed."""
        cutoff = self._clock() - self.window_seconds
        with self._lock:
            closed = [k for k, tally in self._open.items() if tally.first <= cutoff]
            tallies = [self._open.pop(k) for k in closed]
        return [self._record(t) for t in tallies]

    def drain(self) -> list[dict[str, Any]]:
        """The records of every window, closed or not (on flush and close)."""
        with self._lock:
            tallies = list(self._open.values())
            self._open.clear()
        return [self._record(t) for t in tallies]

    def _record(self, tally: _Tally) -> dict[str, Any]:
        first = tally.fields
        return {
            "action": first["action"],
            "subject": first.get("subject", ""),
            "decision": first.get("decision", ""),
            "rule": first.get("rule", ""),
            "detail": {
                "at": "online",
                "key": first.get("detail", {}).get("key"),
                "count": tally.count,
                "first": _iso(tally.first),
                "last": _iso(tally.last),
                "window_seconds": self.window_seconds,
                "features": list(tally.features),
                "examples": tally.examples,
            },
        }


def _example(detail: dict[str, Any]) -> dict[str, Any]:
    example: dict[str, Any] = {}
    requested = detail.get("requested")
    if requested is not None:
        example["requested"] = list(requested[:MAX_FEATURES])
        if len(requested) > MAX_FEATURES:
            example["requested_omitted"] = len(requested) - MAX_FEATURES
    if "message" in detail:
        example["message"] = detail["message"]
    return example


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
