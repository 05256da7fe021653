"""Writing a plan's changes into the registry tables, in bulk.

An apply that registers 100,000 models must not cost 400,000 statements: each table gets
one multi-row statement per chunk of changes (``executemany``), so the number of
statements grows with the kinds of write, not the number of objects (a test counts
them). Progress (``on_change``) is told after each chunk is written, inside the
transaction: if it raises, the whole apply rolls back.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, update

from featurestore.definitions.feature_view import fingerprint
from featurestore.registry import schema as t
from featurestore.registry.database import dumps, inserted_id, whoami
from featurestore.registry.plan import Change, ChangeKind
from featurestore.registry.snapshot import ACTIVE, RETIRED, RegistrySnapshot
from featurestore.times import now_utc

CHUNK = 2_000  # changes per round of statements: progress stays live on big applies

_HEAD_KEY = and_(
    t.heads.c.project == bindparam("b_project"),
    t.heads.c.kind == bindparam("b_kind"),
    t.heads.c.name == bindparam("b_name"),
)
_MOVE_HEAD = (
    update(t.heads)
    .where(_HEAD_KEY)
    .values(
        revision=bindparam("b_revision"),
        status=bindparam("b_status"),
        updated_at=bindparam("b_at"),
    )
)
_RETIRE_HEAD = update(t.heads).where(_HEAD_KEY).values(status=RETIRED, updated_at=bindparam("b_at"))
_VERSION_SPEC = (
    update(t.view_versions)
    .where(
        t.view_versions.c.project == bindparam("b_project"),
        t.view_versions.c.view == bindparam("b_view"),
        t.view_versions.c.version == bindparam("b_version"),
    )
    .values(spec=bindparam("b_spec"))
)


def record_apply(
    conn: Connection,
    project: str,
    serial: int,
    summary: dict[str, Any],
    applied_by: str | None = None,
    code_version: str | None = None,
) -> int:
    """Move the project's serial (servers poll it) and record the apply; its id."""
    now = now_utc()
    updated = conn.execute(
        update(t.projects).where(t.projects.c.name == project).values(serial=serial, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(
            t.projects.insert().values(name=project, serial=serial, created_at=now, updated_at=now)
        )
    result = conn.execute(
        t.applies.insert().values(
            project=project,
            serial=serial,
            applied_at=now,
            applied_by=applied_by or whoami(),
            host=socket.gethostname(),
            code_version=code_version,
            summary=dumps(summary),
        )
    )
    return inserted_id(result)


def write_changes(
    conn: Connection,
    project: str,
    changes: Sequence[Change],
    snapshot: RegistrySnapshot,
    apply_id: int,
    on_change: Callable[[Change], None] | None = None,
) -> None:
    """Write ``changes`` (none UNCHANGED) against the registry state ``snapshot``."""
    now = now_utc()
    for start in range(0, len(changes), CHUNK):
        chunk = changes[start : start + CHUNK]
        _write_chunk(conn, project, chunk, snapshot, apply_id, now)
        if on_change is not None:
            for change in chunk:
                on_change(change)


def _write_chunk(
    conn: Connection,
    project: str,
    changes: Sequence[Change],
    snapshot: RegistrySnapshot,
    apply_id: int,
    now: datetime,
) -> None:
    revisions: list[dict[str, Any]] = []
    new_heads: list[dict[str, Any]] = []
    moved_heads: list[dict[str, Any]] = []
    retired_heads: list[dict[str, Any]] = []
    new_versions: list[dict[str, Any]] = []
    version_specs: list[dict[str, Any]] = []
    for change in changes:
        head = snapshot.heads.get((change.kind, change.name))
        key = {"b_project": project, "b_kind": change.kind, "b_name": change.name, "b_at": now}
        if change.change == ChangeKind.RETIRE:
            retired_heads.append(key)
            continue
        if change.spec is None:
            raise ValueError(f"{change.kind} '{change.name}': a {change.change} needs a spec")
        revision = (head.revision if head else 0) + 1
        spec_text = dumps(change.spec)
        revisions.append(
            {
                "project": project,
                "kind": change.kind,
                "name": change.name,
                "revision": revision,
                "version": change.version,
                "spec": spec_text,
                "spec_hash": fingerprint(change.spec),
                "location": change.location,
                "apply_id": apply_id,
                "created_at": now,
            }
        )
        if head is None:
            new_heads.append(
                {
                    "project": project,
                    "kind": change.kind,
                    "name": change.name,
                    "revision": revision,
                    "status": ACTIVE,
                    "updated_at": now,
                }
            )
        else:
            moved_heads.append({**key, "b_revision": revision, "b_status": ACTIVE})
        if change.kind == "feature_view":
            exists = change.version in snapshot.versions.get(change.name, {})
            (version_specs if exists else new_versions).append(
                _version_row(project, change, spec_text, exists, apply_id, now)
            )
    for statement, rows in (
        (t.revisions.insert(), revisions),
        (t.heads.insert(), new_heads),
        (_MOVE_HEAD, moved_heads),
        (_RETIRE_HEAD, retired_heads),
        (t.view_versions.insert(), new_versions),
        (_VERSION_SPEC, version_specs),
    ):
        if rows:
            conn.execute(statement, rows)


def _version_row(
    project: str, change: Change, spec_text: str, exists: bool, apply_id: int, now: datetime
) -> dict[str, Any]:
    """A view version's row: its spec's update when the version exists, else the new one."""
    if exists:
        return {
            "b_project": project,
            "b_view": change.name,
            "b_version": change.version,
            "b_spec": spec_text,
        }
    return {
        "project": project,
        "view": change.name,
        "version": change.version,
        "fingerprint": change.fingerprint,
        "version_spec": dumps(change.version_spec),
        "spec": spec_text,
        "status": ACTIVE,
        "created_at": now,
        "apply_id": apply_id,
    }
