"""Registry verbs: plan and apply a repo, read what is registered, retire and promote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    echo_json,
    fail,
    handle_errors,
    open_store,
)
from featurestore.errors import InvalidReferenceError

# -- plan / apply ---------------------------------------------------------------


@handle_errors
def plan(
    repo: RepoOption = Path("."),
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 2 when changes are pending, 0 when none."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show unchanged too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show what `apply` would change, object by object and field by field."""
    with open_store(repo) as store:
        result = store.plan()
    if as_json:
        echo_json(result.to_json())
    else:
        typer.echo(result.render(verbose=verbose))
    if detailed_exitcode and result.has_changes:
        raise typer.Exit(2)


@handle_errors
def apply(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Make the registry match the repo (atomic, idempotent)."""

    def progress(change: Any) -> None:
        if not as_json:
            typer.echo(f"  applied {change.summary()}")

    with open_store(repo) as store:
        result = store.apply(on_change=progress)
    if as_json:
        echo_json({**result.plan.to_json(), "apply_id": result.apply_id, "serial": result.serial})
    elif result.apply_id is None:
        typer.echo("No changes. The registry matches the repo.")
    else:
        notes = [n for c in result.plan.changes for n in c.notes]
        for note in notes:
            typer.echo(f"  note: {note}")
        typer.echo(
            f"Applied {len(result.plan.pending)} change(s) to project '{store.project}' "
            f"(registry serial {result.serial})."
        )


# -- registry reads ---------------------------------------------------------------


@handle_errors
def versions(
    view: Annotated[str, typer.Argument(help="Feature view name.")],
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """List every version of a feature view: status, schema, and the models pinned to it."""
    from featurestore.offline.table import OfflineTable

    with open_store(repo) as store:
        snapshot = store.snapshot()
        rows: list[dict[str, Any]] = []
        for vv in store.versions(view):
            offline = OfflineTable(
                store.config.offline_store_path / store.project / view / f"v{vv.version}"
            ).manifest()
            rows.append(
                {
                    "version": f"v{vv.version}",
                    "status": vv.status,
                    "created_at": vv.created_at.isoformat(timespec="seconds"),
                    "retired_at": vv.retired_at.isoformat(timespec="seconds")
                    if vv.retired_at
                    else None,
                    "fingerprint": vv.fingerprint,
                    "features": {n: str(d) for n, d in vv.feature_dtypes.items()},
                    "models": snapshot.models_pinned_to(view, vv.version),
                    "offline_rows": offline.rows,
                    "offline_commit": offline.sequence,
                }
            )
    if as_json:
        echo_json({"view": view, "versions": rows})
        return
    head = snapshot.heads.get(("feature_view", view))
    latest = head.version if head is not None and head.status == "active" else None
    typer.echo(f"Feature view '{view}' in project '{store.project}':")
    for row in rows:
        mark = " (latest)" if row["version"] == f"v{latest}" else ""
        models = f"  models: {', '.join(row['models'])}" if row["models"] else ""
        data = (
            f"offline {row['offline_rows']:,} rows (commit {row['offline_commit']})"
            if row["offline_commit"]
            else "no offline data yet"
        )
        typer.echo(
            f"  {row['version']}{mark}  {row['status']}  created {row['created_at']}  {data}"
            f"{models}"
        )
        features = ", ".join(f"{n} {d}" for n, d in row["features"].items())
        typer.echo(f"      {features}")


@handle_errors
def list_objects(
    kind: Annotated[str | None, typer.Argument(help="Only this kind, e.g. feature_view.")] = None,
    repo: RepoOption = Path("."),
    retired: Annotated[bool, typer.Option(help="Include retired objects.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List registered objects."""
    with open_store(repo) as store:
        snapshot = store.snapshot()
    rows = [
        {"kind": h.kind, "name": h.name, "status": h.status, "version": h.version}
        for (_, _), h in sorted(snapshot.heads.items())
        if (kind is None or h.kind == kind) and (retired or h.status == "active")
    ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        version = f"@v{row['version']}" if row["version"] else ""
        status = "" if row["status"] == "active" else f"  ({row['status']})"
        typer.echo(f"{row['kind']:<16} {row['name']}{version}{status}")


@handle_errors
def resolve(
    refs: Annotated[
        list[str] | None,
        typer.Argument(help="view:feature, view@vN:feature or feature service names."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Resolve what this model reads.")] = None,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Show which view version each reference reads."""
    with open_store(repo) as store:
        snapshot = store.snapshot()
    if model:
        resolved = snapshot.resolve_model(model)
    elif refs:
        resolved = snapshot.resolve_all(refs)
    else:
        fail("give references to resolve or --model NAME.", 2)
    if as_json:
        echo_json([{"ref": str(r), "dtype": str(r.dtype)} for r in resolved])
        return
    for r in resolved:
        typer.echo(f"{r}  {r.dtype}")


@handle_errors
def retire(
    view_version: Annotated[str, typer.Argument(help="VIEW@vN, e.g. user_profile@v1.")],
    repo: RepoOption = Path("."),
) -> None:
    """Stop serving an old version of a view (refused while a model is pinned to it)."""
    view, _, version = view_version.partition("@v")
    if not version.isdigit():
        raise InvalidReferenceError(
            f"Cannot parse {view_version!r}; write VIEW@vN, e.g. user_profile@v1. To retire a "
            "whole view, remove it from the repo and run `featurestore apply`."
        )
    with open_store(repo) as store:
        vv = store.retire(view, int(version))
    typer.echo(
        f"Retired {vv.label} and removed its online values. Its offline data is kept until "
        "deleted explicitly."
    )


@handle_errors
def promote(
    model: Annotated[str, typer.Argument(help="Model name.")],
    repo: RepoOption = Path("."),
) -> None:
    """Re-register a model on the latest versions of the views it reads."""
    with open_store(repo) as store:
        pins = store.promote(model)
    typer.echo(f"Model '{model}' now reads " + ", ".join(f"{v}@v{n}" for v, n in pins.items()))
