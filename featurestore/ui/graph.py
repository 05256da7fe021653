"""Lineage graphs as SVG: a graph of nodes and edges, a layered left-to-right layout, and
a renderer. Pure functions of their input (no registry, no request), so a layout is
deterministic and testable on its own.

Layers follow the flow of data: sources, then the runs that read them, the view versions
they wrote, training sets read from those, and models. A node is never left of what
feeds it (an on-demand view sits right of the views it computes from).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from html import escape
from itertools import pairwise

from markupsafe import Markup

# Each kind's leftmost layer; a node moves further right when what feeds it must.
RANK = {"source": 0, "run": 1, "view": 2, "feature": 3, "training_set": 4, "model": 5}
NODE_WIDTH = 150
NODE_HEIGHT = 28
COLUMN_GAP = 56
ROW_GAP = 12
LANE_HEIGHT = 4  # the height of an edge's lane across a layer it skips
MARGIN = 8
MAX_LABEL = 22  # characters shown in a node; the <title> has the whole name


@dataclass(frozen=True, slots=True)
class Node:
    kind: str  # a key of RANK
    id: str  # unique within its kind: "user_profile@v1", "12", "fraud_detector"
    label: str
    href: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)  # by key, in insertion order
    edges: list[tuple[str, str]] = field(default_factory=list)  # (from key, to key)

    def add(self, node: Node) -> str:
        """Add ``node`` (once: the first of a key wins); its key."""
        self.nodes.setdefault(node.key, node)
        return node.key

    def link(self, source: str, target: str) -> None:
        """An edge between two added nodes (once)."""
        known = source in self.nodes and target in self.nodes
        if known and source != target and (source, target) not in self.edges:
            self.edges.append((source, target))


@dataclass(frozen=True, slots=True)
class Box:
    node: Node
    layer: int
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Layout:
    boxes: dict[str, Box]
    # Each edge's way: the points (x, y) it passes between its ends' boxes, one per layer
    # it crosses, in lanes of their own so that no edge runs under a node.
    edges: dict[tuple[str, str], list[tuple[int, int]]]
    width: int
    height: int


def layers(graph: Graph) -> dict[str, int]:
    """Each node's layer: its kind's rank, or one past its furthest predecessor's."""
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for a, b in graph.edges:
        preds[b].append(a)
        succs[a].append(b)
    waiting = {k: len(preds[k]) for k in graph.nodes}
    ready = [k for k in graph.nodes if waiting[k] == 0]
    layer = {k: RANK.get(n.kind, len(RANK)) for k, n in graph.nodes.items()}
    while ready:  # Kahn's order: a node is placed after everything feeding it
        k = ready.pop(0)
        for s in succs[k]:
            layer[s] = max(layer[s], layer[k] + 1)
            waiting[s] -= 1
            if waiting[s] == 0:
                ready.append(s)
    # Layers no node uses are dropped, so a graph without runs has no empty column.
    used = {v: i for i, v in enumerate(sorted(set(layer.values())))}
    return {k: used[v] for k, v in layer.items()}


@dataclass
class _Slots:
    """Nodes and lanes per layer: a lane (``~from~layer``) carries the edges of one node
    across a layer they skip; every edge from that node shares it, as far as it goes."""

    layer: dict[str, int] = field(default_factory=dict)
    preds: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    succs: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ways: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def join(self, a: str, b: str) -> None:
        if b not in self.succs[a]:
            self.succs[a].append(b)
            self.preds[b].append(a)


def _slots(graph: Graph, layer: dict[str, int]) -> _Slots:
    out = _Slots(dict(layer))
    for a, b in graph.edges:
        way, last = [], a
        for i in range(layer[a] + 1, layer[b]):
            lane = f"~{a}~{i}"
            out.layer.setdefault(lane, i)
            out.join(last, lane)
            way.append(lane)
            last = lane
        out.join(last, b)
        out.ways[(a, b)] = way
    return out


