"""``featurestore describe``: an object's definition and revision history, as text or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from featurestore.cli.common import (
    JsonOption,
    LimitOption,
    OffsetOption,
    RepoOption,
    echo_json,
    handle_errors,
    json_limit,
    open_store,
    text_limit,
)
from featurestore.cli.kinds import parse_kinds
from featurestore.cli.listing import page
from featurestore.errors import InvalidReferenceError, UsageError

if TYPE_CHECKING:
    from featurestore.store import FeatureStore


@handle_errors
def describe(
    name: Annotated[str, typer.Argument(help="Object name, or VIEW@vN for one view version.")],
    repo: RepoOption = Path("."),
    kind: Annotated[str | None, typer.Option(help="Kind, when a name is used twice.")] = None,
    limit: LimitOption = None,
    offset: OffsetOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Show an object's current definition and its revision history (a page of it), or a
    view version and the models pinned to it (a page of them)."""
    kinds = parse_kinds([kind], "--kind") if kind else None
    if kinds is not None and len(kinds) > 1:
        raise UsageError(f"--kind {kind!r}: give one kind.")
    with open_store(repo) as store:
        payload = describe_payload(store, name, next(iter(kinds)) if kinds else None)
        project = store.project
    # The long list of each form: a view version's models, an object's revisions.
    key = "models" if payload["kind"] == "feature_view_version" else "history"
    found = page(payload[key], offset, json_limit(limit) if as_json else text_limit(limit))
    payload = {**payload, key: found.items, f"{key}_total": found.total}
    if as_json:
        echo_json(payload)
        return
    for line in describe_lines(payload, project):
        typer.echo(line)
    if found.total > len(found.items):
        typer.echo("  " + found.footer("models" if key == "models" else "revisions"))


def describe_payload(store: FeatureStore, name: str, kind: str | None) -> dict[str, Any]:
    """What ``describe --json`` prints: one view version (``VIEW@vN``) or an object's head
    and its revisions."""
    snapshot = store.snapshot()
    if "@v" in name:
        view, _, version = name.partition("@v")
        if not version.isdigit():
            raise InvalidReferenceError(
                f"Cannot parse {name!r}; write VIEW@vN, e.g. user_profile@v1."
            )
        vv = snapshot.view_version(view, int(version))
        return {
            "kind": "feature_view_version",
            "name": vv.label,
            "status": vv.status,
            "fingerprint": vv.fingerprint,
            "spec": vv.spec,
            "models": snapshot.models_pinned_to(view, vv.version),
        }
    head = snapshot.find(name, kind)
    history = store.registry.history(store.project, head.kind, head.name)
    return {
        "kind": head.kind,
        "name": head.name,
        "status": head.status,
        "revision": head.revision,
        "version": head.version,
        "spec": head.spec,
        "history": [
            {
                "revision": r.revision,
                "version": r.version,
                "created_at": r.created_at.isoformat(timespec="seconds"),
                "location": r.location,
            }
            for r in history
        ],
    }


def describe_lines(payload: dict[str, Any], project: str) -> list[str]:
    """The payload for people: a header line, the spec as indented ``key: value`` lines,
    then the models pinned (a view version) or the revisions (any other object)."""
    if payload["kind"] == "feature_view_version":
        header = (
            f"Feature view version {payload['name']} in project '{project}': {payload['status']}"
        )
        lines = [header, f"  fingerprint {payload['fingerprint']}", "  spec:"]
        lines += spec_lines(payload["spec"], 4)
        lines.append(f"  models: {', '.join(payload['models']) or 'none'}")
        return lines
    version = f", version v{payload['version']}" if payload["version"] else ""
    lines = [
        f"{payload['kind']} '{payload['name']}' in project '{project}': {payload['status']}, "
        f"revision {payload['revision']}{version}",
        "  spec:",
    ]
    lines += spec_lines(payload["spec"], 4)
    lines.append("  history:")
    for r in payload["history"]:
        at = f"  v{r['version']}" if r["version"] else ""
        lines.append(f"    revision {r['revision']}{at}  {r['created_at']}  {r['location'] or '-'}")
    return lines


def spec_lines(value: Any, indent: int) -> list[str]:
    """A spec (JSON-like: dicts, lists, scalars) as YAML-like lines, nested by indent; a
    list of scalars on one line."""
    pad = " " * indent
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            if _flat(item):
                out.append(f"{pad}{key}: {_text(item)}")
            else:
                out += [f"{pad}{key}:", *spec_lines(item, indent + 2)]
        return out or [f"{pad}{{}}"]
    if isinstance(value, list):
        out = []
        for item in value:
            nested = spec_lines(item, indent + 2)
            out += [f"{pad}- {nested[0].lstrip()}", *nested[1:]]
        return out
    return [f"{pad}{_text(value)}"]


def _flat(value: Any) -> bool:
    """Shown on its key's line: a scalar, an empty dict, or a list of scalars."""
    if isinstance(value, dict):
        return not value
    if isinstance(value, list):
        return not any(isinstance(v, dict | list) for v in value)
    return True


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) if value else "[]"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, str) and value:
        return value
    return orjson.dumps(value, default=str).decode()  # "", null, true, numbers
