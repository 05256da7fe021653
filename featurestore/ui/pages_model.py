"""A model's page: what it reads and the policy decision on each feature, its API keys (never
a secret), what it serves against what it was trained on, its training sets and drift.

Most of it is ``lineage.queries.model_lineage`` (what ``featurestore lineage model``
prints); drift histograms are drawn from the newest check and its reference profiles.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from featurestore.definitions.on_demand import OnDemandFeatureView
from featurestore.drift.monitor import unversioned
from featurestore.drift.profile import CATEGORICAL, NUMERIC
from featurestore.drift.stats import NO_REFERENCE, UNKNOWN
from featurestore.lineage.queries import model_lineage
from featurestore.policy.engine import DENY, FeatureAttributes, decide, model_decisions
from featurestore.registry.drift import DriftCheck
from featurestore.registry.snapshot import RegistrySnapshot
from featurestore.times import now_utc
from featurestore.ui.histogram import categorical_svg, numeric_svg
from featurestore.ui.page import PAGE_SIZE, PageContext, Rendered


def denied_unserved(
    snapshot: RegistrySnapshot, model: str, default: str, served: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Features a deny policy naming ``model`` keeps from it, among those it does not serve
    (apply refuses a model whose services read a denied feature, so none is served)."""
    decisions = model_decisions(snapshot, model, default)
    m = decisions.model
    rules = [
        p
        for p in decisions.policies
        if p.effect == DENY and p.models.matches(m.name, m.purpose, m.owner)
    ]
    if not rules:  # the common case: no view is read at all
        return []
    out = []
    for view_name in sorted(snapshot.active("feature_view")):
        view = snapshot.any_view(view_name)
        vv = snapshot.view_version(view_name)
        for feature in vv.feature_dtypes:
            if (view_name, feature) in served:
                continue
            d = decide(rules, default, FeatureAttributes.of(view, feature), m)
            if d.effect == DENY and d.rule is not None:
                on_demand = isinstance(view, OnDemandFeatureView)
                out.append(
                    {
                        "feature": f"{vv.label}:{feature}",
                        "rule": d.rule,
                        "on_demand": on_demand,
                    }
                )
    return out


