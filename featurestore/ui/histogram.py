"""Drift histograms drawn on the server: an SVG fragment per feature, reference beside served.

Pure functions from a reference profile's shares (numeric bins between ``edges``, or
categories) and the served shares a drift check recorded, to markup whose every text is
escaped. No script and no inline style: bars and labels are styled by ``ui.css`` classes.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

WIDTH = 440  # about a card's width: text stays near its CSS size
HEIGHT = 160
TOP = 10  # room above the tallest bar
BOTTOM = 34  # room for the axis labels
LEFT = 36  # room for the share labels
MAX_LABELS = 7  # axis labels drawn at most (every bin keeps its <title>)
LABEL_CHARS = 9


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _edge(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def bin_labels(edges: Sequence[float]) -> list[str]:
    """One label per bin: ``< e0``, ``[e0, e1)``, ..., ``≥ eN`` (one bin: ``all values``)."""
    if not edges:
        return ["all values"]
    inner = [f"[{_edge(a)}, {_edge(b)})" for a, b in itertools.pairwise(edges)]
    return [f"< {_edge(edges[0])}", *inner, f"≥ {_edge(edges[-1])}"]


def _share(values: Sequence[float], i: int) -> float:
    value = values[i] if i < len(values) else 0.0
    return max(0.0, float(value or 0.0))


def thinned(ticks: Sequence[tuple[float, str]]) -> list[tuple[float, str]]:
    """At most ``MAX_LABELS`` of ``ticks`` (evenly spread), each label cut to fit."""
    step = max(1, -(-len(ticks) // MAX_LABELS))
    return [
        (at, text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…")
        for at, text in list(ticks)[::step]
    ]


def bars_svg(
    feature: str,
    labels: Sequence[str],
    reference: Sequence[float],
    served: Sequence[float] | None,
    ticks: Sequence[tuple[float, str]] | None = None,
) -> Markup:
    """Grouped bars: per label a reference bar (``bar-ref``) and, when known, a served bar
    (``bar-served``), each with a ``<title>`` giving the exact share. ``ticks``: axis
    labels as (position in bins, text); by default each bin's label at its centre."""
    n = max(1, len(labels))
    labels = list(labels) or ["all values"]
    tallest = max([*(_share(reference, i) for i in range(n)), 0.0])
    if served is not None:
        tallest = max(tallest, *(_share(served, i) for i in range(n)))
    scale = tallest if tallest > 0 else 1.0  # all zero: flat bars, no division by zero
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar = slot * (0.42 if served is not None else 0.8)
    parts = [
        f'<svg class="histogram" data-histogram="{escape(feature)}" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(feature)}: reference (training set) against served</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" '
        f'y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">'
        f"{escape(_pct(tallest))}</text>",
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0%</text>',
    ]
    for i, label in enumerate(labels):
        x = LEFT + i * slot + slot * 0.1
        series = [("bar-ref", "reference", _share(reference, i))]
        if served is not None:
            series.append(("bar-served", "served", _share(served, i)))
        for j, (cls, name, share) in enumerate(series):
            h = plot_h * share / scale
            parts.append(
                f'<rect class="{cls}" data-bin="{i}" x="{x + j * bar:.2f}" '
                f'y="{TOP + plot_h - h:.2f}" width="{bar:.2f}" height="{h:.2f}">'
                f"<title>{escape(label)}: {name} {escape(_pct(share))}</title></rect>"
            )
    if ticks is None:
        ticks = [(i + 0.5, label) for i, label in enumerate(labels)]
    for at, text in thinned(ticks):
        parts.append(
            f'<text class="tick" x="{LEFT + at * slot:.2f}" y="{TOP + plot_h + 14}" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def numeric_svg(
    feature: str,
    edges: Sequence[float],
    reference: Sequence[float],
    served: Sequence[float] | None = None,
) -> Markup:
    """A numeric profile: ``len(edges) + 1`` bins (below the first cut, between cuts,
    from the last cut up), as the drift monitor bins served values."""
    ticks = [(i + 1.0, _edge(e)) for i, e in enumerate(edges)]  # at the cuts between bins
    return bars_svg(feature, bin_labels(edges), reference, served, ticks)


def categorical_svg(
    feature: str,
    reference: Mapping[str, float],
    served: Mapping[str, float] | None = None,
) -> Markup:
    """A categorical profile: one group per reference category (``__other__`` last) and
    any category only served has."""
    names = [k for k in reference if k != "__other__"]
    if served:
        names += [k for k in served if k not in reference and k != "__other__"]
    if "__other__" in reference or (served and "__other__" in served):
        names.append("__other__")
    labels = ["(other)" if k == "__other__" else k for k in names]
    ref = [float(reference.get(k, 0.0)) for k in names]
    now = [float(served.get(k, 0.0)) for k in names] if served is not None else None
    return bars_svg(feature, labels, ref, now)
