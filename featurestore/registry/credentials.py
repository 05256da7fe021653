"""API keys in the registry: create (the secret is returned once), list, revoke.

A model's key has ``model`` set; a push-only key has ``model`` '' and its views in
``push_views`` (a JSON list; null in every key made before schema v7, which thus reads as
a model's key, as it was). An operator's key (the web UI's) has ``model`` '' and ``role``
'operator' (null in every key made before schema v9).

Each change is audited in its own transaction and bumps the project's serial, so
servers reload their keys (a revoked key stops working within their refresh interval).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from featurestore.errors import EntityInputError, ObjectNotFound
from featurestore.policy.keys import (
    OPERATOR,
    PREFIX,
    Credential,
    hash_secret,
    new_key,
    new_salt,
)
from featurestore.registry import schema as t
from featurestore.registry.audit import AuditRecord, append_audit
from featurestore.registry.database import Database, read_snapshot
from featurestore.times import as_utc, now_utc


def _bump_serial(conn: Connection, project: str, now: datetime) -> None:
    p = t.projects
    conn.execute(update(p).where(p.c.name == project).values(serial=p.c.serial + 1, updated_at=now))


def _from_row(r: Any) -> Credential:

    return Credential(
        key_id=r.key_id,
        project=r.project,
        model=r.model,
        salt=r.salt,
        secret_hash=r.secret_hash,
        created_at=as_utc(r.created_at),
        created_by=r.created_by,
        expires_at=as_utc(r.expires_at) if r.expires_at else None,
        revoked_at=as_utc(r.revoked_at) if r.revoked_at else None,
        revoked_by=r.revoked_by,
        description=r.description,
        push_views=tuple(orjson.loads(r.push_views)) if r.push_views else (),
        operator=r.role == OPERATOR,
    )


def key_id_of(ref: str) -> str:
    """A key named in a command: its id, ``fsk_<id>``, or (pasted whole) the key."""
    ref = ref.strip()
    if ref.startswith(PREFIX):
        ref = ref[len(PREFIX) :].split("_", 1)[0]
    if len(ref) != 16 or any(c not in "0123456789abcdef" for c in ref):
        raise EntityInputError(
            f"'{ref}' is not a key id: give the 16 hex digits after '{PREFIX}' (as "
            "`featurestore credentials list` shows them)."
        )
    return ref


class CredentialStore:
    """API keys (``registry.credentials``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create(
        self,
        project: str,
        model: str,
        *,
        actor: str,
        expires_at: datetime | None = None,
        description: str = "",
    ) -> tuple[Credential, str]:
        """A new key for ``model`` (which must exist): ``(credential, key)``; the key is
        not stored and cannot be shown again."""
        return self._create(project, model, (), actor, expires_at, description)

    def create_push(
        self,
        project: str,
        views: list[str] | tuple[str, ...],
        *,
        actor: str,
        expires_at: datetime | None = None,
        description: str = "",
    ) -> tuple[Credential, str]:
        """A new push-only key for ``views`` (each an active feature view): it may push
        rows to them and read nothing."""
        names = tuple(dict.fromkeys(v.strip() for v in views if v.strip()))
        if not names:
            raise EntityInputError("--push needs at least one feature view: --push VIEW[,VIEW...].")
        return self._create(project, "", names, actor, expires_at, description)

    def create_operator(
        self,
        project: str,
        *,
        actor: str,
        expires_at: datetime | None = None,
        description: str = "",
    ) -> tuple[Credential, str]:
        """A new operator's key: it opens the web UI (read-only) and reads no features."""
        return self._create(project, "", (), actor, expires_at, description, operator=True)

    def _create(
        self,
        project: str,
        model: str,
        push_views: tuple[str, ...],
        actor: str,
        expires_at: datetime | None,
        description: str,
        *,
        operator: bool = False,
    ) -> tuple[Credential, str]:
        now = now_utc()
        if expires_at is not None and expires_at <= now:
            raise EntityInputError(
                f"--expires {expires_at.isoformat()} is in the past; give a later time or a "
                "duration such as 90d."
            )
        with self.database.write(project) as conn:
            snapshot = read_snapshot(conn, project)
            if push_views:
                for view in push_views:
                    snapshot.feature_view(view)  # FeatureViewNotFound, with a suggestion
            elif not operator:  # an operator's key names no object
                snapshot.model(model)  # ObjectNotFound, with a suggestion
            key_id, secret, key = new_key()
            salt = new_salt()
            credential = Credential(
                key_id=key_id,
                project=project,
                model=model,
                salt=salt,
                secret_hash=hash_secret(salt, secret),
                created_at=now,
                created_by=actor,
                expires_at=expires_at,
                description=description,
                push_views=push_views,
                operator=operator,
            )
            conn.execute(
                t.credentials.insert().values(
                    project=project,
                    key_id=key_id,
                    model=model,
                    salt=salt,
                    secret_hash=credential.secret_hash,
                    description=description,
                    created_at=now,
                    created_by=actor,
                    expires_at=expires_at,
                    push_views=orjson.dumps(list(push_views)).decode() if push_views else None,
                    role=OPERATOR if operator else None,
                )
            )
            append_audit(
                conn,
                AuditRecord(
                    project=project,
                    action="credential_create",
                    actor=actor,
                    subject=credential.subject,
                    detail={
                        "key": credential.label,
                        "expires_at": expires_at.isoformat() if expires_at else None,
                        "description": description,
                    },
                ),
            )
            _bump_serial(conn, project, now)
        return credential, key

    def records(self, project: str, model: str | None = None) -> list[Credential]:
        """Keys, oldest first; only one model's when ``model`` is given."""
        c = t.credentials
        query = select(c).where(c.c.project == project).order_by(c.c.created_at, c.c.key_id)
        if model is not None:
            query = query.where(c.c.model == model)
        with self.database.read() as conn:
            return [_from_row(r) for r in conn.execute(query).all()]

    def revoke(self, project: str, key_id: str, *, actor: str) -> Credential:
        """Revoke a key (idempotent: revoking a revoked key changes nothing)."""
        c = t.credentials
        now = now_utc()
        with self.database.write(project) as conn:
            row = conn.execute(
                select(c).where(c.c.project == project, c.c.key_id == key_id)
            ).first()
            if row is None:
                raise ObjectNotFound(
                    f"Project '{project}' has no API key {PREFIX}{key_id}. See `featurestore "
                    "credentials list`."
                )
            if row.revoked_at is not None:
                return _from_row(row)
            conn.execute(
                update(c)
                .where(c.c.project == project, c.c.key_id == key_id)
                .values(revoked_at=now, revoked_by=actor)
            )
            append_audit(
                conn,
                AuditRecord(
                    project=project,
                    action="credential_revoke",
                    actor=actor,
                    subject=_from_row(row).subject,
                    detail={"key": f"{PREFIX}{key_id}"},
                ),
            )
            _bump_serial(conn, project, now)
            row = conn.execute(
                select(c).where(c.c.project == project, c.c.key_id == key_id)
            ).first()
        return _from_row(row)
