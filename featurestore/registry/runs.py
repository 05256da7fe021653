"""Materialization runs: the lineage step between a source and a view version.

A run is recorded ``running`` when it starts and ``succeeded`` or ``failed``
when it ends, so a run killed mid-way stays visible as ``running`` (with no
finish time) rather than vanishing. The incremental watermark of a view
version is the end of its last successful run (push runs excluded: rows a service
pushed say nothing about how far the batch source has been read).

Pushes are recorded as runs too (engine ``push``), one per view version and interval
(``record_push`` adds to the interval's run), never one per push.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, func, or_, select, update

from featurestore.errors import ObjectNotFound
from featurestore.registry import schema as t
from featurestore.registry.database import Database, inserted_id, whoami
from featurestore.times import as_utc, now_utc

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
PUSH_ENGINE = "push"


@dataclass(slots=True)
class RunRecord:
    project: str
    view: str
    version: int
    window_start: datetime | None
    window_end: datetime
    status: str = RUNNING
    sources: list[dict[str, Any]] = field(default_factory=list)
    rows_read: int | None = None
    rows_offline: int | None = None
    rows_online: int | None = None
    validation: dict[str, Any] | None = None
    offline_manifest: int | None = None
    code_version: str | None = None
    engine: str | None = None
    error: str | None = None
    id: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    started_by: str | None = None

    @property
    def label(self) -> str:
        return f"{self.view}@v{self.version}"


class RunLog:
    """Materialization runs (``registry.runs``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def start(self, run: RunRecord) -> int:
        """Record ``run`` as running; sets and returns its id (and sets when and by whom
        it started, so the caller's record equals the stored one)."""
        run.started_at, run.started_by = now_utc(), whoami()
        with self.database.write(run.project) as conn:
            result = conn.execute(
                t.materialization_runs.insert().values(
                    project=run.project,
                    view=run.view,
                    version=run.version,
                    status=RUNNING,
                    window_start=run.window_start,
                    window_end=run.window_end,
                    sources=orjson.dumps(run.sources).decode(),
                    code_version=run.code_version,
                    engine=run.engine,
                    started_at=run.started_at,
                    started_by=run.started_by,
                )
            )
            run.id = inserted_id(result)
        return run.id

    def finish(self, run: RunRecord, status: str, error: str | None = None) -> None:
        """Record the end of ``run``: ``succeeded`` or ``failed``, with its counts."""
        run.status, run.error, run.finished_at = status, error, now_utc()
        with self.database.write(run.project) as conn:
            conn.execute(
                update(t.materialization_runs)
                .where(t.materialization_runs.c.id == run.id)
                .values(
                    status=status,
                    error=error,
                    sources=orjson.dumps(run.sources).decode(),
                    rows_read=run.rows_read,
                    rows_offline=run.rows_offline,
                    rows_online=run.rows_online,
                    validation=(
                        orjson.dumps(run.validation).decode()
                        if run.validation is not None
                        else None
                    ),
                    offline_manifest=run.offline_manifest,
                    finished_at=run.finished_at,
                )
            )

    def record_push(
        self,
        project: str,
        view: str,
        version: int,
        window: tuple[datetime, datetime],
        *,
        pushes: int,
        rows: int,
        rows_online: int,
        rows_offline: int,
    ) -> int:
        """Add pushed counts to ``view@v<version>``'s push run of ``window`` (made on first
        use; several processes add to the same run). Returns the run's id."""
        mr = t.materialization_runs
        now = now_utc()
        with self.database.write(project) as conn:
            row = conn.execute(
                select(mr.c.id, mr.c.rows_read, mr.c.rows_online, mr.c.rows_offline, mr.c.sources)
                .where(
                    mr.c.project == project,
                    mr.c.view == view,
                    mr.c.version == version,
                    mr.c.engine == PUSH_ENGINE,
                    mr.c.window_start == window[0],
                )
                .limit(1)
            ).first()
            if row is None:
                result = conn.execute(
                    mr.insert().values(
                        project=project,
                        view=view,
                        version=version,
                        status=SUCCEEDED,
                        window_start=window[0],
                        window_end=window[1],
                        sources=orjson.dumps([{"type": "push", "pushes": pushes}]).decode(),
                        rows_read=rows,
                        rows_online=rows_online,
                        rows_offline=rows_offline,
                        engine=PUSH_ENGINE,
                        started_at=now,
                        finished_at=now,
                        started_by=whoami(),
                    )
                )
                return inserted_id(result)
            before = orjson.loads(row.sources or "[]")
            earlier = sum(s.get("pushes", 0) for s in before if isinstance(s, dict))
            conn.execute(
                update(mr)
                .where(mr.c.id == row.id)
                .values(
                    rows_read=(row.rows_read or 0) + rows,
                    rows_online=(row.rows_online or 0) + rows_online,
                    rows_offline=(row.rows_offline or 0) + rows_offline,
                    sources=orjson.dumps([{"type": "push", "pushes": earlier + pushes}]).decode(),
                    finished_at=now,
                )
            )
            return int(row.id)

    def records(
        self,
        project: str,
        view: str | None = None,
        *,
        status: str | None = None,
        engine: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunRecord]:
        """Runs, newest first; one view's when ``view`` is given, of one status or engine
        when those are (``offset`` skips the newest, for pages)."""
        mr = t.materialization_runs
        query = _filtered(select(mr), project, view, status, engine).order_by(mr.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self.database.read() as conn:
            rows = conn.execute(query).all()
        return [_record(r) for r in rows]

    def count(
        self,
        project: str,
        view: str | None = None,
        *,
        status: str | None = None,
        engine: str | None = None,
    ) -> int:
        """How many runs ``records`` with the same filters would list."""
        query = _filtered(select(func.count()), project, view, status, engine)
        query = query.select_from(t.materialization_runs)
        with self.database.read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def record(self, project: str, run_id: int) -> RunRecord:
        """One run; ObjectNotFound (saying how to list them) if there is none."""
        mr = t.materialization_runs
        query = select(mr).where(mr.c.project == project, mr.c.id == run_id)
        with self.database.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise ObjectNotFound(
                f"No materialization run #{run_id} in project '{project}'. List the recorded "
                "ones with `featurestore runs`."
            )
        return _record(row)

    def engines(self, project: str) -> list[str]:
        """The engines the project's runs were made by (what a filter can offer)."""
        mr = t.materialization_runs
        query = select(mr.c.engine).where(mr.c.project == project).distinct()
        with self.database.read() as conn:
            return sorted(e for (e,) in conn.execute(query) if e)

    def watermark(self, project: str, view: str, version: int) -> datetime | None:
        """End of the last successful run of ``view@v<version>``; None if it never ran."""
        mr = t.materialization_runs
        query = (
            select(mr.c.window_end)
            .where(
                mr.c.project == project,
                mr.c.view == view,
                mr.c.version == version,
                mr.c.status == SUCCEEDED,
                or_(mr.c.engine.is_(None), mr.c.engine != PUSH_ENGINE),
            )
            .order_by(mr.c.window_end.desc())
            .limit(1)
        )
        with self.database.read() as conn:
            row = conn.execute(query).first()
        return as_utc(row[0]) if row else None


def _filtered(
    query: Select[Any], project: str, view: str | None, status: str | None, engine: str | None
) -> Select[Any]:
    mr = t.materialization_runs
    query = query.where(mr.c.project == project)
    if view is not None:
        query = query.where(mr.c.view == view)
    if status is not None:
        query = query.where(mr.c.status == status)
    if engine is not None:
        query = query.where(mr.c.engine == engine)
    return query


def _record(r: Any) -> RunRecord:
    return RunRecord(
        project=r.project,
        view=r.view,
        version=r.version,
        window_start=as_utc(r.window_start),
        window_end=as_utc(r.window_end),
        status=r.status,
        sources=orjson.loads(r.sources),
        rows_read=r.rows_read,
        rows_offline=r.rows_offline,
        rows_online=r.rows_online,
        validation=orjson.loads(r.validation) if r.validation else None,
        offline_manifest=r.offline_manifest,
        code_version=r.code_version,
        engine=r.engine,
        error=r.error,
        id=r.id,
        started_at=as_utc(r.started_at),
        finished_at=as_utc(r.finished_at),
        started_by=r.started_by,
    )
