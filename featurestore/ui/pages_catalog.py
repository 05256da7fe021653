"""The catalog page (search and filters), its JSON for search as you type, and a plain
page for the kinds without a page of their own (entities, sources, services, policies)."""

from __future__ import annotations

from typing import Any

from featurestore.errors import ObjectNotFound, did_you_mean
from featurestore.ui.catalog import LABELS, Entry, Query, build_index, facets, search
from featurestore.ui.page import PAGE_SIZE, PageContext, Rendered
from featurestore.ui.render import Renderer


def index(ctx: PageContext) -> list[Entry]:
    return ctx.state.derived("catalog", build_index)


def link(renderer: Renderer, kind: str, name: str) -> str:
    """Where the page of an object (or a feature, ``view:feature``) is."""
    if kind == "feature_view":
        return renderer.url("views", name)
    if kind == "feature":
        view, _, feature = name.partition(":")
        return renderer.url("views", view) + f"#f-{feature}"
    if kind == "model":
        return renderer.url("models", name)
    return renderer.url("objects", kind, name)


def catalog(ctx: PageContext) -> Rendered:
    query = Query.of(ctx.params)
    found = search(index(ctx), query, ctx.int_param("offset"))
    return Rendered(
        "catalog.html",
        {
            "query": query.params(),
            "found": found,
            "rows": [(e, link(ctx.renderer, e.kind, e.name)) for e in found["entries"]],
            "facets": ctx.state.derived("facets", lambda _s: facets(index(ctx))),
            "labels": LABELS,
            "size": PAGE_SIZE,
        },
        title="Catalog",
    )


def catalog_json(ctx: PageContext) -> dict[str, Any]:
    query = Query.of(ctx.params)
    found = search(index(ctx), query, ctx.int_param("offset"))
    return {
        "total": found["total"],
        "offset": found["offset"],
        "entries": [e.to_json(link(ctx.renderer, e.kind, e.name)) for e in found["entries"]],
    }


def object_page(ctx: PageContext) -> Rendered:
    kind, name = ctx.path["kind"], ctx.path["name"]
    snapshot = ctx.snapshot
    head = snapshot.heads.get((kind, name))
    if head is None:
        known = sorted(snapshot.active(kind)) if kind in LABELS else []
        raise ObjectNotFound(
            f"Project '{snapshot.project}' has no {LABELS.get(kind, kind)} '{name}'."
            f"{did_you_mean(name, known)}"
        )
    return Rendered(
        "object.html",
        {"head": head, "kind_label": LABELS.get(kind, kind), "used_by": used_by(ctx, kind, name)},
        title=f"{LABELS.get(kind, kind)} {name}",
    )


def used_by(ctx: PageContext, kind: str, name: str) -> list[tuple[str, str, str]]:
    """``(kind label, name, link)`` of the objects that name this one in their spec."""
    out = []
    heads = ctx.snapshot.heads
    for other_kind, other in sorted(heads):
        head = heads[(other_kind, other)]
        if head.status != "active" or (other_kind, other) == (kind, name):
            continue
        spec = head.spec
        refs = {
            "entity": spec.get("entities") or (),
            "source": [spec.get("source")] if isinstance(spec.get("source"), str) else (),
            "feature_service": spec.get("feature_services") or (),
        }.get(kind, ())
        if name in refs:
            label = LABELS.get(other_kind, other_kind)
            out.append((label, other, link(ctx.renderer, other_kind, other)))
    return out
