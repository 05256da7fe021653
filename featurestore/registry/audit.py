"""The audit log: append-only, tamper-evident records of who did what under which rule.

Each record of a project carries a sequence number (1, 2, ...) and the SHA-256 of its
own content chained to the previous record's hash. Editing a record breaks its hash;
deleting one leaves a gap in the sequence and breaks the next record's link; so
``verify`` (``featurestore audit verify``) finds both, and says where. Appends happen
under the registry's write lock, so the chain has one order.

What is recorded: applies, credential changes, training-set builds (with each feature's
masks), policy denials at training-set builds and online, and online masks. Online
denials and masked plans are coalesced: one record per model, key, rule and minute with
their count (``audit_window``), so a caller varying its requests cannot flood the log.
Allowed online lookups are counted per model and feature (``OnlineClient.usage()``, the
server's /metrics), not logged one by one, so lookups stay fast.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Select, func, select

from featurestore.registry import schema as t
from featurestore.registry.audit_window import WINDOW_SECONDS, DecisionWindows
from featurestore.registry.database import Database
from featurestore.times import as_utc, now_utc

GENESIS = "0" * 64
log = logging.getLogger("featurestore.audit")


@dataclass(slots=True)
class AuditRecord:
    project: str
    # apply | credential_create | credential_revoke | training_set | training_set_delete |
    # deny | mask
    action: str
    actor: str
    subject: str = ""  # a model, a view version, a feature reference
    decision: str = ""  # allow | deny | mask, when a policy decided
    rule: str = ""  # the deciding policy
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None
    at: datetime | None = None
    prev_hash: str = ""
    hash: str = ""

    def content(self) -> bytes:
        """What the hash covers: every field but the hash itself."""
        return orjson.dumps(
            {
                "project": self.project,
                "seq": self.seq,
                "at": self.at.isoformat() if self.at else None,
                "action": self.action,
                "actor": self.actor,
                "subject": self.subject,
                "decision": self.decision,
                "rule": self.rule,
                "detail": self.detail,
                "prev": self.prev_hash,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    def digest(self) -> str:
        return hashlib.sha256(self.content()).hexdigest()


def append_audit(conn: Connection, record: AuditRecord) -> AuditRecord:
    """Chain and insert ``record`` (inside the caller's write transaction)."""

    a = t.audit
    last = conn.execute(
        select(a.c.seq, a.c.hash)
        .where(a.c.project == record.project)
        .order_by(a.c.seq.desc())
        .limit(1)
    ).first()
    record.seq = (last.seq if last else 0) + 1
    record.prev_hash = last.hash if last else GENESIS
    record.at = record.at or now_utc()
    record.hash = record.digest()
    conn.execute(
        a.insert().values(
            project=record.project,
            seq=record.seq,
            at=record.at,
            action=record.action,
            actor=record.actor,
            subject=record.subject,
            decision=record.decision,
            rule=record.rule,
            detail=orjson.dumps(record.detail, option=orjson.OPT_SORT_KEYS).decode(),
            prev_hash=record.prev_hash,
            hash=record.hash,
        )
    )
    return record


def _from_row(r: Any) -> AuditRecord:

    return AuditRecord(
        project=r.project,
        action=r.action,
        actor=r.actor,
        subject=r.subject,
        decision=r.decision,
        rule=r.rule,
        detail=orjson.loads(r.detail),
        seq=r.seq,
        at=as_utc(r.at),
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


@dataclass(frozen=True, slots=True)
class VerifyResult:
    records: int
    problems: tuple[str, ...]
    head: str = GENESIS  # the newest record's stored hash (GENESIS: no record)
    first_broken: int | None = None  # the seq of the first record with a problem

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """The audit log (``registry.audit``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def append(self, record: AuditRecord) -> AuditRecord:
        """Chain and insert ``record`` in a transaction of its own."""
        with self.database.write(record.project) as conn:
            return append_audit(conn, record)

    def records(
        self,
        project: str,
        *,
        action: str | None = None,
        subject: str | None = None,
        decision: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Records, newest first; ``subject`` matches as a substring (a model or feature);
        ``offset`` skips the newest (for pages)."""
        a = t.audit
        query = _filtered(select(a), project, action, subject, decision, actor, since)
        query = query.order_by(a.c.seq.desc())
        if limit:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self.database.read() as conn:
            return [_from_row(r) for r in conn.execute(query).all()]

    def count(
        self,
        project: str,
        *,
        action: str | None = None,
        subject: str | None = None,
        decision: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
    ) -> int:
        """How many records ``records`` with the same filters would list."""
        query = _filtered(
            select(func.count()).select_from(t.audit),
            project,
            action,
            subject,
            decision,
            actor,
            since,
        )
        with self.database.read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def choices(self, project: str) -> dict[str, list[str]]:
        """The actions and actors the project's records have (what filters can offer)."""
        a = t.audit
        out = {}
        with self.database.read() as conn:
            for name, column in (("actions", a.c.action), ("actors", a.c.actor)):
                query = select(column).where(a.c.project == project).distinct()
                out[name] = sorted(v for (v,) in conn.execute(query) if v)
        return out

    def verify(self, project: str) -> VerifyResult:
        """Check the chain of ``project``'s records: every problem found, and where."""
        a = t.audit
        with self.database.read() as conn:
            rows = conn.execute(select(a).where(a.c.project == project).order_by(a.c.seq)).all()
        problems: list[str] = []
        prev = GENESIS
        expected = 1
        first_broken = None
        for r in rows:
            record = _from_row(r)
            seq: int = r.seq  # the primary key: a stored record always has one
            if seq != expected:
                problems.append(
                    f"records {expected}..{seq - 1} are missing (deleted?)"
                    if seq > expected
                    else f"record {seq} appears twice"
                )
            if record.prev_hash != prev:
                problems.append(f"record {seq} does not follow the record before it")
            if record.digest() != record.hash:
                problems.append(f"record {seq} was changed after it was written")
            if problems and first_broken is None:
                first_broken = seq
            prev = record.hash
            expected = seq + 1
        return VerifyResult(len(rows), tuple(problems), prev, first_broken)


def _filtered(
    query: Select[Any],
    project: str,
    action: str | None,
    subject: str | None,
    decision: str | None,
    actor: str | None,
    since: datetime | None,
) -> Select[Any]:
    a = t.audit
    query = query.where(a.c.project == project)
    if action:
        query = query.where(a.c.action == action)
    if subject:
        query = query.where(a.c.subject.contains(subject, autoescape=True))
    if decision:
        query = query.where(a.c.decision == decision)
    if actor:
        query = query.where(a.c.actor == actor)
    if since is not None:
        query = query.where(a.c.at >= since)
    return query


class AuditQueue:
    """Appends records from a background thread, so that a lookup never waits on the
    registry. A failed append (e.g. a read-only registry role) is logged, not raised:
    the refusal it records has already been enforced.

    Online decisions (``detail["at"] == "online"``) are coalesced (``DecisionWindows``):
    one record per model, key, rule and window of ``window_seconds``, written when the
    window closes or on ``flush``."""

    def __init__(
        self,
        log: AuditLog,
        project: str,
        actor: str,
        *,
        window_seconds: float = WINDOW_SECONDS,
        tick_seconds: float = 1.0,
    ) -> None:
        self.log = log
        self.project = project
        self.actor = actor
        self.windows = DecisionWindows(window_seconds)
        self.tick_seconds = tick_seconds
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Taking tallies out of the windows and queueing their records is one step, so a
        # flush never misses a record the writer thread is about to queue.
        self._moving = threading.Lock()
        self.failures = 0

    def put(self, fields: dict[str, Any]) -> None:
        if fields.get("detail", {}).get("at") == "online":
            self.windows.add(fields)  # the request thread's whole cost: a dict update
        else:
            self._queue.put(self._record(fields))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="featurestore-audit", daemon=True
                    )
                    self._thread.start()

    def flush(self) -> None:
        """Write every open window's record, and wait until every queued record is
        written (or has failed)."""
        with self._moving:
            for fields in self.windows.drain():
                self._queue.put(self._record(fields))
        self._queue.join()

    def _record(self, fields: dict[str, Any]) -> AuditRecord:
        actor = fields.get("detail", {}).get("key") or self.actor
        return AuditRecord(project=self.project, actor=actor, **fields)

    def _run(self) -> None:
        while True:
            with self._moving:
                for fields in self.windows.due():
                    self._queue.put(self._record(fields))
            try:
                record = self._queue.get(timeout=self.tick_seconds)
            except queue.Empty:
                continue
            try:
                if record is not None:
                    self.log.append(record)
            except Exception as exc:
                self.failures += 1
                log.warning("could not append to the audit log: %s (%s)", exc, record)
            finally:
                self._queue.task_done()
