"""``featurestore offline``: the offline store's housekeeping (gc, with lineage)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from featurestore.cli.common import JsonOption, RepoOption, echo_json, handle_errors, open_store
from featurestore.errors import UsageError

offline_app = typer.Typer(help="Offline store: garbage collection that follows lineage.")


@offline_app.command("gc")
@handle_errors
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would go and why the rest stays.")
    ] = False,
    retention: Annotated[
        str,
        typer.Option(
            help="Keep unreferenced files this long (readers holding an older manifest "
            "finish within it), e.g. 1h, 30m, 0s."
        ),
    ] = "1h",
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Remove offline files no manifest or recorded training set needs; say why each stays."""
    from featurestore.config_sections import parse_duration
    from featurestore.offline.gc import collect

    seconds = parse_duration(retention)
    if seconds is None:
        raise UsageError(f"--retention {retention!r} is not a duration such as 1h, 30m or 0s.")
    with open_store(repo) as store:
        report = collect(store, dry_run=dry_run, retention_seconds=seconds)
    if as_json:
        echo_json(asdict(report))
        return
    verb = "would " if dry_run else ""
    for table in report.tables:
        typer.echo(f"{table.table} ({table.current_files} files in its current manifest):")
        for r in table.pinned:
            typer.echo(f"  {verb}pin training set #{r['training_set']}: {r['reason']}")
        for r in table.released:
            whose = f"training set #{r['training_set']}" if r["training_set"] else "a pin"
            typer.echo(f"  {verb}release {whose}: {r['reason']}")
        for r in table.remove:
            typer.echo(f"  {verb}remove {r['path']}: {r['reason']}")
        for k in table.keep:
            typer.echo(f"  keep {k['path']}: {k['reason']}")
    for r in report.training_sets:
        typer.echo(f"  {verb}remove {r['path']}: {r['reason']}")
    done = "Would remove" if dry_run else "Removed"
    typer.echo(
        f"{done} {report.removed} file(s)" + (" (dry run: nothing removed)." if dry_run else ".")
    )
