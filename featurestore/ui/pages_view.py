"""A feature view's page: what it is, its versions and how their schemas moved, the
features of one version, the models pinned to each version, its latest runs and how fresh
its offline data is.

Read from the registry snapshot and the offline tables' manifests only: no Redis call, so
the page renders when the online store is down (online freshness is ``describe``'s).
"""

from __future__ import annotations

import itertools
from typing import Any

from featurestore.errors import VersionNotFound
from featurestore.lineage.queries import offline_state, run_summary, source_summary
from featurestore.registry.runs import PUSH_ENGINE, SUCCEEDED, RunRecord
from featurestore.registry.snapshot import ACTIVE, RegistrySnapshot, ViewVersion
from featurestore.ui.page import PageContext, Rendered
from featurestore.ui.pages_catalog import link

RUNS_SHOWN = 20


def pins_by_view(snapshot: RegistrySnapshot) -> dict[str, dict[int, list[str]]]:
    """``{view: {version: [models pinned to it]}}``, one pass over the active models."""
    out: dict[str, dict[int, list[str]]] = {}
    for name, head in sorted(snapshot.active("model").items()):
        for view, version in (head.spec.get("pins") or {}).items():
            out.setdefault(view, {}).setdefault(int(version), []).append(name)
    return out


def schema_of(vv: ViewVersion) -> dict[str, str]:
    """``{feature: dtype}`` of a version, in schema order."""
    return {f["name"]: str(f["dtype"]) for f in vv.version_spec.get("schema") or ()}


def schema_diff(old: dict[str, str], new: dict[str, str]) -> list[dict[str, str]]:
    """What changed from one version's schema to the next: ``{"change": add|del|chg,
    "feature", "dtype", "was"}`` (dtype: the new one; was: the old one, for del/chg)."""
    out = []
    for name, dtype in new.items():
        if name not in old:
            out.append({"change": "add", "feature": name, "dtype": dtype, "was": ""})
        elif old[name] != dtype:
            out.append({"change": "chg", "feature": name, "dtype": dtype, "was": old[name]})
    out += [
        {"change": "del", "feature": name, "dtype": "", "was": dtype}
        for name, dtype in old.items()
        if name not in new
    ]
    return out


def selected(ctx: PageContext, name: str, versions: dict[int, ViewVersion]) -> ViewVersion:
    """The version ``?v=N`` asks for (retired ones too: they are history), else the latest."""
    latest = ctx.snapshot.latest_version(name)
    number = ctx.int_param("v", latest, low=0)
    found = versions.get(number)
    if found is None:
        listed = ", ".join(f"v{v}" for v in sorted(versions)) or "none"
        raise VersionNotFound(f"Feature view '{name}' has no version v{number} (it has: {listed}).")
    return found


def features_of(vv: ViewVersion, head_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The version's features with their descriptions and tags (as defined now when the
    feature is still in the view: descriptions and tags do not make a version)."""
    current = {f["name"]: f for f in head_spec.get("schema") or ()}
    then = {f["name"]: f for f in vv.spec.get("schema") or ()}
    windows = {
        a["name"]: f"{a['function']}({a.get('column') or ''}) over {duration(a['window_seconds'])}"
        for a in vv.version_spec.get("aggregations") or ()
    }
    out = []
    for name, dtype in schema_of(vv).items():
        meta = current.get(name) or then.get(name) or {}
        out.append(
            {
                "name": name,
                "dtype": dtype,
                "aggregation": windows.get(name, ""),
                "description": str(meta.get("description") or ""),
                "tags": {str(k): str(v) for k, v in (meta.get("tags") or {}).items()},
            }
        )
    return out


def transformation_of(vv: ViewVersion) -> str:
    """The code a version runs: its transformation's source (the version spec keeps only
    its fingerprint; the version's full spec keeps the code), or an on-demand function."""
    if vv.on_demand:
        function = vv.spec.get("function") or {}
        return str(function.get("source") or function.get("code") or "")
    full = vv.spec.get("transformation")
    if isinstance(full, dict):
        return str(full.get("source") or full.get("name") or "")
    fingerprint = vv.version_spec.get("transformation")
    return f"(code not recorded; fingerprint {fingerprint})" if fingerprint else ""


