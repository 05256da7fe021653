"""Lineage answers, from what the registry already records.

A feature's lineage is its source (per version), its versions, the materialization runs
that wrote them, the training sets built from them and the models that serve them, each
with the policy decision that applies. A model's lineage is every feature version it
serves now and was trained on, where each came from, and where the two differ: the
version skew that makes served values differ from training values.

Answers are plain dicts (the CLI prints them, ``--json`` dumps them as they are).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featurestore.errors import FeatureNotFound, InvalidReferenceError, did_you_mean
from featurestore.policy.engine import feature_decision, model_decisions
from featurestore.references import FeatureRef, parse_reference


def source_summary(source: dict[str, Any]) -> dict[str, Any]:
    """What a view version reads: a Parquet path or a Kafka topic (and its history)."""
    out: dict[str, Any] = {"name": source.get("name"), "type": source.get("type")}
    if source.get("type") == "kafka":
        out["topic"] = source.get("topic")
        if source.get("batch_source"):
            out["history"] = source_summary(source["batch_source"])
    elif "path" in source:
        out["path"] = source["path"]
    return out


def offline_state(offline_root: Path, project: str, view: str, version: int) -> dict[str, Any]:
    """The version's offline table now: manifest, rows, last commit and, for a streamed
    view, the Kafka offsets and newest event time it has landed."""
    from featurestore.offline.table import OfflineTable
    from featurestore.offline.writer import table_path
    from featurestore.times import from_micros

    manifest = OfflineTable(table_path(offline_root, project, view, version)).manifest()
    state: dict[str, Any] = {
        "manifest": manifest.sequence,
        "rows": manifest.rows,
        "operation": manifest.operation,
        "committed_at": manifest.committed_at or None,
    }
    stream = manifest.detail.get("stream")
    if stream:
        newest = max((int(v) for v in stream.get("max_event_us", {}).values()), default=None)
        state["stream"] = {
            "offsets": stream.get("offsets", {}),
            "newest_event": from_micros(newest) if newest is not None else None,
        }
    return state


def _aggregation(spec: dict[str, Any] | None) -> str | None:
    if not spec:
        return None
    column = spec.get("column") or ""
    return f"{spec['function']}({column}) over {spec['window_seconds']}s"


def run_summary(run: Any) -> dict[str, Any]:
    """A run's recorded fields, as lineage answers and the UI show them."""
    return {
        "id": run.id,
        "version": run.version,
        "status": run.status,
        "window_start": run.window_start,
        "window_end": run.window_end,
        "rows_read": run.rows_read,
        "rows_offline": run.rows_offline,
        "rows_online": run.rows_online,
        "offline_manifest": run.offline_manifest,
        "sources": run.sources,
        "code_version": run.code_version,
        "engine": run.engine,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "started_by": run.started_by,
    }


def _training_set(ts: Any, features: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": ts.id,
        "model": ts.model,
        "created_at": ts.created_at,
        "created_by": ts.created_by,
        "rows": ts.rows,
        "engine": ts.engine,
        "output_path": ts.output_path,
        "features": features if features is not None else list(ts.features),
        "offline_manifests": ts.offline_manifests,
        "fingerprint": ts.fingerprint,
        "as_of": ts.as_of,  # only rows landed by then were read (None: all)
        "spine": ts.spine,  # entity rows from a view's own rows (None: given)
    }


def _decision(
    snapshot: Any, model: str, view: str, version: int, feature: str, default: str
) -> dict[str, Any]:
    decisions = model_decisions(snapshot, model, default)
    d = feature_decision(snapshot, decisions, snapshot.resolve(FeatureRef(view, feature, version)))
    out = {"decision": d.effect, "rule": d.rule, "mask": d.mask}
    return {**out, "via": d.via} if d.via else out


def _version_entry(snapshot: Any, offline_root: Path, vv: Any, feature: str) -> dict[str, Any]:
    return {
        "version": vv.version,
        "status": vv.status,
        "dtype": str(vv.feature_dtypes[feature]),
        "created_at": vv.created_at,
        "retired_at": vv.retired_at,
        "source": source_summary(vv.version_spec.get("source", {})),
        "transformation": vv.version_spec.get("transformation"),
        **({"on_demand": _on_demand(snapshot, vv)} if vv.on_demand else {}),
        "aggregation": _aggregation(
            next(
                (a for a in vv.version_spec.get("aggregations") or [] if a["name"] == feature),
                None,
            )
        ),
        "offline": offline_state(offline_root, snapshot.project, vv.view, vv.version),
    }


def _on_demand(snapshot: Any, vv: Any) -> dict[str, Any] | None:
    """What an on-demand version computes from: its function, inputs and request fields."""
    if not vv.on_demand:
        return None
    spec = vv.version_spec
    return {
        "mode": spec["mode"],
        "function": spec["function"],
        "inputs": [str(r) for r in snapshot.on_demand_inputs(vv.view, vv.version)],
        "request_fields": [
            f"{r['name']}.{f['name']} ({f['dtype']})" for r in spec["request"] for f in r["schema"]
        ],
    }


