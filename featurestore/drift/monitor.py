"""The drift monitor: served samples against the training reference, per model and feature.

For each ``DriftMonitor`` of the repo, a check reads the model's sampled lookups of the
last ``window`` from the serving log and the reference profiles of the model's newest
training set, and measures per watched feature:

- numbers: PSI over the reference's quantile bins; categories: Jensen-Shannon distance
  (unseen values count under ``__other__``);
- the change in null rate (served minus reference, absolute);
- with ``max_staleness``: the age of served values (lookup time minus event time); p95
  above it is ``warn``, p50 above it ``drift``.

A feature's status is its worst measure (``unknown`` below ``min_samples``;
``no_reference`` when the training set holds no usable value of it, e.g. all null because
it was built before the view had data); the model's is the worst feature's, a feature
without reference counting as ``unknown``. Features are matched by ``view:feature``, so a
model promoted to a new version is compared with the profile of the version it was trained
on (the detail names both). Training/serving skew: sampled entity rows are looked up in
the offline store at their lookup time, and served values that differ from the offline ones
are reported.

Each check is recorded in the registry (history) and published to Redis: the summary that
every lookup carries, and the detail ``/v1/drift/{model}`` returns.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from featurestore.drift.profile import CATEGORICAL, NUMERIC, category_key, usable
from featurestore.drift.stats import (
    DRIFT,
    NO_REFERENCE,
    OK,
    UNKNOWN,
    WARN,
    bin_fractions,
    category_fractions,
    js_distance,
    level,
    psi,
    worst,
)
from featurestore.online.layout import drift_detail_key, drift_key, served_key
from featurestore.online.serving_log import decode_batch
from featurestore.references import parse_reference

if TYPE_CHECKING:
    from featurestore.online.store import OnlineStore

SKEW_ROWS = 200  # sampled entity rows compared with the offline store per check
READ_LIMIT = 20_000  # most serving-log batches one check reads


def unversioned(ref: str) -> str:
    parsed = parse_reference(ref)
    return f"{parsed.view}:{parsed.feature}"


def read_served(online: OnlineStore, key: bytes, since_ms: int) -> list[dict[str, Any]]:
    """Serving-log samples appended since ``since_ms`` (oldest first)."""
    entries = online.read_served(key, since_ms, READ_LIMIT)
    return [sample for data in entries for sample in decode_batch(data)]


class Samples:
    """Per feature (``view:feature``): served values, event times and lookup times."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.lookups = len(entries)
        self.values: dict[str, list[Any]] = {}
        self.ages_s: dict[str, list[float]] = {}
        self.served_ref: dict[str, str] = {}
        self.masked: set[str] = set()
        # (lookup time, keys, {feature: value}, {feature: event time}) per entity row
        self.rows: list[tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
        for e in entries:
            names = [unversioned(f) for f in e["f"]]
            for i in e["m"]:
                self.masked.add(names[i])
            for name, ref, values, events in zip(names, e["f"], e["v"], e["e"], strict=True):
                self.served_ref[name] = ref
                self.values.setdefault(name, []).extend(values)
                ages = self.ages_s.setdefault(name, [])
                ages.extend((e["t"] - ev) / 1e6 for ev in events if ev is not None)
            for r, keys in enumerate(e["k"]):
                self.rows.append(
                    (
                        e["t"],
                        keys,
                        {n: e["v"][i][r] for i, n in enumerate(names)},
                        {n: e["e"][i][r] for i, n in enumerate(names)},
                    )
                )


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def not_comparable(
    reference: dict[str, Any] | None, samples: int, spec: dict[str, Any], model: str | None
) -> dict[str, Any] | None:
    """Why a feature cannot be measured (status and reason), or None when it can."""
    if reference is None:
        return {"status": UNKNOWN, "reason": "no reference profile (not in the training set)"}
    if not usable(reference):
        bad = reference.get("non_finite", 0)
        rebuild = (
            f"featurestore training-data --model {model} ..."
            if model
            else "featurestore training-data ..."
        )
        return {
            "status": NO_REFERENCE,
            "reason": (
                f"no usable value in the training set ({reference['nulls']} of "
                f"{reference['count']} rows null{f', {bad} non-finite' if bad else ''}; "
                "e.g. built before the view had data): rebuild the training set once the "
                f"view has data (`{rebuild}`)"
            ),
        }
    if samples < spec["min_samples"]:
        return {
            "status": UNKNOWN,
            "reason": f"{samples} served values in the window; needs {spec['min_samples']}",
        }
    return None


def feature_drift(
    reference: dict[str, Any] | None,
    served: list[Any],
    ages: list[float],
    spec: dict[str, Any],
    *,
    model: str | None = None,
) -> dict[str, Any]:
    """One feature's measures and status (``spec``: the DriftMonitor's thresholds)."""
    out: dict[str, Any] = {"samples": len(served)}
    unmeasured = not_comparable(reference, len(served), spec, model)
    if unmeasured is not None or reference is None:
        return {**out, **(unmeasured or {})}
    # NaN and infinities are counted apart (as the profile does), never binned or averaged.
    non_finite = sum(1 for v in served if _is_non_finite(v))
    nulls = sum(1 for v in served if v is None)
    present = [v for v in served if v is not None and not _is_non_finite(v)]
    levels = []
    if reference["kind"] == NUMERIC and present:
        shares = bin_fractions(present, reference["edges"])
        value = psi(reference["fractions"], shares)
        out["psi"] = round(value, 6)
        out["served_fractions"] = [round(s, 6) for s in shares]  # per reference bin: drawable
        out["served_mean"] = statistics.fmean(present)
        out["reference_mean"] = reference["mean"]
        levels.append(level(value, spec["psi_warn"], spec["psi_drift"]))
    elif reference["kind"] == CATEGORICAL and present:
        current = category_fractions(
            (category_key(v) for v in present), reference["categories"].keys()
        )
        value = js_distance(reference["categories"], current)
        out["js"] = round(value, 6)
        out["served_categories"] = {k: round(v, 6) for k, v in current.items()}
        new = current.get("__other__", 0.0) - reference["categories"].get("__other__", 0.0)
        if new > 0:
            out["unseen_share"] = round(new, 6)
        levels.append(level(value, spec["js_warn"], spec["js_drift"]))

    def share_change(name: str, ref_share: float, served_share: float) -> None:
        moved = abs(served_share - ref_share)
        out[name] = {
            "reference": round(ref_share, 6),
            "served": round(served_share, 6),
            "change": round(moved, 6),
        }
        levels.append(level(moved, spec["null_rate_warn"], spec["null_rate_drift"]))

    ref_nulls = reference["nulls"] / reference["count"] if reference["count"] else 0.0
    share_change("null_rate", ref_nulls, nulls / len(served))
    ref_non_finite = reference.get("non_finite", 0) / reference["count"]
    if non_finite or ref_non_finite:
        share_change("non_finite_rate", ref_non_finite, non_finite / len(served))
    limit = spec.get("max_staleness_seconds")
    if limit and ages:
        ordered = sorted(ages)
        p50 = ordered[len(ordered) // 2]
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        out["age_seconds"] = {"p50": round(p50, 3), "p95": round(p95, 3), "limit": limit}
        levels.append(DRIFT if p50 > limit else WARN if p95 > limit else OK)
    out["status"] = worst(levels)
    return out


def _same(a: Any, b: Any) -> bool:
    if _is_null(a) and _is_null(b):
        return True
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def skew(store: Any, snapshot: Any, samples: Samples, watched: list[str]) -> dict[str, Any]:
    """Served values of sampled rows against the offline store: for each value served, the
    offline row of the same entity at the served value's event time must hold the same
    value (what a training set reading that moment would get). A value newer offline
    than online is staleness, which the staleness measure covers, not skew."""
    import pyarrow as pa

    from featurestore.offline.join import build_request

    features = [f for f in watched if f in samples.served_ref and f not in samples.masked]
    rows = [r for r in samples.rows[-SKEW_ROWS:] if r[1]]
    out: dict[str, Any] = {}
    by_view: dict[str, list[str]] = {}
    for f in features:
        by_view.setdefault(f.split(":", 1)[0], []).append(f)
    for names in by_view.values():
        resolved = [snapshot.resolve(samples.served_ref[f]) for f in names]
        if snapshot.view_version(resolved[0].view, resolved[0].version).on_demand:
            # Computed from request fields the log does not keep: its stored inputs are
            # what can be compared, and are when watched.
            out.update({f: {"checked": 0, "skipped": "on-demand feature"} for f in names})
            continue
        served = [r for r in rows if r[3].get(names[0]) is not None]
        if not served:
            continue
        keys = sorted({k for r in served for k in r[1]})
        table = pa.table(
            {
                **{k: [r[1].get(k) for r in served] for k in keys},
                "event_timestamp": pa.array([r[3][names[0]] for r in served], pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
            }
        )
        request = build_request(
            table, resolved, snapshot, store.config.offline_store_path, full_feature_names=True
        )
        offline = store.offline_engine("duckdb").join(request)
        for f, r in zip(names, resolved, strict=True):
            expected = offline.column(f"{r.view}__{r.feature}").to_pylist()
            mismatches = [
                {"keys": ks, "event_time": ev[f], "served": v[f], "offline": want}
                for (_t, ks, v, ev), want in zip(served, expected, strict=True)
                if not _same(v[f], want)
            ]
            out[f] = {
                "checked": len(served),
                "mismatches": len(mismatches),
                "examples": mismatches[:3],
            }
    return out


def check_model(
    store: Any,
    snapshot: Any,
    online: OnlineStore,
    model: str,
    monitors: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """One check of ``model`` under its monitors' specs: the detail to publish."""
    project = snapshot.project
    reference = store.registry.drift.reference(project, model)
    served_refs = [str(r) for r in snapshot.resolve_model(model)]
    detail: dict[str, Any] = {
        "model": model,
        "monitors": [m["name"] for m in monitors],
        "checked_at": now.isoformat(),
        "training_set": reference[0] if reference else None,
        "features": {},
    }
    if reference is None:
        detail["status"] = UNKNOWN
        detail["reason"] = (
            f"no training set with profiles for '{model}': build one with `featurestore "
            f"training-data --model {model}`"
        )
        return detail
    profiles = {unversioned(ref): p for ref, p in reference[1].items()}
    window = max(m["window_seconds"] for m in monitors)
    since_ms = int(now.timestamp() * 1000) - window * 1000
    samples = Samples(read_served(online, served_key(project, model), since_ms))
    detail["window_seconds"] = window
    detail["lookups"] = samples.lookups
    watched_all: list[str] = []
    for spec in monitors:
        watched = [unversioned(f) for f in spec["features"]] or [
            unversioned(r) for r in served_refs
        ]
        for name in watched:
            result = feature_drift(
                profiles.get(name),
                samples.values.get(name, []),
                samples.ages_s.get(name, []),
                spec,
                model=model,
            )
            result["served"] = samples.served_ref.get(name)
            ref_profile = profiles.get(name)
            result["reference"] = ref_profile["feature"] if ref_profile else None
            previous = detail["features"].get(name)
            if (
                previous is None
                or worst([previous["status"], result["status"]]) != previous["status"]
            ):
                detail["features"][name] = result
            if name not in watched_all:
                watched_all.append(name)
    statuses = [f["status"] for f in detail["features"].values()]
    detail["status"] = worst(UNKNOWN if s == NO_REFERENCE else s for s in statuses)
    missing = [n for n, f in detail["features"].items() if f["status"] == NO_REFERENCE]
    if missing:
        detail["no_reference"] = missing
        if detail["status"] == UNKNOWN and len(missing) == len(statuses):
            detail["reason"] = (
                f"training set #{reference[0]} has no usable value of any watched feature: "
                f"rebuild it once the views have data (`featurestore training-data --model "
                f"{model} ...`)"
            )
    try:
        detail["skew"] = skew(store, snapshot, samples, watched_all)
    except Exception as exc:  # skew is a report; a failing lookup must not hide the drift
        detail["skew"] = {"error": f"{type(exc).__name__}: {exc}"}
    return detail


def summary(detail: dict[str, Any]) -> dict[str, Any]:
    """What every lookup carries: the status and the features that are not ok."""
    return {
        "model": detail["model"],
        "status": detail["status"],
        "features": {
            name: f["status"]
            for name, f in detail["features"].items()
            if f["status"] in (WARN, DRIFT)
        },
        "checked_at": detail["checked_at"],
        **({"no_reference": detail["no_reference"]} if "no_reference" in detail else {}),
        **({"reason": detail["reason"]} if "reason" in detail else {}),
    }


def monitors_by_model(snapshot: Any, model: str | None = None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, head in sorted(snapshot.active("drift_monitor").items()):
        spec = {**head.spec, "name": name}
        if model is None or spec["model"] == model:
            out.setdefault(spec["model"], []).append(spec)
    return out


def run_checks(store: Any, model: str | None = None) -> list[dict[str, Any]]:
    """Check every monitored model (or one): publish, record, and return the details."""
    from featurestore.errors import ObjectNotFound

    snapshot = store.snapshot()
    by_model = monitors_by_model(snapshot, model)
    if model is not None and not by_model:
        snapshot.model(model)  # unknown model: ObjectNotFound with a suggestion
        raise ObjectNotFound(
            f"No DriftMonitor watches model '{model}'. Declare one in the feature repo "
            "(DriftMonitor(name=..., model=...)) and apply."
        )
    online = store.online_store
    details = []
    for name, monitors in by_model.items():
        now = datetime.now(UTC)
        detail = check_model(store, snapshot, online, name, monitors, now)
        check_id = store.registry.drift.record_check(
            snapshot.project, name, detail["status"], detail["training_set"], detail, now
        )
        detail["check"] = check_id
        online.publish(
            {
                drift_key(snapshot.project, name): orjson.dumps(summary(detail)),
                drift_detail_key(snapshot.project, name): orjson.dumps(detail, default=str),
            }
        )
        details.append(detail)
    return details


def monitor_forever(store: Any, interval: float) -> Iterator[list[dict[str, Any]]]:
    """Check every ``interval`` seconds; yield each round's details."""
    while True:
        started = time.monotonic()
        yield run_checks(store)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
