"""Lineage pages: a model's or a feature's graph (sources, runs, view versions, training
sets, models) and the same facts as tables, from ``lineage.queries`` (what the CLI's
``featurestore lineage`` prints).

Runs and training sets are not covered by the registry's serial, so each page asks the
registry afresh (a few indexed reads and one manifest per view version, as the CLI does).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from featurestore.errors import InvalidReferenceError, NotFoundError
from featurestore.lineage.queries import feature_lineage, model_lineage
from featurestore.references import parse_reference
from featurestore.registry.snapshot import RegistrySnapshot
from featurestore.ui.graph import Graph, Node, layout, svg
from featurestore.ui.page import PageContext, Rendered
from featurestore.ui.pages_catalog import link
from featurestore.ui.render import Renderer

TRAINING_SETS_DRAWN = 8  # per graph; the rest are one "+N more" node
RUNS_DRAWN = 3  # per view version in a feature's graph


def hrefs(ctx: PageContext) -> Callable[[str, str], str]:
    """``pages_catalog.link`` for a template: ``href('model', name)``."""
    return partial(link, ctx.renderer)


class LineageGraph:
    """A Graph being built from a lineage answer: nodes made with their links."""

    def __init__(self, renderer: Renderer, snapshot: RegistrySnapshot) -> None:
        self.graph = Graph()
        self.renderer = renderer
        self.snapshot = snapshot

    def model(self, name: str) -> str:
        return self.graph.add(Node("model", name, name, link(self.renderer, "model", name)))

    def source(self, name: str) -> str:
        return self.graph.add(Node("source", name, name, link(self.renderer, "source", name)))

    def run(self, run: dict[str, Any]) -> str:
        rid = str(run["id"])
        return self.graph.add(Node("run", rid, f"run #{rid}", self.renderer.url("runs", rid)))

    def training_set(self, ts: dict[str, Any]) -> str:
        tid = str(ts["id"])
        href = self.renderer.url("training-sets", tid)
        key = self.graph.add(Node("training_set", tid, f"training set #{tid}", href))
        for ref in ts["features"]:
            version = self.version_of(ref)
            if version is not None:
                self.graph.link(version, key)
        if ts["model"]:
            self.graph.link(key, self.model(ts["model"]))
        return key

    def more(self, kind: str, count: int, what: str, href: str, scope: str = "") -> str:
        """One node standing for ``count`` nodes not drawn."""
        label = f"+{count} more {what}"
        return self.graph.add(Node(kind, f"more:{scope}", label, href))

    def version_of(self, ref: str) -> str | None:
        """The node of the view version a pinned reference (``view@vN:feature``) names;
        None for one that names no version (as an older release may have recorded)."""
        try:
            parsed = parse_reference(ref)
        except InvalidReferenceError:
            return None
        return None if parsed.version is None else self.version(parsed.view, parsed.version)

    def version(self, view: str, number: int) -> str:
        """A view version's node, with its sources (or, on demand, its input versions)."""
        label = f"{view}@v{number}"
        if f"view:{label}" in self.graph.nodes:
            return f"view:{label}"
        key = self.graph.add(Node("view", label, label, link(self.renderer, "feature_view", view)))
        vv = self.snapshot.versions.get(view, {}).get(number)
        if vv is None:  # a training set's version the registry no longer has
            return key
        source = vv.version_spec.get("source") or {}
        for spec in (source, source.get("batch_source") or {}):
            if isinstance(spec, dict) and spec.get("name"):
                self.graph.link(self.source(str(spec["name"])), key)
        if vv.on_demand:
            try:
                inputs = self.snapshot.on_demand_inputs(view, number)
            except NotFoundError:  # retired, or its inputs are gone: drawn without them
                inputs = []
            for ref in inputs:
                self.graph.link(self.version(ref.view, ref.version), key)
        return key


def model_graph(
    ctx: PageContext, snapshot: RegistrySnapshot, found: dict[str, Any]
) -> LineageGraph:
    g = LineageGraph(ctx.renderer, snapshot)
    model = g.model(found["model"])
    for s in found["serves"]:
        version = g.version_of(s["feature"])  # what a model serves is always pinned
        if version is None:
            continue
        g.graph.link(version, model)
        if s["last_materialization"]:
            g.graph.link(g.run(s["last_materialization"]), version)
    builds = found["training_sets"]
    for ts in builds[:TRAINING_SETS_DRAWN]:
        g.training_set(ts)
    if len(builds) > TRAINING_SETS_DRAWN:
        href = ctx.url("training-sets", model=found["model"])
        more = g.more("training_set", len(builds) - TRAINING_SETS_DRAWN, "training sets", href)
        g.graph.link(more, model)
    return g


def feature_graph(
    ctx: PageContext, snapshot: RegistrySnapshot, found: dict[str, Any]
) -> LineageGraph:
    g = LineageGraph(ctx.renderer, snapshot)
    name = found["feature"]
    feature = g.graph.add(Node("feature", name, name, link(ctx.renderer, "feature", name)))
    view = name.partition(":")[0]
    for v in found["versions"]:
        g.graph.link(g.version(view, v["version"]), feature)
    for v in found["versions"]:
        version = g.version(view, v["version"])
        runs = [r for r in found["materialization_runs"] if r["version"] == v["version"]]
        for run in runs[:RUNS_DRAWN]:  # newest first
            g.graph.link(g.run(run), version)
        if len(runs) > RUNS_DRAWN:
            href = ctx.url("runs", view=view)
            more = g.more("run", len(runs) - RUNS_DRAWN, "runs", href, f"v{v['version']}")
            g.graph.link(more, version)
    builds = found["training_sets"]
    for ts in builds[:TRAINING_SETS_DRAWN]:
        g.training_set(ts)
    if len(builds) > TRAINING_SETS_DRAWN:  # the table below lists them all
        g.more("training_set", len(builds) - TRAINING_SETS_DRAWN, "training sets", "#training-sets")
    for m in found["models"]:
        model = g.model(m["model"])
        for ref in m["serves"]:
            served = g.version_of(ref)
            if served is not None:
                g.graph.link(served, model)
    return g


def _answer(
    ctx: PageContext, snapshot: RegistrySnapshot, query: Any, subject: str
) -> dict[str, Any]:
    store = ctx.state.store
    return dict(
        query(
            store.registry,
            snapshot,
            store.config.offline_store_path,
            subject,
            store.config.policy_default,
        )
    )


def model_page(ctx: PageContext) -> Rendered:
    name = ctx.path["name"]
    snapshot = ctx.snapshot
    found = _answer(ctx, snapshot, model_lineage, name)
    return lineage_page(ctx, "model", found, model_graph(ctx, snapshot, found).graph, name)


def feature_page(ctx: PageContext) -> Rendered:
    snapshot = ctx.snapshot
    found = _answer(ctx, snapshot, feature_lineage, ctx.path["ref"])
    graph = feature_graph(ctx, snapshot, found).graph
    return lineage_page(ctx, "feature", found, graph, found["feature"])


def lineage_page(
    ctx: PageContext, subject: str, found: dict[str, Any], graph: Graph, name: str
) -> Rendered:
    return Rendered(
        "lineage.html",
        {
            "subject": subject,
            "found": found,
            "graph": svg(layout(graph), f"lineage of {subject} {name}"),
            "href": hrefs(ctx),
        },
        title=f"Lineage of {name}",
    )
