"""``featurestore materialize`` and ``runs``: the batch job and its lineage records."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    echo_json,
    handle_errors,
    open_store,
    parse_time,
)
from featurestore.errors import EntityInputError


@handle_errors
def materialize(
    views: Annotated[
        list[str] | None, typer.Argument(help="Views to materialize (default: every batch view).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Window start, inclusive (default: all history).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Window end, exclusive (default: now).")
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option("--incremental", help="Start each view where its last successful run ended."),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="spark, local (in-process) or auto: in-process for small windows when "
            "spark.master is local, else Spark."
        ),
    ] = "auto",
    repo: RepoOption = Path("."),
) -> None:
    """Run the job: source -> validate -> offline store and online store; record the run."""
    if incremental and start is not None:
        raise EntityInputError("--incremental starts at each view's watermark; drop --start.")

    def show(message: str) -> None:
        typer.echo(message)

    with open_store(repo) as store:
        # Each engine imports its own libraries: without the spark extra, `--engine local`
        # runs and `--engine spark` says which extra to install (MissingExtraError).
        runs = store.materialize(
            views or None,
            start=parse_time(start, "--start"),
            end=parse_time(end, "--end"),
            incremental=incremental,
            engine=engine,
            progress=show,
        )
    if not runs:
        typer.echo("Nothing to do: every view is up to date.")


@handle_errors
def runs(
    view: Annotated[str | None, typer.Argument(help="Only this view's runs.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N runs.")] = 20,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Materialization runs (lineage): window, rows, validation, code version, status."""
    with open_store(repo) as store:
        records = store.registry.runs.records(store.project, view, limit=limit)
    if as_json:
        echo_json([asdict(r) for r in records])
        return
    if not records:
        typer.echo("No materialization runs yet. Run `featurestore materialize`.")
        return
    for r in records:
        window = (
            f"{r.window_start.isoformat() if r.window_start else 'beginning'} .. "
            f"{r.window_end.isoformat()}"
        )
        color = {"succeeded": typer.colors.GREEN, "failed": typer.colors.RED}.get(r.status)
        typer.secho(f"run {r.id}  {r.label}  {r.status}", fg=color, bold=True)
        typer.echo(f"  window     {window}")
        typer.echo(
            f"  rows       read {r.rows_read if r.rows_read is not None else '-'}, offline "
            f"{r.rows_offline if r.rows_offline is not None else '-'}, online "
            f"{r.rows_online if r.rows_online is not None else '-'}"
        )
        if r.validation is not None:
            failed = [e["expectation"] for e in r.validation["expectations"] if not e["success"]]
            verdict = "passed" if r.validation["success"] else "failed: " + "; ".join(failed)
            typer.echo(f"  validation {verdict} ({r.validation['report']})")
        if r.engine == "push":  # one run per view version and minute of pushes
            pushes = sum(s.get("pushes", 0) for s in r.sources if isinstance(s, dict))
            typer.echo(f"  sources    {pushes:,} push(es) in the window")
        else:
            typer.echo(f"  sources    {len(r.sources)} file(s); code {r.code_version or 'unknown'}")
        typer.echo(f"  engine     {r.engine or 'unknown'}")
        started = r.started_at.isoformat(timespec="seconds") if r.started_at else "?"
        finished = r.finished_at.isoformat(timespec="seconds") if r.finished_at else "-"
        typer.echo(f"  time       {started} .. {finished} by {r.started_by}")
        if r.error:
            typer.echo(f"  error      {r.error.splitlines()[0]}")
