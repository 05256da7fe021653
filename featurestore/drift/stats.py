"""Drift statistics: PSI for numbers, Jensen-Shannon distance for categories, null rates.

Pure functions over fractions (standard library only), so they are easy to check against
distributions whose answer is known (tests/test_drift_stats.py).

- PSI (population stability index) over the reference's quantile bins:
  ``sum((a - e) * ln(a / e))``, fractions floored at ``EPSILON`` so an empty bin does not
  make it infinite. Rules of thumb: < 0.1 stable, 0.1-0.25 moving, > 0.25 shifted.
- Jensen-Shannon distance (base 2): the square root of the JS divergence, in [0, 1]; 0 for
  identical frequencies, 1 for disjoint ones. Categories the reference never saw count
  under ``OTHER``, so a new category moves the distance.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence

EPSILON = 1e-4
OTHER = "__other__"
OK, WARN, DRIFT, UNKNOWN = "ok", "warn", "drift", "unknown"
# A feature whose training set holds no usable value of it (all null): nothing to compare
# with. It ranks with unknown, so it never makes a model warn or drift.
NO_REFERENCE = "no_reference"
STATUSES = (OK, WARN, DRIFT, UNKNOWN, NO_REFERENCE)
_RANK = {NO_REFERENCE: 0, UNKNOWN: 0, OK: 1, WARN: 2, DRIFT: 3}


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    if len(expected) != len(actual):
        raise ValueError(f"psi: {len(expected)} expected bins but {len(actual)} actual ones")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    keys = set(p) | set(q)
    divergence = 0.0
    for k in keys:
        pk, qk = p.get(k, 0.0), q.get(k, 0.0)
        m = (pk + qk) / 2
        if pk > 0:
            divergence += 0.5 * pk * math.log2(pk / m)
        if qk > 0:
            divergence += 0.5 * qk * math.log2(qk / m)
    return math.sqrt(max(divergence, 0.0))


def bin_fractions(values: Iterable[float], edges: Sequence[float]) -> list[float]:
    """Fractions of ``values`` in the ``len(edges) + 1`` bins the cut points ``edges`` make
    (a value equal to a cut point goes to the bin above it)."""
    counts = [0] * (len(edges) + 1)
    n = 0
    for v in values:
        counts[bisect_right(edges, v)] += 1
        n += 1
    return [c / n for c in counts] if n else [0.0] * len(counts)


def category_fractions(values: Iterable[str], known: Iterable[str]) -> dict[str, float]:
    """Frequencies of ``values``; those not in ``known`` count under OTHER."""
    known = set(known)
    counts: dict[str, int] = {}
    n = 0
    for v in values:
        key = v if v in known else OTHER
        counts[key] = counts.get(key, 0) + 1
        n += 1
    return {k: c / n for k, c in counts.items()} if n else {}


def level(value: float | None, warn: float, drift: float) -> str:
    """``ok``, ``warn`` or ``drift`` for one measure against its thresholds."""
    if value is None:
        return UNKNOWN
    if value >= drift:
        return DRIFT
    if value >= warn:
        return WARN
    return OK


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=_RANK.__getitem__, default=UNKNOWN)