def policy_rows(ctx: PageContext, lineage: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per feature the model reads: its decision and the rule that made it."""
    snapshot = ctx.snapshot
    rows = []
    for s in lineage["serves"]:
        rule = s.get("rule")
        mask = ""
        if s["decision"] == "mask" and rule and snapshot.is_active("policy", rule):
            mask = str(snapshot.heads[("policy", rule)].spec.get("mask") or "hash")
        rows.append(
            {
                "feature": s["feature"],
                "dtype": s["dtype"],
                "decision": s["decision"],
                "rule": rule,
                "rule_link": rule_link(ctx, rule),
                "via": s.get("via", ""),
                "mask": mask,
                "served": True,
            }
        )
    served = {(r.view, r.feature) for r in snapshot.resolve_model(lineage["model"])}
    default = ctx.state.store.config.policy_default
    denied = ctx.state.derived(
        f"denied_unserved:{lineage['model']}",
        lambda s: denied_unserved(s, lineage["model"], default, served),
    )
    for d in denied:
        rows.append(
            {
                "feature": d["feature"],
                "dtype": "",
                "decision": DENY,
                "rule": d["rule"],
                "rule_link": rule_link(ctx, d["rule"]),
                "via": "",
                "mask": "",
                "served": False,
            }
        )
    return rows


def rule_link(ctx: PageContext, rule: str | None) -> str:
    if rule and ctx.snapshot.is_active("policy", rule):
        return ctx.url("objects", "policy", rule)
    return ""


def key_rows(ctx: PageContext, model: str) -> list[dict[str, Any]]:
    """The model's API keys: id, label, dates and status. A credential holds no secret
    (only its salted hash), and not even the hash is shown."""
    now = now_utc()
    return [
        {
            "label": c.label,
            "key_id": c.key_id,
            "description": c.description,
            "created_at": c.created_at,
            "created_by": c.created_by,
            "expires_at": c.expires_at,
            "revoked_at": c.revoked_at,
            "status": c.status(now),
        }
        for c in ctx.state.store.registry.credentials.records(ctx.snapshot.project, model)
    ]


def histogram(label: str, result: dict[str, Any], profile: dict[str, Any] | None) -> Markup | None:
    """The feature's reference-against-served SVG, or None when there is nothing to draw."""
    if profile is None or result.get("status") in (UNKNOWN, NO_REFERENCE):
        return None
    if profile.get("kind") == NUMERIC and profile.get("fractions"):
        return numeric_svg(
            label, profile.get("edges") or [], profile["fractions"], result.get("served_fractions")
        )
    if profile.get("kind") == CATEGORICAL and profile.get("categories"):
        return categorical_svg(label, profile["categories"], result.get("served_categories"))
    return None


def why_no_histogram(result: dict[str, Any], profile: dict[str, Any] | None) -> str:
    if result.get("reason"):
        return str(result["reason"])
    if profile is None:
        return "no reference profile for this feature in the training set"
    return f"a {profile.get('kind', 'non-numeric')} feature: no distribution to draw"


def drift_features(ctx: PageContext, check: DriftCheck, hidden: set[str]) -> list[dict[str, Any]]:
    """Per feature of the newest check: status, measure and the histogram (or why none).
    ``hidden``: features masked or denied to the model, whose profile's categories and bin
    edges are values it may not see, so they are not drawn."""
    profiles: dict[str, dict[str, Any]] = {}
    if check.training_set is not None:
        profiles = ctx.state.store.registry.drift.profiles(ctx.snapshot.project, check.training_set)
    out = []
    for name, result in sorted(check.detail.get("features", {}).items()):
        label = str(result.get("reference") or result.get("served") or name)
        profile = profiles.get(label)
        svg = None if name in hidden else histogram(label, result, profile)
        measure = (
            f"PSI {result['psi']:.3f}"
            if "psi" in result
            else f"JS {result['js']:.3f}"
            if "js" in result
            else ""
        )
        out.append(
            {
                "name": name,
                "label": label,
                "served": result.get("served") or "",
                "status": result.get("status", UNKNOWN),
                "measure": measure,
                "samples": result.get("samples"),
                "svg": svg,
                "reason": ""
                if svg is not None
                else "masked or denied to this model: its values are not shown"
                if name in hidden
                else why_no_histogram(result, profile),
            }
        )
    return out


def history_rows(checks: list[DriftCheck]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id,
            "checked_at": c.checked_at,
            "status": c.status,
            "training_set": c.training_set,
            "flagged": {
                n: f.get("status")
                for n, f in sorted(c.detail.get("features", {}).items())
                if f.get("status") in ("warn", "drift")
            },
            "reason": str(c.detail.get("reason") or ""),
        }
        for c in checks
    ]


def drift_context(ctx: PageContext, model: str, hidden: set[str]) -> dict[str, Any]:
    """The newest check's features, and one page of the history (one more check read than
    shown, to know whether there are older ones)."""
    offset = ctx.int_param("offset")
    drift = ctx.state.store.registry.drift
    project = ctx.snapshot.project
    page = drift.checks(project, model, limit=PAGE_SIZE + 1, offset=offset)
    newest = page[:1] if offset == 0 else drift.checks(project, model, limit=1)
    latest = newest[0] if newest else None
    return {
        "latest": latest,
        "latest_reason": str(latest.detail.get("reason") or "") if latest else "",
        "drift_features": drift_features(ctx, latest, hidden) if latest else [],
        "history": history_rows(page[:PAGE_SIZE]),
        "history_offset": offset,
        "history_more": len(page) > PAGE_SIZE,
        "page_size": PAGE_SIZE,
    }


def model_page(ctx: PageContext) -> Rendered:
    name = ctx.path["name"]
    store = ctx.state.store
    lineage = model_lineage(  # ObjectNotFound (with a suggestion) for an unknown model
        store.registry,
        ctx.snapshot,
        store.config.offline_store_path,
        name,
        store.config.policy_default,
    )
    spec = ctx.snapshot.head("model", name).spec
    newest = lineage["training_sets"][0] if lineage["training_sets"] else None
    hidden = {unversioned(s["feature"]) for s in lineage["serves"] if s["decision"] != "allow"}
    return Rendered(
        "model.html",
        {
            "m": lineage,
            "spec": spec,
            "policies": policy_rows(ctx, lineage),
            "keys": key_rows(ctx, name),
            "newest": newest,
            "training_sets": lineage["training_sets"][:PAGE_SIZE],
            **drift_context(ctx, name, hidden),
        },
        title=f"model {name}",
    )
