"""``featurestore audit``: query the tamper-evident audit log, and verify its chain."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    default_command,
    echo_json,
    fail,
    handle_errors,
    open_store,
    parse_time,
)

audit_app = typer.Typer(
    cls=default_command("list"), help="The audit log: who did what, under which rule."
)


@audit_app.command("list")
@handle_errors
def list_records(
    model: Annotated[str | None, typer.Option(help="Records about this model.")] = None,
    feature: Annotated[
        str | None, typer.Option(help="Records about this feature (view:feature).")
    ] = None,
    action: Annotated[str | None, typer.Option(help="apply, training_set or deny.")] = None,
    decision: Annotated[str | None, typer.Option(help="allow, mask or deny.")] = None,
    since: Annotated[str | None, typer.Option(help="Only records at or after this time.")] = None,
    limit: Annotated[int, typer.Option(help="The newest N records.")] = 50,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Audit records, newest first."""
    with open_store(repo) as store:
        records = store.registry.audit.records(
            store.project,
            action=action,
            subject=model,
            decision=decision,
            since=parse_time(since, "--since"),
            limit=None if feature else limit,
        )
    if feature:
        view, _, name = feature.partition(":")
        records = [
            r
            for r in records
            if any(
                f.startswith(f"{view}@") and f.endswith(f":{name}")
                for f in r.detail.get("features", [])
            )
            or (view in r.subject and name in r.subject)
        ][:limit]
    if as_json:
        echo_json([asdict(r) for r in records])
        return
    if not records:
        typer.echo("No audit records match.")
    for r in records:
        what = " ".join(x for x in (r.decision, f"rule {r.rule}" if r.rule else "") if x)
        count = r.detail.get("count")  # a coalesced record: decisions of one window
        times = f"  {count:,} times, {r.detail['first']} .. {r.detail['last']}" if count else ""
        typer.echo(
            f"#{r.seq}  {r.at.isoformat(timespec='seconds') if r.at else '?'}  {r.action:<12} "
            f"{r.subject}  {what}  by {r.actor}{times}"
        )


@audit_app.command("verify")
@handle_errors
def verify(as_json: JsonOption = False, repo: RepoOption = Path(".")) -> None:
    """Check the chain: an edited, deleted or reordered record is reported (exit 1)."""
    with open_store(repo) as store:
        result = store.registry.audit.verify(store.project)
        head = store.registry.audit.records(store.project, limit=1)
    if as_json:
        echo_json(
            {
                "records": result.records,
                "ok": result.ok,
                "problems": list(result.problems),
                "head": head[0].hash if head else None,
            }
        )
    elif result.ok:
        typer.echo(
            f"The audit log of '{store.project}' is intact: {result.records} records; head "
            f"{head[0].hash if head else '-'} (keep it elsewhere to detect a rewritten tail)."
        )
    if not result.ok:
        fail("the audit log was tampered with: " + "; ".join(result.problems))
