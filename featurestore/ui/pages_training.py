"""Training sets: the recorded builds (filter by model; 50 a page) and one build's
lineage: what it read (view versions at offline manifests), how, and its reference
profiles' summary (counts and nulls only: a profile's statistics stay on the drift pages).
Builds are not covered by the registry's serial, so each page reads them afresh."""

from __future__ import annotations

from typing import Any

from featurestore.errors import InvalidReferenceError
from featurestore.references import parse_reference
from featurestore.ui.page import PAGE_SIZE, PageContext, Rendered
from featurestore.ui.pages_lineage import hrefs


def training_sets(ctx: PageContext) -> Rendered:
    model = ctx.text_param("model")
    offset = ctx.int_param("offset")
    registry, project = ctx.state.store.registry, ctx.state.project
    builds = registry.training_sets(project, model or None, limit=PAGE_SIZE, offset=offset)
    models = sorted(ctx.snapshot.active("model"))
    if model and model not in models:
        models.append(model)  # a removed model's builds stay listed
    return Rendered(
        "training_sets.html",
        {
            "builds": builds,
            "total": registry.training_set_count(project, model or None),
            "offset": offset,
            "size": PAGE_SIZE,
            "filters": {"model": model},
            "models": models,
            "href": hrefs(ctx),
        },
        title="Training sets",
    )


def training_set(ctx: PageContext) -> Rendered:
    project, registry = ctx.state.project, ctx.state.store.registry
    record = registry.training_set(project, ctx.id_param("id", "training set"))
    assert record.id is not None  # a stored record has its id
    profiles = registry.drift.profiles(project, record.id)
    return Rendered(
        "training_set.html",
        {
            "ts": record,
            "features": [feature_row(f, profiles.get(f)) for f in record.features],
            "href": hrefs(ctx),
        },
        title=f"Training set #{record.id}",
    )


def feature_row(ref: str, profile: dict[str, Any] | None) -> dict[str, Any]:
    """A feature the build read: its reference, view, name and profile summary."""
    try:
        parsed = parse_reference(ref)
        view, name = parsed.view, parsed.feature
    except InvalidReferenceError:  # recorded by an older release: shown as it is
        view, name = "", ref
    summary = None
    if profile is not None:
        summary = {k: profile.get(k) for k in ("kind", "count", "nulls", "non_finite")}
    return {"ref": ref, "view": view, "name": name, "profile": summary}
