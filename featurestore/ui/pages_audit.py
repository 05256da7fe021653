"""The audit log: its records, newest first (filters by actor, action, object and
decision; 50 a page), under the result of verifying its hash chain.

The chain's check is not cached per snapshot: records are appended (training-set builds,
denials, logins) without moving the registry's serial, and an edit in place moves nothing
at all. It reads the whole log (0.6 s at 20,000 records), so it runs at most every
``CHAIN_MAX_AGE`` seconds, however often the page is loaded, and the page says when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from featurestore.ui.page import PAGE_SIZE, PageContext, Rendered
from featurestore.ui.pages_lineage import hrefs
from featurestore.urls import redact

DECISIONS = ("allow", "mask", "deny")
CHAIN_MAX_AGE = 10.0  # seconds a chain check is shown before it runs again


def audit(ctx: PageContext) -> Rendered:
    filters = {k: ctx.text_param(k) for k in ("actor", "action", "object", "decision")}
    offset = ctx.int_param("offset")
    log, project = ctx.state.store.registry.audit, ctx.state.project
    chosen: dict[str, Any] = {
        "actor": filters["actor"] or None,
        "action": filters["action"] or None,
        "subject": filters["object"] or None,
        "decision": filters["decision"] or None,
    }
    chain, checked_at = ctx.state.recent("audit-chain", CHAIN_MAX_AGE, lambda: log.verify(project))
    records = log.records(project, limit=PAGE_SIZE, offset=offset, **chosen)
    return Rendered(
        "audit.html",
        {
            "chain": chain,
            "checked_at": datetime.fromtimestamp(checked_at, UTC),
            "records": [(r, detail_json(r.detail)) for r in records],
            "total": log.count(project, **chosen),
            "offset": offset,
            "size": PAGE_SIZE,
            "filters": filters,
            "choices": log.choices(project),
            "decisions": DECISIONS,
            "href": hrefs(ctx),
        },
        title="Audit",
    )


def detail_json(detail: dict[str, Any]) -> str:
    """A record's detail as compact JSON, any password in a URL in it masked."""
    return redact(orjson.dumps(detail, option=orjson.OPT_SORT_KEYS, default=str).decode())
