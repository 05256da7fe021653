"""Registry verbs: plan and apply a repo, read what is registered, retire and promote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from featurestore.cli.common import (
    DEFAULT_LIMIT,
    JsonOption,
    LimitOption,
    OffsetOption,
    RepoOption,
    echo_json,
    fail,
    handle_errors,
    json_limit,
    open_store,
    text_limit,
)
from featurestore.cli.kinds import parse_kinds
from featurestore.cli.listing import HeadFilter, list_heads, parse_tags
from featurestore.errors import InvalidReferenceError, UsageError
from featurestore.registry.plan_render import (
    LABELS,
    ApplyProgress,
    capped,
    count_lines,
    plan_json,
    render_plan,
)

# -- plan / apply ---------------------------------------------------------------

OnlyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--only",
        help="Only changes to this kind (feature_view or view, model, ...); repeat or "
        "comma-separate for several.",
    ),
]


@handle_errors
def plan(
    repo: RepoOption = Path("."),
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 2 when changes are pending, 0 when none."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show unchanged too.")] = False,
    limit: LimitOption = None,
    only: OnlyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what `apply` would change: counts per kind, then the changes field by field."""
    kinds = parse_kinds(only, "--only")
    with open_store(repo) as store:
        result = store.plan()
    if as_json:
        # Machine output is never capped: --limit does not apply, --only does.
        echo_json(plan_json(result, only=kinds))
    else:
        typer.echo(render_plan(result, verbose=verbose, limit=text_limit(limit), only=kinds))
    if detailed_exitcode and result.has_changes:
        raise typer.Exit(2)


@handle_errors
def apply(
    repo: RepoOption = Path("."), limit: LimitOption = None, as_json: JsonOption = False
) -> None:
    """Make the registry match the repo (atomic, idempotent)."""
    progress = ApplyProgress(typer.echo, limit=text_limit(limit))
    with open_store(repo) as store:
        result = store.apply(on_change=None if as_json else progress)
    if as_json:
        echo_json({**plan_json(result.plan), "apply_id": result.apply_id, "serial": result.serial})
        return
    if result.apply_id is None:
        typer.echo("No changes. The registry matches the repo.")
        return
    progress.finish()
    notes = (
        f"  note: {LABELS[c.kind]} {c.name}: {n}" for c in result.plan.changes for n in c.notes
    )
    hint = "`featurestore plan` lists the notes still true, --limit 0 all of them"
    for line in capped(notes, text_limit(limit), "notes", hint):
        typer.echo(line)
    for line in count_lines(result.plan):
        typer.echo(line)
    typer.echo(
        f"Applied {len(result.plan.pending):,} change(s) to project '{store.project}' "
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
        label = f"{view}@{row['version']}"
        models = f"  models: {models_text(row['models'], label)}" if row["models"] else ""
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


def models_text(models: list[str], label: str) -> str:
    """The first DEFAULT_LIMIT models pinned to a version, and how to page the rest."""
    shown = ", ".join(models[:DEFAULT_LIMIT])
    if len(models) <= DEFAULT_LIMIT:
        return shown
    rest = len(models) - DEFAULT_LIMIT
    return f"{shown} and {rest:,} more (`featurestore describe {label} --offset {DEFAULT_LIMIT}`)"


@handle_errors
def list_objects(
    kind: Annotated[
        str | None,
        typer.Argument(help="Only this kind (feature_view or view, model, ...; all for any)."),
    ] = None,
    name: Annotated[
        str | None, typer.Argument(help="Only names matching this glob, e.g. 'fraud_*'.")
    ] = None,
    repo: RepoOption = Path("."),
    owner: Annotated[str | None, typer.Option(help="Only this owner (a glob).")] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="Only objects with tag KEY=VALUE (or KEY); repeat to need all."),
    ] = None,
    purpose: Annotated[str | None, typer.Option(help="Only models of this purpose.")] = None,
    retired: Annotated[bool, typer.Option(help="Include retired objects.")] = False,
    limit: LimitOption = None,
    offset: OffsetOption = 0,
    as_json: JsonOption = False,
) -> None:
    """List registered objects, filtered and a page at a time."""
    kinds, name = list_kinds(kind, name)
    where = HeadFilter(
        kinds=kinds,
        name=name,
        owner=owner,
        tags=parse_tags(tag),
        purpose=purpose,
        retired=retired,
    )
    with open_store(repo) as store:
        snapshot = store.snapshot()
    found = list_heads(snapshot, where, offset, json_limit(limit) if as_json else text_limit(limit))
    if as_json:
        echo_json(
            {
                "total": found.total,
                "offset": offset,
                "limit": limit,
                "objects": [
                    {
                        "kind": h.kind,
                        "name": h.name,
                        "status": h.status,
                        "version": h.version,
                        "owner": h.spec.get("owner") or None,
                    }
                    for h in found.items
                ],
            }
        )
        return
    for h in found.items:
        version = f"@v{h.version}" if h.version else ""
        status = "" if h.status == "active" else f"  ({h.status})"
        typer.echo(f"{h.kind:<16} {h.name}{version}{status}")
    typer.echo(found.footer("objects"))


def list_kinds(kind: str | None, name: str | None) -> tuple[frozenset[str] | None, str | None]:
    """``list KIND``, ``list KIND GLOB``, ``list all GLOB``, and ``list GLOB`` when the one
    argument is a glob (``list 'fraud_*'``) rather than a kind."""
    if kind is None or kind.lower() in ("all", "*"):
        return None, name
    if name is None and any(c in kind for c in "*?["):
        return None, kind
    try:
        return parse_kinds([kind], "KIND"), name
    except UsageError as exc:
        raise UsageError(
            f"{exc} For objects by name, give the kind first: `featurestore list all {kind}`."
        ) from None


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