def _order(graph: Graph, slots: _Slots) -> dict[int, list[str]]:
    """Each layer's slots top to bottom: by where their neighbours are (barycentres, a
    sweep right, one left, one right again: fewer crossings), ties by kind and id."""
    columns: dict[int, list[str]] = defaultdict(list)
    for k, i in slots.layer.items():
        columns[i].append(k)
    row = {k: float(j) for keys in columns.values() for j, k in enumerate(keys)}

    def tie(k: str) -> tuple[str, str]:
        node = graph.nodes.get(k)
        if node is None:
            return ("~", k)
        # Numbered ids (runs, training sets) in numeric order: #9 before #10.
        return (node.kind, node.id.zfill(20) if node.id.isdigit() else node.id)

    def sweep(order: list[int], near: dict[str, list[str]]) -> None:
        for i in order:
            keys = columns[i]
            centre = {k: _mean([row[n] for n in near[k]], row[k]) for k in keys}
            keys.sort(key=lambda k: (centre[k], tie(k)))
            row.update({k: float(j) for j, k in enumerate(keys)})

    for i in columns:
        columns[i].sort(key=tie)
        row.update({k: float(j) for j, k in enumerate(columns[i])})
    right = sorted(columns)
    sweep(right, slots.preds)
    sweep(right[::-1], slots.succs)
    sweep(right, slots.preds)
    return columns


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def layout(graph: Graph) -> Layout:
    """Columns by layer, left to right, nodes and lanes ordered to cross little; each
    column centred on the tallest."""
    slots = _slots(graph, layers(graph))
    columns = _order(graph, slots)

    def size(k: str) -> int:
        return NODE_HEIGHT if k in graph.nodes else LANE_HEIGHT

    heights = {i: sum(size(k) + ROW_GAP for k in keys) - ROW_GAP for i, keys in columns.items()}
    tallest = max(heights.values(), default=0)
    step_x = NODE_WIDTH + COLUMN_GAP
    boxes, lanes = {}, {}
    for i, keys in columns.items():
        y = MARGIN + (tallest - heights[i]) // 2
        for k in keys:
            if k in graph.nodes:
                boxes[k] = Box(graph.nodes[k], i, MARGIN + i * step_x, y)
            else:
                lanes[k] = (MARGIN + i * step_x, y + LANE_HEIGHT // 2)
            y += size(k) + ROW_GAP
    edges = {e: [lanes[k] for k in slots.ways[e]] for e in graph.edges}
    width = MARGIN * 2 + len(columns) * step_x - COLUMN_GAP if columns else 0
    return Layout(boxes, edges, max(width, 0), MARGIN * 2 + tallest if columns else 0)


def short(label: str, limit: int = MAX_LABEL) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def edge_path(a: Box, b: Box, way: list[tuple[int, int]]) -> str:
    """From the right side of ``a`` to the left side of ``b``: a curve between layers, a
    straight run along each lane it takes across a layer."""
    points = [(a.x + NODE_WIDTH, a.y + NODE_HEIGHT // 2)]
    for x, y in way:
        points += [(x, y), (x + NODE_WIDTH, y)]
    points.append((b.x, b.y + NODE_HEIGHT // 2))
    out = [f"M{points[0][0]},{points[0][1]}"]
    for (x1, y1), (x2, y2) in pairwise(points):
        if y1 == y2:
            out.append(f"L{x2},{y2}")
        else:
            bend = max(20, (x2 - x1) // 2)
            out.append(f"C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}")
    return " ".join(out)


def svg(found: Layout, label: str = "lineage") -> Markup:
    """``<svg data-graph="lineage">``: edges first (under the nodes), then each node as a
    link to its page; every name escaped."""
    q = escape
    out = [
        f'<svg data-graph="lineage" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="{q(label)}" width="{found.width}" height="{found.height}" '
        f'viewBox="0 0 {found.width} {found.height}">'
    ]
    for (a, b), way in found.edges.items():
        path = edge_path(found.boxes[a], found.boxes[b], way)
        out.append(f'<path class="edge" data-edge="{q(a)}-&gt;{q(b)}" d="{path}"/>')
    for key, box in found.boxes.items():
        n = box.node
        node = (
            f'<g class="node node-{q(n.kind)}" data-node="{q(key)}" '
            f'transform="translate({box.x},{box.y})"><title>{q(n.label)}</title>'
            f'<rect width="{NODE_WIDTH}" height="{NODE_HEIGHT}"/>'
            f'<text x="8" y="{NODE_HEIGHT // 2 + 4}">{q(short(n.label))}</text></g>'
        )
        out.append(f'<a href="{q(n.href)}">{node}</a>' if n.href else node)
    out.append("</svg>")
    return Markup("".join(out))