def duration(seconds: Any) -> str:
    """``90d``, ``1h``, ``10m 30s``; '' for none (no TTL)."""
    if not seconds:
        return ""
    left, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts)


def expectation_text(e: dict[str, Any]) -> str:
    """``between(age, min_value=18, max_value=120)``: an expectation on one line."""
    args = [str(e.get("column", ""))] + [
        f"{k}={v}" for k, v in e.items() if k not in ("type", "column") and v is not None
    ]
    return f"{e.get('type', '?')}({', '.join(args)})"


def kind_of(vv: ViewVersion) -> str:
    if vv.on_demand:
        return "on-demand"
    return "streaming" if vv.version_spec.get("source", {}).get("type") == "kafka" else "batch"


def run_row(run: RunRecord) -> dict[str, Any]:
    validation = run.validation
    checked = ""
    if validation:
        expectations = validation.get("expectations") or []
        passed = sum(1 for e in expectations if e.get("success"))
        verdict = "passed" if validation.get("success") else "failed"
        checked = f"{verdict} ({passed}/{len(expectations)} expectations)"
    return {
        **run_summary(run),
        "engine": run.engine or "",
        "validation": checked,
        "error": run.error or "",
    }


def freshness(
    ctx: PageContext, name: str, versions: dict[int, ViewVersion], runs: list[RunRecord]
) -> list[dict[str, Any]]:
    """Per active stored version: its offline table now and how far runs have read."""
    store = ctx.state.store
    out = []
    for number, vv in sorted(versions.items()):
        if vv.status != ACTIVE or vv.on_demand:
            continue
        done = [
            r
            for r in runs
            if r.version == number and r.status == SUCCEEDED and r.engine != PUSH_ENGINE
        ]
        watermark = max((r.window_end for r in done), default=None)
        if watermark is None and len(runs) >= RUNS_SHOWN:  # older than the runs shown
            watermark = store.registry.runs.watermark(ctx.snapshot.project, name, number)
        out.append(
            {
                "version": number,
                "watermark": watermark,
                **offline_state(
                    store.config.offline_store_path, ctx.snapshot.project, name, number
                ),
            }
        )
    return out


def view_page(ctx: PageContext) -> Rendered:
    name = ctx.path["name"]
    snapshot = ctx.snapshot
    head = snapshot.view_head(name)  # FeatureViewNotFound, with a suggestion
    versions = dict(sorted(snapshot.versions.get(name, {}).items()))
    vv = selected(ctx, name, versions)
    spec = head.spec
    numbers = list(versions)
    diffs = [
        {
            "from": a,
            "to": b,
            "changes": schema_diff(schema_of(versions[a]), schema_of(versions[b])),
        }
        for a, b in itertools.pairwise(numbers)
    ]
    pins = ctx.state.derived("pins_by_view", pins_by_view).get(name, {})
    runs = ctx.state.store.registry.runs.records(snapshot.project, name, limit=RUNS_SHOWN)
    source = vv.version_spec.get("source")
    return Rendered(
        "view.html",
        {
            "name": name,
            "kind": kind_of(vv),
            "source_link": link(ctx.renderer, "source", str(spec["source"]))
            if isinstance(spec.get("source"), str)
            else "",
            "spec": spec,
            "entities": [
                (str(e), link(ctx.renderer, "entity", str(e))) for e in spec.get("entities") or ()
            ],
            "ttl": duration(spec.get("ttl_seconds")),
            "source": source_summary(source) if source else None,
            "inputs": [str(r) for r in snapshot.on_demand_inputs(name, vv.version)]
            if vv.on_demand and vv.status == ACTIVE
            else [],
            "transformation": transformation_of(vv),
            "expectations": [expectation_text(e) for e in vv.spec.get("expectations") or []],
            "versions": [
                {"vv": v, "models": pins.get(n, []), "selected": n == vv.version}
                for n, v in versions.items()
            ],
            "diffs": diffs,
            "vv": vv,
            "features": features_of(vv, spec),
            "runs": [run_row(r) for r in runs],
            "freshness": freshness(ctx, name, versions, runs),
        },
        title=f"view {name}",
    )
