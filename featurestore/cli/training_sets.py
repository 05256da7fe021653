"""``featurestore training-sets``: list recorded builds, rebuild one exactly, export one
as a snapshot folder, verify a snapshot (bare ``training-sets`` lists)."""

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
    handle_errors,
    open_store,
)
from featurestore.errors import UsageError

training_sets_app = typer.Typer(
    cls=default_command("list"),
    help="Recorded training sets: list, rebuild exactly, export with lineage, verify.",
)


@training_sets_app.command("list")
@handle_errors
def list_training_sets(
    repo: RepoOption = Path("."),
    model: Annotated[str | None, typer.Option(help="Only this model's.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Which data trained which model: recorded training-set builds, newest first."""
    with open_store(repo) as store:
        records = store.registry.training_sets(store.project, model=model)
    if as_json:
        echo_json([asdict(r) for r in records])
        return
    for r in records:
        when = r.created_at.isoformat(timespec="seconds") if r.created_at else "-"
        typer.echo(
            f"#{r.id}  {when}  model={r.model or '-'}  rows={r.rows:,}  engine={r.engine}  "
            f"entities={r.entity_fingerprint[:12]}  set={(r.fingerprint or '-')[:12]}  -> "
            f"{r.output_path or '(in memory)'}"
        )
        typer.echo(f"      {', '.join(r.features)}")
        if r.as_of or r.spine:
            known = f"as known at {r.as_of.isoformat()}  " if r.as_of else ""
            spine = f"spine {r.spine['view']}" if r.spine else ""
            typer.echo(f"      {known}{spine}".rstrip())


TrainingSetArg = Annotated[
    int | None, typer.Argument(help="Training set id (see `featurestore training-sets`).")
]
LatestOption = Annotated[
    bool, typer.Option("--latest", help="The newest recorded set (of --model, if given).")
]
ModelOption = Annotated[str | None, typer.Option(help="With --latest: this model's newest.")]


def _pick(store: object, training_set: int | None, latest: bool, model: str | None) -> int:
    from featurestore.store import FeatureStore

    assert isinstance(store, FeatureStore)
    if (training_set is None) == (not latest):
        raise UsageError("Give a training set ID or --latest (with --model for a model's newest).")
    if training_set is not None:
        return training_set
    records = store.registry.training_sets(store.project, model=model)
    if not records or records[0].id is None:
        whose = f" of model '{model}'" if model else ""
        raise UsageError(f"No training set{whose} is recorded in project '{store.project}'.")
    return records[0].id


@training_sets_app.command("rebuild")
@handle_errors
def rebuild(
    training_set: TrainingSetArg = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the rebuilt set to this Parquet.")
    ] = None,
    latest: LatestOption = False,
    model: ModelOption = None,
    engine: Annotated[
        str | None, typer.Option(help="duckdb or spark (default: the one that built it).")
    ] = None,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Join a recorded set again as of the offline commits it read; check its fingerprint."""
    with open_store(repo) as store:
        chosen = _pick(store, training_set, latest, model)
        rebuilt = store.rebuild_training_set(chosen, out, engine=engine)
    record = rebuilt.record
    if as_json:
        echo_json(
            {
                "training_set": record.id,
                "identical": True,
                "fingerprint": rebuilt.fingerprint,
                "rows": rebuilt.rows,
                "offline_manifests": record.offline_manifests,
                "out": str(out) if out is not None else None,
            }
        )
        return
    commits = ", ".join(f"{k} commit {v}" for k, v in record.offline_manifests.items())
    where = f", written to {out}" if out is not None else ""
    typer.echo(
        f"Rebuilt training set #{record.id} ({rebuilt.rows:,} rows, as of {commits}{where}): "
        f"identical (fingerprint {rebuilt.fingerprint})"
    )


@training_sets_app.command("export")
@handle_errors
def export(
    training_set: TrainingSetArg = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="New (or empty) folder to write.")] = (
        Path("training-set")
    ),
    latest: LatestOption = False,
    model: ModelOption = None,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Write a set's Parquet and a JSON manifest of its lineage into one folder."""
    from featurestore.offline.training_snapshot import export_training_set

    with open_store(repo) as store:
        manifest = export_training_set(store, _pick(store, training_set, latest, model), out)
    if as_json:
        echo_json(manifest)
        return
    typer.echo(
        f"Exported training set #{manifest['training_set']} ({manifest['rows']:,} rows, "
        f"{manifest['data_bytes']:,} bytes) to {out}: fingerprint {manifest['fingerprint']}"
    )


@training_sets_app.command("verify")
@handle_errors
def verify(
    folder: Annotated[Path, typer.Argument(help="A folder written by `training-sets export`.")],
    as_json: JsonOption = False,
) -> None:
    """Check an exported set's Parquet against its manifest's fingerprint (no repo needed)."""
    from featurestore.offline.training_snapshot import verify_snapshot

    verified = verify_snapshot(folder)
    if as_json:
        echo_json({**asdict(verified), "identical": True})
        return
    typer.echo(
        f"Training set #{verified.training_set} in {folder} ({verified.rows:,} rows): "
        f"identical (fingerprint {verified.fingerprint})"
    )


@training_sets_app.command("delete")
@handle_errors
def delete(
    training_set: Annotated[int, typer.Argument(help="Training set id to forget.")],
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
    repo: RepoOption = Path("."),
) -> None:
    """Forget a recorded set; what only it read goes at the next offline gc.

    Its record, reference profiles and entity rows go: it can no longer be rebuilt, and a
    drift monitor of its model compares with the model's previous set.
    """
    if not yes:
        typer.confirm(
            f"Delete training set #{training_set}? It cannot be rebuilt afterwards.", abort=True
        )
    with open_store(repo) as store:
        record = store.delete_training_set(training_set)
    typer.echo(
        f"Deleted training set #{record.id}; the files it read are released "
        f"({', '.join(record.offline_manifests) or 'none'}): `featurestore offline gc` removes "
        "what nothing else reads."
    )
