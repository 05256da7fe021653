"""``featurestore credentials``: API keys for models, and push-only keys for views
(create, list, revoke)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

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
from featurestore.policy.keys import OPERATOR

credentials_app = typer.Typer(
    help="API keys: one project and one model each, push-only keys for views, or an "
    "operator's key for the web UI."
)

_DURATION = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_expiry(value: str | None, now: datetime) -> datetime | None:
    """``90d`` / ``12h`` / ``30m`` from now, or an ISO time; None: never expires."""
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match:
        return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        return parse_time(value, "--expires")
    except EntityInputError:
        raise EntityInputError(
            f"--expires {value!r} is neither a duration (90d, 12h, 30m) nor an ISO time "
            "(2027-01-01, 2027-01-01T12:00:00Z)."
        ) from None


@credentials_app.command("create")
@handle_errors
def create(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The model the key acts as.")
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(
            "--push", help="VIEW[,VIEW...]: a push-only key for these views (reads nothing)."
        ),
    ] = None,
    operator: Annotated[
        bool,
        typer.Option(
            "--operator", help="An operator's key: opens the web UI, reads no feature values."
        ),
    ] = False,
    expires: Annotated[
        str | None, typer.Option(help="90d, 12h, 30m, or an ISO time (default: never).")
    ] = None,
    description: Annotated[str, typer.Option(help="Who or what uses the key.")] = "",
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Make an API key for MODEL (or a push-only key for --push views, or an operator's key
    for the UI) and print it once (only a salted hash is stored)."""
    if [model is not None, push is not None, operator].count(True) != 1:
        raise EntityInputError(
            "Give exactly one of --model NAME (a lookup key), --push VIEW[,VIEW...] (a "
            "push-only key) or --operator (a key for the web UI)."
        )
    expires_at = parse_expiry(expires, datetime.now(UTC))
    with open_store(repo) as store:
        if operator:
            credential, key = store.create_operator_credential(
                expires_at=expires_at, description=description
            )
        elif push is not None:
            credential, key = store.create_push_credential(
                push.split(","), expires_at=expires_at, description=description
            )
        else:
            credential, key = store.create_credential(
                model or "", expires_at=expires_at, description=description
            )
    if as_json:
        echo_json(
            {
                "key": key,
                "key_id": credential.key_id,
                "model": credential.model or None,
                "push_views": list(credential.push_views),
                "role": credential.role,
                "expires_at": credential.expires_at,
            }
        )
        return
    typer.echo(key)
    until = (
        credential.expires_at.isoformat(timespec="seconds") if credential.expires_at else "never"
    )
    what = (
        "operator's key (the web UI: `featurestore ui`)"
        if credential.operator
        else f"push-only key for {', '.join(credential.push_views)}"
        if credential.is_push
        else f"key for model '{credential.model}'"
    )
    typer.echo(
        f"API {what}: {credential.label} in project '{credential.project}' "
        f"(expires: {until}). It is shown once: store it in your secret manager now.",
        err=True,
    )


@credentials_app.command("list")
@handle_errors
def list_credentials(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only this model's keys.")
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Include revoked and expired keys.")
    ] = False,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """API keys of the project (never their secrets)."""
    now = datetime.now(UTC)
    with open_store(repo) as store:
        found = store.registry.credentials.records(store.project, model)
    rows: list[dict[str, Any]] = [
        {
            "key_id": c.key_id,
            "model": c.model or None,
            "push_views": list(c.push_views),
            "role": c.role,
            "status": c.status(now),
            "created_at": c.created_at,
            "created_by": c.created_by,
            "expires_at": c.expires_at,
            "revoked_at": c.revoked_at,
            "description": c.description,
        }
        for c in found
        if show_all or c.status(now) == "active"
    ]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        typer.echo("No API keys." if show_all else "No active API keys (--all shows the rest).")
    for r in rows:
        until = r["expires_at"].isoformat(timespec="seconds") if r["expires_at"] else "never"
        typer.echo(
            f"fsk_{r['key_id']}  {_who(r):<20} {r['status']:<8} expires {until:<25} "
            f"created {r['created_at'].isoformat(timespec='seconds')} by {r['created_by']}"
            + (f"  {r['description']}" if r["description"] else "")
        )


@credentials_app.command("revoke")
@handle_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (fsk_<id>, as `list` shows).")],
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: servers refuse it within their refresh interval (default 1 s)."""
    with open_store(repo) as store:
        credential = store.revoke_credential(key_id)
    if as_json:
        echo_json({"key_id": credential.key_id, "revoked_at": credential.revoked_at})
        return
    typer.echo(
        f"Revoked {credential.label} ({credential.subject}) at "
        f"{credential.revoked_at.isoformat(timespec='seconds') if credential.revoked_at else '?'}."
    )


def _who(row: dict[str, Any]) -> str:
    if row["role"] == OPERATOR:
        return OPERATOR
    return f"push:{','.join(row['push_views'])}" if row["push_views"] else str(row["model"])
