"""The registry store: every applied revision of every object, behind a URL.

``sqlite:///path`` (the default, embedded, WAL mode) serves one machine and
any number of local readers; ``postgresql+psycopg://...`` lets serving
replicas and consumers on other hosts share one registry. Writes take the
project's write lock (an advisory lock per project on PostgreSQL; ``BEGIN
IMMEDIATE``, one writer at a time, on SQLite) for as long as they write, never
for the whole of an apply: the plan is computed before, and computed again under
the lock only if another apply landed meanwhile, so two racing applies serialize
and the second sees the first's result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from featurestore.errors import (
    ApplyError,
    ConflictError,
    ObjectNotFound,
    RegistryUnavailable,
    RepoLoadError,
)
from featurestore.gcpause import gc_paused
from featurestore.registry import schema as t
from featurestore.registry.audit import AuditLog, AuditRecord, append_audit
from featurestore.registry.change_writer import record_apply, write_changes
from featurestore.registry.credentials import CredentialStore
from featurestore.registry.database import (
    Database,
    current_serial,
    dumps,
    inserted_id,
    read_snapshot,
    whoami,
)
from featurestore.registry.drift import DriftLog, write_profiles
from featurestore.registry.plan import Change, ChangeKind, Plan, compute_plan
from featurestore.registry.runs import RunLog
from featurestore.registry.snapshot import RETIRED, RegistrySnapshot, ViewVersion
from featurestore.repo import RepoContents
from featurestore.times import as_utc as _utc  # SQLite returns naive, PostgreSQL zoned
from featurestore.times import now_utc


@dataclass(frozen=True, slots=True)
class ApplyResult:
    plan: Plan
    apply_id: int | None  # None when there was nothing to apply
    serial: int


@dataclass(frozen=True, slots=True)
class Revision:
    kind: str
    name: str
    revision: int
    version: int | None
    spec: dict[str, Any]
    location: str | None
    apply_id: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TrainingSetRecord:
    project: str
    model: str | None
    features: tuple[str, ...]  # resolved references, each pinned: "view@vN:feature"
    entity_fingerprint: str
    entity_rows: int
    rows: int
    engine: str
    output_path: str | None
    offline_manifests: dict[str, int]  # "view@vN" -> offline manifest sequence read
    id: int | None = None
    fingerprint: str | None = None  # of the set's content (None: recorded before v8)
    build: dict[str, Any] | None = None  # how it was joined (None: recorded before v8)
    as_of: datetime | None = None  # only offline rows landed by then were read
    spine: dict[str, str] | None = None  # entity rows from a view: {"view", "start", "end"}
    created_at: datetime | None = None
    created_by: str | None = None


class Registry:
    """Versioned object store for one or more projects, with its logs as attributes:
    ``runs`` (materialization), ``audit``, ``credentials`` (API keys) and ``drift``."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.database = Database(url, engine=engine)
        self.runs = RunLog(self.database)
        self.audit = AuditLog(self.database)
        self.credentials = CredentialStore(self.database)
        self.drift = DriftLog(self.database)

    def close(self) -> None:
        self.database.close()

    # -- reads ----------------------------------------------------------------

    def serial(self, project: str) -> int:
        """Grows with every apply: compare it to reload a snapshot only when needed."""
        with self.database.read() as conn:
            return current_serial(conn, project)

    def snapshot(
        self, project: str, *, previous: RegistrySnapshot | None = None
    ) -> RegistrySnapshot:
        """The project's current definitions and versions, as one consistent read; with
        ``previous``, what did not change since is shared with it (``read_snapshot``)."""
        with gc_paused(), self.database.read() as conn:
            return read_snapshot(conn, project, previous=previous)

    def history(self, project: str, kind: str, name: str) -> list[Revision]:
        with self.database.read() as conn:
            rows = conn.execute(
                select(t.revisions)
                .where(
                    t.revisions.c.project == project,
                    t.revisions.c.kind == kind,
                    t.revisions.c.name == name,
                )
                .order_by(t.revisions.c.revision)
            ).all()
        return [
            Revision(
                r.kind,
                r.name,
                r.revision,
                r.version,
                orjson.loads(r.spec),
                r.location,
                r.apply_id,
                _utc(r.created_at),
            )
            for r in rows
        ]

    def versions(self, project: str, view: str) -> list[ViewVersion]:
        """Every version of a view, retired ones included, oldest first."""
        snap = self.snapshot(project)
        known = snap.versions.get(view)
        if not known:
            snap.view_head(view)  # raises FeatureViewNotFound with did-you-mean
            return []
        return [known[v] for v in sorted(known)]

    # -- writes ---------------------------------------------------------------

    def plan(self, contents: RepoContents) -> Plan:
        return compute_plan(contents, self.snapshot(contents.config.project))

    def apply(
        self,
        contents: RepoContents,
        *,
        on_change: Callable[[Change], None] | None = None,
        applied_by: str | None = None,
        code_version: str | None = None,
    ) -> ApplyResult:
        """Make the registry match the repo, atomically.

        The plan is computed from a snapshot read without any lock; the write lock is
        then held only while writing. If another apply moved the project's serial in
        between, the plan is recomputed under the lock, so racing applies still
        serialize and the second sees the first's result. ``on_change`` is called as
        changes are written (progress); if it or anything else raises, the whole apply
        rolls back and the registry is as it was.
        """
        project = contents.config.project
        try:
            with gc_paused(), self.database.read() as conn:
                snapshot = read_snapshot(conn, project)
            plan = compute_plan(contents, snapshot)
            if not plan.has_changes:
                return ApplyResult(plan, None, snapshot.serial)
            with self.database.write(project) as conn:
                if current_serial(conn, project) != snapshot.serial:
                    snapshot = read_snapshot(conn, project)
                    plan = compute_plan(contents, snapshot)
                    if not plan.has_changes:
                        return ApplyResult(plan, None, snapshot.serial)
                serial = snapshot.serial + 1
                pending = plan.pending
                apply_id = record_apply(
                    conn, project, serial, plan.summary_json(), applied_by, code_version
                )
                append_audit(
                    conn,
                    AuditRecord(
                        project=project,
                        action="apply",
                        actor=applied_by or whoami(),
                        subject=f"serial {serial}",
                        detail={
                            "apply": apply_id,
                            "code_version": code_version,
                            "changes": [c.label() for c in pending],
                        },
                    ),
                )
                write_changes(conn, project, pending, snapshot, apply_id, on_change)
                return ApplyResult(plan, apply_id, serial)
        except (RegistryUnavailable, ApplyError, RepoLoadError):
            raise
        except SQLAlchemyError as exc:
            raise ApplyError(
                f"Apply to project '{project}' failed and was rolled back; the registry is "
                f"unchanged. Cause: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            ) from exc

    def record_training_set(
        self, record: TrainingSetRecord, profiles: list[dict[str, Any]] | None = None
    ) -> int:
        """Lineage: remember which view versions and data a training set was built from,
        with the reference profile of each feature (for drift monitors), atomically."""
        with self.database.write(record.project) as conn:
            result = conn.execute(
                t.training_sets.insert().values(
                    project=record.project,
                    model=record.model,
                    features=dumps(list(record.features)),
                    entity_fingerprint=record.entity_fingerprint,
                    entity_rows=record.entity_rows,
                    rows=record.rows,
                    engine=record.engine,
                    output_path=record.output_path,
                    offline_manifests=dumps(record.offline_manifests),
                    fingerprint=record.fingerprint,
                    build=None if record.build is None else dumps(record.build),
                    as_of=record.as_of,
                    spine=dumps(record.spine) if record.spine is not None else None,
                    created_at=now_utc(),
                    created_by=whoami(),
                )
            )
            training_set = inserted_id(result)
            write_profiles(conn, record.project, training_set, profiles or [])
            return training_set

    def training_sets(
        self,
        project: str,
        model: str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[TrainingSetRecord]:
        """Training-set builds, newest first; only one model's when ``model`` is given
        (``limit`` and ``offset``: one page of them)."""
        ts = t.training_sets
        query = select(ts).where(ts.c.project == project).order_by(ts.c.id.desc())
        if model is not None:
            query = query.where(ts.c.model == model)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self.database.read() as conn:
            rows = conn.execute(query).all()
        return [_training_set(r) for r in rows]

    def training_set_count(self, project: str, model: str | None = None) -> int:
        """How many builds ``training_sets`` with the same filter would list."""
        ts = t.training_sets
        query = select(func.count()).select_from(ts).where(ts.c.project == project)
        if model is not None:
            query = query.where(ts.c.model == model)
        with self.database.read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def training_set(self, project: str, training_set: int) -> TrainingSetRecord:
        """One recorded build; ObjectNotFound (saying how to list them) if there is none."""
        with self.database.read() as conn:
            return _training_set(_training_set_row(conn, project, training_set))

    def delete_training_set(
        self, project: str, training_set: int, *, actor: str | None = None
    ) -> TrainingSetRecord:
        """Forget a recorded build and its reference profiles (audited); the deleted record.
        Its offline inputs are the caller's to release (``offline/training_inputs.py``)."""
        ts, pr = t.training_sets, t.profiles
        with self.database.write(project) as conn:
            record = _training_set(_training_set_row(conn, project, training_set))
            conn.execute(
                delete(pr).where(pr.c.project == project, pr.c.training_set == training_set)
            )
            conn.execute(delete(ts).where(ts.c.project == project, ts.c.id == training_set))
            append_audit(
                conn,
                AuditRecord(
                    project=project,
                    action="training_set_delete",
                    actor=actor or whoami(),
                    subject=record.model or "",
                    detail={
                        "training_set": training_set,
                        "features": list(record.features),
                        "fingerprint": record.fingerprint,
                    },
                ),
            )
            return record

    def retire_version(self, project: str, view: str, version: int) -> ViewVersion:
        """Stop serving one version. Refused while a model is pinned to it."""
        with self.database.write(project) as conn:
            snap = read_snapshot(conn, project)
            vv = snap.view_version(view, version)
            if vv.version == snap.latest_version(view):
                raise ConflictError(
                    f"{vv.label} is the latest version of '{view}'; remove the view from the repo "
                    "and apply to retire it, or apply a new version first."
                )
            pinned = snap.models_pinned_to(view, version)
            if pinned:
                raise ConflictError(
                    f"{vv.label} is still used by model(s) {', '.join(pinned)}. Promote them "
                    f"(`featurestore promote MODEL`) to a newer version first."
                )
            record_apply(conn, project, snap.serial + 1, {"retire": vv.label})
            conn.execute(
                update(t.view_versions)
                .where(
                    t.view_versions.c.project == project,
                    t.view_versions.c.view == view,
                    t.view_versions.c.version == version,
                )
                .values(status=RETIRED, retired_at=now_utc())
            )
            return read_snapshot(conn, project).versions[view][version]

    def promote(self, project: str, model: str) -> dict[str, int]:
        """Re-register a model on the latest versions of the views it reads."""
        with self.database.write(project) as conn:
            snap = read_snapshot(conn, project)
            head = snap.head("model", model)
            old = head.spec.get("pins", {})
            pins = {view: snap.latest_version(view) for view in old}
            if pins == old:
                return pins
            spec = {**head.spec, "pins": pins}
            apply_id = record_apply(
                conn, project, snap.serial + 1, {"promote": model, "pins": pins}
            )
            change = Change("model", model, ChangeKind.REPIN, spec)
            write_changes(conn, project, [change], snap, apply_id)
            return pins


def _training_set_row(conn: Any, project: str, training_set: int) -> Any:
    """One recorded build's row; ObjectNotFound (saying how to list them) if there is none."""
    ts = t.training_sets
    row = conn.execute(select(ts).where(ts.c.project == project, ts.c.id == training_set)).first()
    if row is None:
        raise ObjectNotFound(
            f"No training set #{training_set} in project '{project}'. List the recorded ones "
            "with `featurestore training-sets`."
        )
    return row


def _training_set(r: Any) -> TrainingSetRecord:
    return TrainingSetRecord(
        project=r.project,
        model=r.model,
        features=tuple(orjson.loads(r.features)),
        entity_fingerprint=r.entity_fingerprint,
        entity_rows=r.entity_rows,
        rows=r.rows,
        engine=r.engine,
        output_path=r.output_path,
        offline_manifests=orjson.loads(r.offline_manifests),
        id=r.id,
        created_at=_utc(r.created_at),
        created_by=r.created_by,
        fingerprint=r.fingerprint,
        build=None if r.build is None else orjson.loads(r.build),
        as_of=_utc(r.as_of),
        spine=orjson.loads(r.spine) if r.spine else None,
    )
