"""A plan for people: counts per kind and change first, then the changes, capped.

A project of 10,000 views and 100,000 models must not print 110,000 lines for one new
version: the counts say how much changes, the first ``limit`` changes say what, and
the last line says how to see the rest. Machine output (``plan_json``) is never capped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from featurestore.definitions import KINDS

if TYPE_CHECKING:  # plan imports this module: change kinds are compared as their strings
    from featurestore.registry.plan import Change, Plan

LABELS = {
    "entity": "Entity",
    "source": "Source",
    "feature_view": "FeatureView",
    "feature_service": "FeatureService",
    "model": "Model",
    "policy": "Policy",
    "drift_monitor": "DriftMonitor",
}
# ChangeKind's values, in the order counts and listings give them.
NEW, NEW_VERSION, METADATA, REPIN, RETIRE, UNCHANGED = (
    "new",
    "new_version",
    "metadata",
    "repin",
    "retire",
    "unchanged",
)
ORDER = (NEW, NEW_VERSION, METADATA, REPIN, RETIRE, UNCHANGED)
# How a count reads: "1 new version", "3 re-pinned", "9,999 unchanged".
WORDS = {
    NEW: ("new", "new"),
    NEW_VERSION: ("new version", "new versions"),
    METADATA: ("metadata changed", "metadata changed"),
    REPIN: ("re-pinned", "re-pinned"),
    RETIRE: ("retired", "retired"),
    UNCHANGED: ("unchanged", "unchanged"),
}
SIGN = {
    NEW: "+",
    NEW_VERSION: "~",
    METADATA: "~",
    REPIN: "~",
    RETIRE: "-",
    UNCHANGED: "=",
}


def plan_counts(plan: Plan) -> dict[str, dict[str, int]]:
    """Per kind (in KINDS order) the number of objects per change (in ORDER), unchanged
    included; kinds the plan does not touch are left out."""
    tally: dict[str, dict[str, int]] = {}
    for change in plan.changes:
        per_kind = tally.setdefault(change.kind, {})
        per_kind[change.change] = per_kind.get(change.change, 0) + 1
    return {
        kind: {str(c): tally[kind][c] for c in ORDER if c in tally[kind]}
        for kind in KINDS
        if kind in tally
    }


def count_text(counts: dict[str, int]) -> str:
    """'1 new version, 9,999 unchanged'."""
    parts = []
    for change, n in counts.items():
        one, many = WORDS[change]
        parts.append(f"{n:,} {one if n == 1 else many}")
    return ", ".join(parts)


def count_lines(plan: Plan, indent: str = "  ") -> list[str]:
    """'  Model: 3 re-pinned, 1,997 unchanged (30 with a note)'."""
    noted: dict[str, int] = {}
    for change in plan.changes:
        if change.change == UNCHANGED and change.notes:
            noted[change.kind] = noted.get(change.kind, 0) + 1
    return [
        f"{indent}{LABELS[kind]}: {count_text(counts)}"
        + (f" ({noted[kind]:,} with a note)" if kind in noted else "")
        for kind, counts in plan_counts(plan).items()
    ]


def change_lines(change: Change) -> list[str]:
    """One change: its summary, then its field changes and notes, indented."""
    lines = [f"  {SIGN[change.change]} {change.summary()}"]
    lines += [f"      {fc}" for fc in change.fields if not fc.path.startswith("schema.")]
    lines += [f"      note: {note}" for note in change.notes]
    return lines


def listed(plan: Plan, *, verbose: bool, only: Collection[str] | None) -> list[Change]:
    """What the text lists: the pending changes, kind by kind and within a kind in ORDER
    (so one new version is not behind a hundred metadata changes when the list is
    capped), then unchanged objects with a note (a model behind its views' latest
    versions); with ``verbose`` every object, in plan order. ``only``: these kinds."""
    if verbose:
        shown = list(plan.changes)
    else:
        rank = {kind: i for i, kind in enumerate(KINDS)}
        step = {change: i for i, change in enumerate(ORDER)}
        shown = sorted(
            (c for c in plan.changes if c.change != UNCHANGED),
            key=lambda c: (rank[c.kind], step[c.change]),  # stable: names stay sorted
        )
        shown += [c for c in plan.changes if c.change == UNCHANGED and c.notes]
    return shown if only is None else [c for c in shown if c.kind in only]


def more_text(hidden: int, *, narrowed: bool) -> str:
    """The line after a capped list: how many are left out and how to see them."""
    only = "" if narrowed else ", --only KIND narrows them (e.g. --only model)"
    return f"  ... and {hidden:,} more; --limit 0 shows all{only}, --json lists every change"


def render_plan(
    plan: Plan,
    *,
    verbose: bool = False,
    limit: int | None = None,
    only: Collection[str] | None = None,
) -> str:
    """The plan as text. ``limit``: list at most this many changes (None or 0: all);
    ``only``: list only changes to these kinds (the counts always cover the whole plan)."""
    lines = [f"Project '{plan.project}':"]
    if plan.has_changes:
        lines += count_lines(plan)
    shown = listed(plan, verbose=verbose, only=only)
    cap = limit or len(shown)
    if plan.has_changes and shown:
        lines.append("")
    for change in shown[:cap]:
        lines += change_lines(change)
    if len(shown) > cap:
        lines.append(more_text(len(shown) - cap, narrowed=only is not None))
    if only is not None and not shown and plan.has_changes:
        kinds = ", ".join(LABELS[k] for k in KINDS if k in only)
        lines += ["", f"  Nothing to show for {kinds}."]
    lines.append(plan_line(plan))
    return "\n".join(lines)


def plan_line(plan: Plan) -> str:
    """'Plan: 2 metadata, 1 repin, 1 retire' (in ORDER, as the counts)."""
    totals: dict[str, int] = {}
    for change in plan.changes:
        if change.change != UNCHANGED:
            totals[change.change] = totals.get(change.change, 0) + 1
    if not totals:
        return "No changes. The registry matches the repo."
    return "Plan: " + ", ".join(
        f"{totals[c]:,} {c.replace('_', ' ')}" for c in ORDER if c in totals
    )


def plan_json(plan: Plan, *, only: Collection[str] | None = None) -> dict[str, Any]:
    """The whole plan for scripts: every change (of ``only``'s kinds), never capped, and
    the counts of the whole plan."""
    out = plan.to_json()
    if only is not None:
        out["changes"] = [c for c in out["changes"] if c["kind"] in only]
        out["only"] = [k for k in KINDS if k in only]
    out["counts"] = plan_counts(plan)
    return out


class ApplyProgress:
    """``apply``'s live output: the first ``limit`` changes one line each (0: all), then a
    progress line every ``every`` changes or ``interval`` seconds, whichever comes first,
    so a 100,000-change apply prints a few hundred lines and still shows it is moving."""

    def __init__(
        self,
        echo: Callable[[str], None],
        *,
        limit: int,
        every: int = 1000,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.echo, self.limit, self.every, self.interval, self.clock = (
            echo,
            limit,
            every,
            interval,
            clock,
        )
        self.done = 0
        self.last = clock()

    def __call__(self, change: Change) -> None:
        self.done += 1
        if not self.limit or self.done <= self.limit:
            self.echo(f"  applied {change.summary()}")
            return
        now = self.clock()
        if self.done % self.every == 0 or now - self.last >= self.interval:
            self.echo(f"  ... {self.done:,} changes applied")
            self.last = now

    def finish(self) -> None:
        """After the last change: how many were not listed one by one."""
        if self.limit and self.done > self.limit:
            self.echo(
                f"  ... {self.done - self.limit:,} more applied than listed; --limit 0 lists "
                "every change; `featurestore plan --json` lists them before an apply"
            )


def capped(lines: Iterable[str], limit: int, what: str, hint: str) -> list[str]:
    """The first ``limit`` lines (0: all), then '... and N more <what>; <hint>'."""
    items = list(lines)
    if not limit or len(items) <= limit:
        return items
    return [*items[:limit], f"  ... and {len(items) - limit:,} more {what}; {hint}"]
