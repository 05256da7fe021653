"""Materialization runs: the list (filters by view, status and engine; 50 a page) and one
run's every recorded field. Runs are not covered by the registry's serial, so each page
reads them afresh: one indexed page of rows and a count."""

from __future__ import annotations

from typing import Any

from featurestore.errors import EntityInputError
from featurestore.registry.runs import FAILED, RUNNING, SUCCEEDED, RunRecord
from featurestore.ui.page import PAGE_SIZE, PageContext, Rendered
from featurestore.ui.pages_lineage import hrefs

STATUSES = (RUNNING, SUCCEEDED, FAILED)


def runs(ctx: PageContext) -> Rendered:
    filters = {k: ctx.text_param(k) for k in ("view", "status", "engine")}
    if filters["status"] and filters["status"] not in STATUSES:
        raise EntityInputError(
            f"?status={filters['status'][:40]!r} is not a run status ({', '.join(STATUSES)})."
        )
    offset = ctx.int_param("offset")
    log, project = ctx.state.store.registry.runs, ctx.state.project
    chosen: dict[str, Any] = {k: v or None for k, v in filters.items()}
    total = log.count(project, **chosen)
    views = sorted(ctx.snapshot.active("feature_view"))
    if filters["view"] and filters["view"] not in views:
        views.append(filters["view"])  # a removed view's runs stay listed
    return Rendered(
        "runs.html",
        {
            "runs": log.records(project, limit=PAGE_SIZE, offset=offset, **chosen),
            "total": total,
            "offset": offset,
            "size": PAGE_SIZE,
            "filters": filters,
            "views": views,
            "statuses": STATUSES,
            "engines": log.engines(project),
            "href": hrefs(ctx),
        },
        title="Runs",
    )


def run(ctx: PageContext) -> Rendered:
    record = ctx.state.store.registry.runs.record(
        ctx.state.project, ctx.id_param("id", "materialization run")
    )
    return Rendered(
        "run.html",
        {
            "run": record,
            "source_columns": source_columns(record),
            "duration": duration(record),
            "href": hrefs(ctx),
        },
        title=f"Run #{record.id}",
    )


def source_columns(record: RunRecord) -> list[str]:
    """The keys the run's inputs have (files: path, mtime; pushes: type, pushes; ...)."""
    keys: dict[str, None] = {}
    for s in record.sources:
        if isinstance(s, dict):
            keys.update(dict.fromkeys(s))
    return list(keys)


def duration(record: RunRecord) -> str:
    if record.started_at is None or record.finished_at is None:
        return ""
    seconds = (record.finished_at - record.started_at).total_seconds()
    return f"{seconds:,.1f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"