def feature_lineage(
    registry: Any, snapshot: Any, offline_root: Path, ref: str, policy_default: str
) -> dict[str, Any]:
    """Lineage of ``view:feature`` (every version that has it) or ``view@vN:feature``."""
    parsed = parse_reference(ref)
    snapshot.view_version(parsed.view, parsed.version)  # FeatureViewNotFound, VersionNotFound
    project, view, feature = snapshot.project, parsed.view, parsed.feature
    versions = [
        vv
        for n, vv in sorted(snapshot.versions.get(view, {}).items())
        if feature in vv.feature_dtypes and parsed.version in (None, n)
    ]
    if not versions:
        known = {f for vv in snapshot.versions.get(view, {}).values() for f in vv.feature_dtypes}
        raise FeatureNotFound(
            f"No version of feature view '{view}' has a feature '{feature}'."
            f"{did_you_mean(feature, sorted(known))} See `featurestore describe {view}`."
        )
    numbers = {vv.version for vv in versions}
    labels = {f"{view}@v{n}:{feature}" for n in numbers}
    runs = [r for r in registry.runs.records(project, view) if r.version in numbers]
    builds = [
        _training_set(ts, sorted(labels.intersection(ts.features)))
        for ts in registry.training_sets(project)
        if labels.intersection(ts.features)
    ]
    models = []
    for name in sorted(snapshot.active("model")):
        served = [
            r for r in snapshot.resolve_model(name) if r.view == view and r.feature == feature
        ]
        trained = sorted({f for b in builds if b["model"] == name for f in b["features"]})
        if not served and not trained:
            continue
        use: dict[str, Any] = {
            "model": name,
            "serves": [str(r) for r in served],
            "trained_on": trained,
            "services": [
                s
                for s in snapshot.model(name).service_names
                if any(
                    parse_reference(t).view == view and parse_reference(t).feature == feature
                    for t in snapshot.feature_service(s).references
                )
            ],
        }
        if served:
            use.update(_decision(snapshot, name, view, served[0].version, feature, policy_default))
        models.append(use)
    return {
        "project": project,
        "feature": f"{view}:{feature}",
        "versions": [_version_entry(snapshot, offline_root, vv, feature) for vv in versions],
        "materialization_runs": [run_summary(r) for r in runs],
        "training_sets": builds,
        "models": models,
    }


def model_lineage(
    registry: Any, snapshot: Any, offline_root: Path, model: str, policy_default: str
) -> dict[str, Any]:
    """What ``model`` serves now and was trained on, where each came from, and the skew."""
    project = snapshot.project
    spec = snapshot.model(model)  # ObjectNotFound with a suggestion
    decisions = model_decisions(snapshot, model, policy_default)
    served = snapshot.resolve_model(model)
    last_run: dict[tuple[str, int], Any] = {}
    for view in {r.view for r in served}:
        for run in registry.runs.records(project, view):  # newest first
            if run.status == "succeeded":
                last_run.setdefault((view, run.version), run)
    offline = {
        (r.view, r.version): offline_state(offline_root, project, r.view, r.version) for r in served
    }
    serving = []
    for r in served:
        vv = snapshot.view_version(r.view, r.version)
        d = feature_decision(snapshot, decisions, r)
        run = last_run.get((r.view, r.version))
        serving.append(
            {
                "feature": str(r),
                "dtype": str(r.dtype),
                "decision": d.effect,
                "rule": d.rule,
                **({"via": d.via} if d.via else {}),
                "source": source_summary(vv.version_spec.get("source", {})),
                **({"on_demand": _on_demand(snapshot, vv)} if vv.on_demand else {}),
                "last_materialization": run_summary(run) if run else None,
                "offline": offline[(r.view, r.version)],
            }
        )
    builds = registry.training_sets(project, model)
    served_by_name = {f"{r.view}:{r.feature}": str(r) for r in served}
    skew = []
    if builds:
        latest = builds[0]
        trained = {}
        for f in latest.features:
            try:
                p = parse_reference(f)
            except InvalidReferenceError:
                continue
            trained[f"{p.view}:{p.feature}"] = f
        for name, now in served_by_name.items():
            if name not in trained:
                skew.append({"feature": name, "serves": now, "trained_on": None})
            elif trained[name] != now:
                skew.append({"feature": name, "serves": now, "trained_on": trained[name]})
        for name, then in trained.items():
            if name not in served_by_name:
                skew.append({"feature": name, "serves": None, "trained_on": then})
    at = datetime.now(UTC)
    credentials = [
        c.label for c in registry.credentials.records(project, model) if c.status(at) == "active"
    ]
    return {
        "project": project,
        "model": model,
        "purpose": spec.purpose,
        "owner": spec.owner,
        "feature_services": list(spec.service_names),
        "pins": snapshot.model_pins(model),
        "serves": serving,
        "training_sets": [_training_set(ts) for ts in builds],
        "skew": skew,  # against the newest training set
        "api_keys": credentials,
        "drift": _last_drift_check(registry, project, model),
    }


def _last_drift_check(registry: Any, project: str, model: str) -> dict[str, Any] | None:
    checks = registry.drift.checks(project, model, limit=1)
    if not checks:
        return None
    c = checks[0]
    return {
        "status": c.status,
        "checked_at": c.checked_at,
        "reference_training_set": c.training_set,
        "flagged": {
            name: f["status"]
            for name, f in c.detail.get("features", {}).items()
            if f["status"] in ("warn", "drift")
        },
    }
