"""Drift in the registry: reference profiles per training set, and each monitor check.

Profiles are written in the same transaction as their training set's lineage record, so a
training set never exists without the profile a monitor compares serving with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select

from featurestore.registry import schema as t
from featurestore.registry.database import Database, inserted_id
from featurestore.times import as_utc


@dataclass(frozen=True, slots=True)
class DriftCheck:
    id: int
    project: str
    model: str
    status: str
    checked_at: datetime
    training_set: int | None
    detail: dict[str, Any]


def write_profiles(
    conn: Connection, project: str, training_set: int, profiles: list[dict[str, Any]]
) -> None:
    if profiles:
        conn.execute(
            t.profiles.insert(),
            [
                {
                    "project": project,
                    "training_set": training_set,
                    "feature": p["feature"],
                    "profile": orjson.dumps(p).decode(),
                }
                for p in profiles
            ],
        )


class DriftLog:
    """Reference profiles and monitor checks (``registry.drift``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def profiles(self, project: str, training_set: int) -> dict[str, dict[str, Any]]:
        """``{view@vN:feature: profile}`` of one training set (profiles as dicts)."""
        pr = t.profiles
        query = select(pr.c.feature, pr.c.profile).where(
            pr.c.project == project, pr.c.training_set == training_set
        )
        with self.database.read() as conn:
            return {r.feature: orjson.loads(r.profile) for r in conn.execute(query)}

    def reference(self, project: str, model: str) -> tuple[int, dict[str, dict[str, Any]]] | None:
        """The newest training set of ``model`` that has profiles, and its profiles."""
        ts, pr = t.training_sets, t.profiles
        query = (
            select(ts.c.id)
            .where(ts.c.project == project, ts.c.model == model)
            .where(
                select(pr.c.feature)
                .where(pr.c.project == project, pr.c.training_set == ts.c.id)
                .exists()
            )
            .order_by(ts.c.id.desc())
            .limit(1)
        )
        with self.database.read() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else (found, self.profiles(project, found))

    def record_check(
        self,
        project: str,
        model: str,
        status: str,
        training_set: int | None,
        detail: dict[str, Any],
        checked_at: datetime,
    ) -> int:
        with self.database.write(project) as conn:
            result = conn.execute(
                t.drift_checks.insert().values(
                    project=project,
                    model=model,
                    status=status,
                    checked_at=checked_at,
                    training_set=training_set,
                    detail=orjson.dumps(detail, default=str).decode(),
                )
            )
            return inserted_id(result)

    def checks(
        self, project: str, model: str | None = None, *, limit: int | None = 50, offset: int = 0
    ) -> list[DriftCheck]:
        """Checks, newest first (after skipping ``offset``, for pages of history); only one
        model's when ``model`` is given."""
        dc = t.drift_checks
        query = select(dc).where(dc.c.project == project).order_by(dc.c.id.desc())
        if model is not None:
            query = query.where(dc.c.model == model)
        if limit:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self.database.read() as conn:
            return [
                DriftCheck(
                    id=r.id,
                    project=r.project,
                    model=r.model,
                    status=r.status,
                    checked_at=as_utc(r.checked_at),
                    training_set=r.training_set,
                    detail=orjson.loads(r.detail),
                )
                for r in conn.execute(query)
            ]
