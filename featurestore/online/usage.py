"""Lookups counted per model, feature and policy decision, not logged one by one.

A lookup adds to its plan's two counters (one dictionary lookup and two additions under
an uncontended lock); ``totals`` expands plans into (model, feature, decision) rows only
when someone reads them: the feature server's /metrics, or ``OnlineClient.usage()``.

This module is on the online read path: standard library only.
"""

from __future__ import annotations

import threading
from typing import Any

from featurestore.errors import PolicyDeniedError

Key = tuple[str, str, str]  # model ('' when none), 'view@vN:feature', decision


MAX_PLANS = 10_000


class Usage:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[int, list[Any]] = {}  # id(plan) -> [plan, lookups, values]
        self._folded: dict[Key, tuple[int, int]] = {}  # plans expanded to bound memory

    def add(self, plan: Any, rows: int) -> None:
        with self._lock:
            entry = self._plans.get(id(plan))
            if entry is None:  # the entry holds the plan, so its id is not reused
                if len(self._plans) >= MAX_PLANS:
                    _expand(self._plans.values(), self._folded)
                    self._plans.clear()
                self._plans[id(plan)] = [plan, 1, rows]
            else:
                entry[1] += 1
                entry[2] += rows

    def denied(self, exc: PolicyDeniedError) -> None:
        key = (exc.model, exc.feature, "deny")
        with self._lock:
            lookups, values = self._folded.get(key, (0, 0))
            self._folded[key] = (lookups + 1, values)

    def totals(self, *, reset: bool = False) -> dict[Key, tuple[int, int]]:
        with self._lock:
            plans = [list(entry) for entry in self._plans.values()]
            out = dict(self._folded)
            if reset:
                self._plans.clear()
                self._folded.clear()
        _expand(plans, out)
        return out


def _expand(plans: Any, out: dict[Key, tuple[int, int]]) -> None:
    for plan, lookups, rows in plans:
        model = plan.policy_model or plan.model or ""
        decisions = plan.decisions or ("allow",) * plan.width
        for ref, decision in zip(plan.refs, decisions, strict=True):
            before = out.get((model, ref, decision), (0, 0))
            out[(model, ref, decision)] = (before[0] + lookups, before[1] + rows)
