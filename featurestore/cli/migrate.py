"""``featurestore import-feast``: convert a Feast feature repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featurestore.cli.common import JsonOption, echo_json, handle_errors


@handle_errors
def import_feast(
    feast_repo: Annotated[Path, typer.Argument(help="The Feast repo (holds feature_store.yaml).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="A new folder for the result.")],
    project: Annotated[
        str | None, typer.Option(help="Project name (default: the Feast project's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Convert a Feast repo's entities, sources, views and services; report the rest."""
    from featurestore.migrate.feast import REPORT_FILE, import_feast

    report = import_feast(feast_repo, out, project=project)
    if as_json:
        echo_json(
            {
                "project": report.project,
                "out": str(out),
                "converted": [{"kind": k, "name": n} for k, n in report.converted],
                "skipped": [{"kind": k, "name": n, "why": w} for k, n, w in report.skipped],
                "notes": report.notes,
            }
        )
        return
    typer.echo(
        f"Converted {len(report.converted)} Feast objects into {out} (project "
        f"'{report.project}'); {len(report.skipped)} not converted, {len(report.notes)} "
        f"notes: see {out / REPORT_FILE}."
    )
    for kind, name, why in report.skipped:
        typer.echo(f"  not converted: {kind} {name}: {why}")
    typer.echo(f"Next: featurestore apply -r {out}")
