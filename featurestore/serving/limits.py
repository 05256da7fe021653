"""Limits per model and per project in ``featurestore serve``: noisy neighbours held apart.

Each model, and the project as a whole, may have a limit on requests in flight
(``concurrent``) and on entity rows per second (a token bucket: ``rows_per_second``,
holding at most ``burst_rows``, by default one second's worth). A request's cost is its
entity rows. Past a limit the request is refused with ``RateLimited`` (HTTP 429 and
``Retry-After``) before Redis is read, and before its body is read when the model (the API
key's) has too many in flight or not a single row left in its bucket.

The state is per worker process (``serve --workers N`` runs N of them, each admitting up
to the limit), kept in plain counters: one event loop, so no locks. Pure logic with an
injected clock, so it is tested without a server.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from featurestore.errors import RateLimited

ASK = "ask for a higher limit in featurestore.yaml serving.limits"


@dataclass(frozen=True, slots=True)
class Limit:
    """One set of limits; None turns that limit off."""

    concurrent: int | None = None  # requests in flight
    rows_per_second: float | None = None  # entity rows, refilled continuously
    burst_rows: int | None = None  # the bucket's size (default: one second's worth)

    @property
    def off(self) -> bool:
        return self.concurrent is None and self.rows_per_second is None

    @property
    def burst(self) -> int:
        if self.burst_rows is not None:
            return self.burst_rows
        return max(1, math.ceil(self.rows_per_second or 0))


@dataclass(frozen=True, slots=True)
class ServingLimits:
    """``serving.limits`` of featurestore.yaml: ``default`` applies to each model without
    an entry in ``models`` (whose entries are already merged over it); ``project`` bounds
    all the project's models together. Everything off by default."""

    default: Limit = Limit()
    models: Mapping[str, Limit] = field(default_factory=dict)
    project: Limit = Limit()

    @property
    def off(self) -> bool:
        return self.default.off and self.project.off and all(m.off for m in self.models.values())

    def for_model(self, model: str) -> Limit:
        return self.models.get(model, self.default)


class Bucket:
    """A token bucket of entity rows, full at start."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def shortfall(self, cost: int, now: float) -> float:
        """Seconds until ``cost`` rows are in the bucket (0.0: now), refilled to ``now``."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.tokens = tokens if tokens < self.burst else float(self.burst)
        self.stamp = now
        missing = cost - self.tokens
        return missing / self.rate if missing > 0 else 0.0


class Gate:
    """One model's (or the project's) limits in this worker; a model's gate also checks
    the project's. ``with gate:`` around a request (before its body is read) holds a slot
    until it ends, however it ends (an error, a cancelled task); ``charge`` once its
    rows are known."""

    __slots__ = ("bucket", "clock", "concurrent", "in_flight", "label", "limit", "model", "project")

    def __init__(
        self,
        model: str,
        label: str,
        limit: Limit,
        clock: Callable[[], float],
        project: Gate | None = None,
    ) -> None:
        self.model = model  # who is refused (the caller's model, for the project's gate too)
        self.label = label  # "model 'x'" or "project 'y'", for messages
        self.limit = limit
        self.concurrent = limit.concurrent
        self.in_flight = 0
        self.clock = clock
        self.bucket = (
            Bucket(limit.rows_per_second, limit.burst, clock())
            if limit.rows_per_second is not None
            else None
        )
        self.project = project

    def enter(self) -> None:
        """Take a slot of this model and of the project, or raise RateLimited: too many in
        flight, or a bucket without a single row left (no request could pass, so its body
        need not be read)."""
        if self.concurrent is not None and self.in_flight >= self.concurrent:
            raise self._busy(self, "model")
        project = self.project
        now = self.clock()
        if project is not None:
            if project.concurrent is not None and project.in_flight >= project.concurrent:
                raise self._busy(project, "project")
            if project.bucket is not None:
                self._not_spent(project, "project", project.bucket, now)
            project.in_flight += 1
        if self.bucket is not None:
            try:
                self._not_spent(self, "model", self.bucket, now)
            except RateLimited:
                if project is not None:
                    project.in_flight -= 1
                raise
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.project is not None:
            self.project.in_flight -= 1

    def __enter__(self) -> Gate:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()

    def charge(self, rows: int) -> None:
        """Spend ``rows`` from this model's bucket and the project's, or neither and
        raise RateLimited."""
        bucket, project = self.bucket, self.project
        shared = project.bucket if project is not None else None
        if bucket is None and shared is None:
            return
        now = self.clock()
        if bucket is not None and (wait := bucket.shortfall(rows, now)):
            raise self._slow(self, "model", bucket, rows, wait)
        if project is not None and shared is not None:
            if wait := shared.shortfall(rows, now):
                raise self._slow(project, "project", shared, rows, wait)
            shared.tokens -= rows
        if bucket is not None:
            bucket.tokens -= rows

    def _not_spent(self, gate: Gate, scope: str, bucket: Bucket, now: float) -> None:
        wait = bucket.shortfall(1, now)
        if wait:
            after = max(1, math.ceil(wait))
            raise RateLimited(
                f"{gate.label}: its limit ({_rate(bucket)}) is spent (per server worker); "
                f"retry after {after} s or {ASK}.",
                model=self.model,
                scope=scope,
                limit="rows_per_second",
                retry_after=after,
            )

    def _busy(self, gate: Gate, scope: str) -> RateLimited:
        return RateLimited(
            f"{gate.label}: {gate.in_flight} requests in flight, its limit of concurrent "
            f"requests (per server worker); retry after 1 s or {ASK}.",
            model=self.model,
            scope=scope,
            limit="concurrent",
            retry_after=1,
        )

    def _slow(self, gate: Gate, scope: str, bucket: Bucket, rows: int, wait: float) -> RateLimited:
        rate = _rate(bucket)
        if rows > bucket.burst:  # never fits: waiting does not help
            return RateLimited(
                f"{gate.label}: this request asks for {rows:,} entity rows, more than its "
                f"limit lets through at once ({rate}; per server worker); split it into "
                f"requests of at most {bucket.burst:,} rows or {ASK}.",
                model=self.model,
                scope=scope,
                limit="burst_rows",
                retry_after=None,
            )
        after = max(1, math.ceil(wait))
        return RateLimited(
            f"{gate.label}: this request's {rows:,} entity rows are past its limit of "
            f"{rate} (per server worker); retry after {after} s or {ASK}.",
            model=self.model,
            scope=scope,
            limit="rows_per_second",
            retry_after=after,
        )


class Limiter:
    """The gates of one worker: one per model asking, sharing the project's."""

    def __init__(
        self,
        limits: ServingLimits,
        project: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.project = (
            None if limits.project.off else Gate("", f"project '{project}'", limits.project, clock)
        )
        self.gates: dict[str, Gate] = {}

    def gate(self, model: str) -> Gate:
        gate = self.gates.get(model)
        if gate is None:  # models come from verified keys: as many as the registry has
            gate = self.gates[model] = Gate(
                model, f"model '{model}'", self.limits.for_model(model), self.clock, self.project
            )
        return gate


def entity_rows(entities: Any) -> int:
    """A request's cost: its entity rows, as rows (a list) or columns (a mapping of lists).
    Anything else costs 0 here and is refused by the lookup."""
    if isinstance(entities, list):
        return len(entities)
    if isinstance(entities, dict):
        return max((len(v) for v in entities.values() if isinstance(v, list)), default=0)
    return 0


def _rate(bucket: Bucket) -> str:
    return f"{_number(bucket.rate)} entity rows per second, bursts of {bucket.burst:,}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,}"
