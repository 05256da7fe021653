"""Prometheus metrics of the feature server.

With several workers (``featurestore serve --workers N``), each worker writes
its samples to ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges them, so
any worker answers for all.

A lookup does not touch prometheus_client (a labelled child, a lock and, with several
workers, a write to a memory-mapped file per metric cost about 15 us a request): it
adds to plain counters in the process (``LOOKUP_STATS``), which ``flush`` moves into
the same metrics, with the same names and labels, when ``/metrics`` is scraped and
every registry refresh (so another worker's lookups show within ``refresh_seconds``).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from featurestore.online.catalog import Catalog

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
REGISTRY = CollectorRegistry(auto_describe=True)

# Lookups take about 0.1-2 ms on a healthy Redis: buckets resolve that range.
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY = Histogram(
    "featurestore_request_duration_seconds",
    "Time to answer POST /v1/features, by model ('' for ad-hoc feature lists).",
    ["model"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
LOOKUPS = Counter(
    "featurestore_lookups_total", "Answered lookups, by model.", ["model"], registry=REGISTRY
)
ENTITY_ROWS = Counter(
    "featurestore_lookup_entity_rows_total",
    "Entity rows looked up, by model.",
    ["model"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "featurestore_request_errors_total",
    "Refused or failed requests, by HTTP status and error type.",
    ["status", "error"],
    registry=REGISTRY,
)
PUSHED_ROWS = Counter(
    "featurestore_pushed_rows_total",
    "Rows accepted by POST /v1/push, by view and target (refused pushes: request errors).",
    ["view", "to"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "featurestore_rejected_total",
    "Lookups refused with 429 past a serving limit, by the caller's model, the limit's "
    "scope (model | project) and limit (concurrent | rows_per_second | burst_rows).",
    ["model", "scope", "limit"],
    registry=REGISTRY,
)
REGISTRY_SERIAL = Gauge(
    "featurestore_registry_serial",
    "Registry serial the worker serves from (changes on every apply).",
    registry=REGISTRY,
    multiprocess_mode="max",
)
REGISTRY_REFRESH_ERRORS = Counter(
    "featurestore_registry_refresh_errors_total",
    "Failed registry refreshes (the last good snapshot keeps serving).",
    registry=REGISTRY,
)


FEATURE_LOOKUPS = Counter(
    "featurestore_feature_lookups_total",
    "Lookups that read a feature, by model, feature (view@vN:feature) and policy decision "
    "(allow | mask; deny: refused).",
    ["model", "feature", "decision"],
    registry=REGISTRY,
)
FEATURE_VALUES = Counter(
    "featurestore_feature_values_total",
    "Feature values served (one per entity row), by model, feature and decision.",
    ["model", "feature", "decision"],
    registry=REGISTRY,
)


CACHE_EVENTS = Counter(
    "featurestore_cache_events_total",
    "The in-process cache (online_store.cache): entity keys answered from it (hit), read from "
    "the online store (miss), and dropped to stay within max_entries (eviction).",
    ["event"],
    registry=REGISTRY,
)
CACHE_ENTRIES = Gauge(
    "featurestore_cache_entries",
    "Entity keys the in-process cache holds (summed over workers).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)


PLANS_COMPILED = Counter(
    "featurestore_plans_compiled_total",
    "Lookup plans compiled (on a model's or feature list's first lookup after start or after "
    "a registry change that touched it).",
    registry=REGISTRY,
)
PLANS_CARRIED = Counter(
    "featurestore_plans_carried_total",
    "Lookup plans kept across registry reloads (nothing they depend on changed).",
    registry=REGISTRY,
)


class PlanStats:
    """Moves a catalog's plan counts (``Catalog.stats()``) into the counters: what was
    added since the last move, and what each new catalog carried over."""

    def __init__(self) -> None:
        self.catalog: Catalog | None = None
        self.seen = 0

    def record(self, catalog: Catalog) -> None:
        stats = catalog.stats()
        if catalog is not self.catalog:
            self.catalog, self.seen = catalog, 0
            if stats["carried"]:
                PLANS_CARRIED.inc(stats["carried"])
        added = stats["compiled"] - self.seen
        if added > 0:
            PLANS_COMPILED.inc(added)
        self.seen = stats["compiled"]


class CacheStats:
    """Moves a cache's running totals (``LookupCache.stats()``) into the counters: only what
    was added since the last move."""

    def __init__(self) -> None:
        self.seen = {"hits": 0, "misses": 0, "evictions": 0}

    def record(self, stats: dict[str, int]) -> None:
        for key, event in (("hits", "hit"), ("misses", "miss"), ("evictions", "eviction")):
            added = stats[key] - self.seen[key]
            if added > 0:
                CACHE_EVENTS.labels(event).inc(added)
            self.seen[key] = stats[key]
        CACHE_ENTRIES.set(stats["entries"])


class LookupStats:
    """Answered lookups per model: count, entity rows, and the latency histogram's
    observations (sum and per-bucket counts), kept as plain numbers until ``flush``."""

    def __init__(self) -> None:
        # model -> [lookups, entity rows, seconds, [count per bucket..., +Inf]]
        self.by_model: dict[str, list[Any]] = {}

    def record(self, model: str, rows: int, seconds: float) -> None:
        stats = self.by_model.get(model)
        if stats is None:
            stats = self.by_model[model] = [0, 0, 0.0, [0] * (len(BUCKETS) + 1)]
        stats[0] += 1
        stats[1] += rows
        stats[2] += seconds
        stats[3][bisect_left(BUCKETS, seconds)] += 1  # le: the first bound >= seconds

    def flush(self) -> None:
        """Move the counts into the Prometheus metrics (and start again from zero)."""
        stats, self.by_model = self.by_model, {}
        for model, (lookups, rows, seconds, buckets) in stats.items():
            LOOKUPS.labels(model).inc(lookups)
            ENTITY_ROWS.labels(model).inc(rows)
            _add_observations(LATENCY.labels(model), seconds, buckets)


def _add_observations(child: Histogram, seconds: float, buckets: list[int]) -> None:
    """What ``observe`` would have added for each observation, added at once.
    prometheus_client has no public call for it; its histogram keeps a value per bucket
    (not cumulative: exposition adds them up) and one for the sum. tests/test_serving.py
    checks the buckets and the sum /metrics shows, so a change there fails a test."""
    child._sum.inc(seconds)
    for value, n in zip(child._buckets, buckets, strict=True):
        if n:
            value.inc(n)


LOOKUP_STATS = LookupStats()


def record_usage(usage: dict[tuple[str, str, str], tuple[int, int]]) -> None:
    """Move a client's counts into the counters (batched: lookups pay nothing for it)."""
    for labels, (lookups, values) in usage.items():
        FEATURE_LOOKUPS.labels(*labels).inc(lookups)
        if values:
            FEATURE_VALUES.labels(*labels).inc(values)


ON_DEMAND_FAILURES = Counter(
    "featurestore_on_demand_failures_total",
    "On-demand feature values that failed (the function raised, or returned no value or "
    "one of the wrong type), by view version; the rest of each lookup was answered.",
    ["view"],
    registry=REGISTRY,
)


def record_on_demand_failures(failures: dict[str, int]) -> None:
    for view, count in failures.items():
        ON_DEMAND_FAILURES.labels(view).inc(count)


def render() -> tuple[bytes, str]:
    LOOKUP_STATS.flush()
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
