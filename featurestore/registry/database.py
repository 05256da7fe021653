"""The registry's database: the engine (SQLite embedded or PostgreSQL), its read and write
transactions (``Database``), and what every log of the registry shares (reading a
project's snapshot, who is acting, canonical JSON, inserted keys).

The registry owns one ``Database`` and hands it to each of its logs (runs, audit,
credentials, drift); they import from here, so the registry package has no import cycle.
"""

from __future__ import annotations

import getpass
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Result,
    create_engine,
    event,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from featurestore.errors import RegistryUnavailable
from featurestore.registry import schema as t
from featurestore.registry.snapshot import Head, RegistrySnapshot, ViewVersion
from featurestore.times import as_utc
from featurestore.urls import redact

LOCK_KEY = 7_305_513_927  # PostgreSQL advisory lock id for registry-wide writes
PROJECT_LOCK_CLASS = 730_551_392  # first key of a project's (int4, int4) advisory lock


class Database:
    """The registry's engine and its transactions; the schema is created on first use."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._schema_ready = False

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent read transaction."""
        self.ensure_schema()
        try:
            with self.engine.connect() as conn:
                if self.engine.dialect.name == "postgresql":
                    # One snapshot for the whole read, as SQLite's read transaction gives:
                    # under READ COMMITTED an apply committing between the statements of
                    # read_snapshot would mix two registry states.
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise self.unavailable(exc) from exc

    @contextmanager
    def write(self, project: str | None = None) -> Iterator[Connection]:
        """One atomic write transaction holding ``project``'s write lock (the registry's
        when None). On PostgreSQL each project has its own advisory lock, so one tenant's
        apply never queues another's; SQLite has one writer at a time whatever the project,
        which is why applies hold the lock only while writing (see ``Registry.apply``)."""
        self.ensure_schema()
        with self._locked(project) as conn:
            yield conn

    @contextmanager
    def _locked(self, project: str | None = None) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(fs_write=True)
                with conn.begin():
                    if self.engine.dialect.name == "postgresql":
                        if project is None:
                            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
                        else:
                            conn.exec_driver_sql(
                                f"SELECT pg_advisory_xact_lock({PROJECT_LOCK_CLASS}, "
                                f"{project_lock_key(project)})"
                            )
                    yield conn
        except OperationalError as exc:
            raise self.unavailable(exc) from exc

    def unavailable(self, exc: Exception) -> RegistryUnavailable:
        """The error for a registry that cannot be reached or used."""
        return RegistryUnavailable(
            f"The registry at {redact(self.url)} cannot be used: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]}. Check the 'registry' setting in featurestore.yaml and "
            "that the database is reachable."
        )

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        path = self.url.split(":///", 1)[1] if self.url.startswith("sqlite:///") else ""
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryUnavailable(
                    f"Cannot create the registry folder for {redact(self.url)}: {exc}. Check the "
                    "'registry' setting in featurestore.yaml."
                ) from exc
        if self._schema_current():
            self._schema_ready = True
            return
        with self._locked() as conn:
            t.metadata.create_all(conn, checkfirst=True)
            row = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema")).first()
            if row is None:
                conn.execute(t.meta.insert().values(key="schema", value=str(t.SCHEMA_VERSION)))
            elif int(row[0]) < t.SCHEMA_VERSION:
                t.migrate(conn, int(row[0]))
                conn.execute(
                    update(t.meta)
                    .where(t.meta.c.key == "schema")
                    .values(value=str(t.SCHEMA_VERSION))
                )
            elif int(row[0]) > t.SCHEMA_VERSION:
                raise RegistryUnavailable(
                    f"The registry at {redact(self.url)} has schema v{row[0]}, newer than this "
                    f"featurestore understands (v{t.SCHEMA_VERSION}). Upgrade featurestore."
                )
        self._schema_ready = True

    def _schema_current(self) -> bool:
        """Whether the tables exist at our schema version, read without any write, so that
        servers and consumers can use a read-only database role."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema")).first()
        except SQLAlchemyError:
            return False  # no tables yet (or unreachable: the write path reports it)
        return row is not None and int(row[0]) == t.SCHEMA_VERSION


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below), so pysqlite must not.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front, so a racing apply waits
            # instead of failing later with "database is locked".
            immediate = conn.get_execution_options().get("fs_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    try:
        # READ COMMITTED whatever the server's default_transaction_isolation: a write
        # reads the registry after taking the advisory lock and must see what the
        # apply it waited for committed (REPEATABLE READ would have the older snapshot).
        return create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    except (SQLAlchemyError, ImportError) as exc:
        raise RegistryUnavailable(
            f"Cannot open registry URL {redact(url)}: {exc}. Use a path or sqlite:///path for "
            "the embedded registry, or postgresql+psycopg://user@host/db with "
            "`pip install 'featurestore[postgres]'`."
        ) from exc


def current_serial(conn: Connection, project: str) -> int:
    """The project's serial: it grows with every apply (0 before the first)."""
    row = conn.execute(select(t.projects.c.serial).where(t.projects.c.name == project)).first()
    return int(row[0]) if row else 0


REREAD_LIMIT = 5_000  # changed objects past which one full read beats reading them by key


def read_snapshot(
    conn: Connection, project: str, *, previous: RegistrySnapshot | None = None
) -> RegistrySnapshot:
    """The project's snapshot. Specs stay JSON text until first read (``Head``), and the
    strings repeated across rows (kinds, statuses) are shared: at 100,000 models this is
    most of the snapshot's memory and time.

    With ``previous`` (an older snapshot of the project), heads and view versions that did
    not change are taken from it rather than read and built again: a reload after an
    apply that touched a few objects reads their specs only. A head is unchanged when its
    revision, status and version are (its row changes only with those); a view version
    when its fingerprint and status are and its view's head is unchanged (its spec is
    rewritten only with a new revision of the view)."""
    serial = current_serial(conn, project)
    shared: dict[Any, Any] = {}
    if previous is not None and previous.project == project:
        found = _read_changes(conn, project, previous, shared)
        if found is not None:
            return RegistrySnapshot(project, serial, *found)
    heads = _read_heads(conn, project, shared)
    versions: dict[str, dict[int, ViewVersion]] = {}
    for vv in _read_versions(conn, project, shared):
        versions.setdefault(vv.view, {})[vv.version] = vv
    return RegistrySnapshot(project, serial, heads, versions)


def rows_of(result: Result[Any]) -> Iterator[Any]:
    """A result's rows, fetched a few thousand at a time: 220,000 rows held at once are
    that many objects for the cyclic collector to scan (stalling lookups while it does)."""
    for part in result.partitions(2_000):
        yield from part


def _head_rows(project: str, *columns: str) -> Any:
    """The project's heads joined to their revisions: the heads' ``columns`` (default: all
    a Head needs) with the revision's spec and version."""
    r, h = t.revisions, t.heads
    picked = [h.c[c] for c in columns or ("kind", "name", "revision", "status", "updated_at")]
    return (
        select(*picked, *([r.c.version] if columns else [r.c.spec, r.c.version]))
        .join(
            r,
            (r.c.project == h.c.project)
            & (r.c.kind == h.c.kind)
            & (r.c.name == h.c.name)
            & (r.c.revision == h.c.revision),
        )
        .where(h.c.project == project)
    )


def _read_heads(
    conn: Connection, project: str, shared: dict[Any, Any], keys: list[Any] | None = None
) -> dict[tuple[str, str], Head]:
    """Heads with their specs: all of them, or those of ``keys`` ((kind, name) pairs)."""
    share = shared.setdefault
    query = _head_rows(project)
    if keys is not None:
        query = query.where(tuple_(t.heads.c.kind, t.heads.c.name).in_(keys))
    heads: dict[tuple[str, str], Head] = {}
    for kind, name, revision, status, updated_at, spec, version in rows_of(conn.execute(query)):
        kind = share(kind, kind)
        heads[(kind, name)] = Head(
            kind, name, revision, share(status, status), spec, version, as_utc(updated_at)
        )
    return heads


def _read_versions(
    conn: Connection, project: str, shared: dict[Any, Any], keys: list[Any] | None = None
) -> list[ViewVersion]:
    """View versions with their specs: all of them, or those of ``keys`` ((view, version))."""
    share = shared.setdefault
    v = t.view_versions
    query = select(
        v.c.view,
        v.c.version,
        v.c.fingerprint,
        v.c.version_spec,
        v.c.spec,
        v.c.status,
        v.c.created_at,
        v.c.retired_at,
    ).where(v.c.project == project)
    if keys is not None:
        query = query.where(tuple_(v.c.view, v.c.version).in_(keys))
    return [
        ViewVersion(
            view,
            version,
            fingerprint,
            vspec,
            spec,
            share(status, status),
            as_utc(created),
            as_utc(retired),
        )
        for view, version, fingerprint, vspec, spec, status, created, retired in rows_of(
            conn.execute(query)
        )
    ]


def _read_changes(
    conn: Connection, project: str, previous: RegistrySnapshot, shared: dict[Any, Any]
) -> tuple[dict[tuple[str, str], Head], dict[str, dict[int, ViewVersion]]] | None:
    """Heads and versions, the unchanged ones from ``previous``; None when so much changed
    that one full read is cheaper."""
    v = t.view_versions
    rows = rows_of(conn.execute(_head_rows(project, "kind", "name", "revision", "status")))
    before = previous.heads
    heads: dict[tuple[str, str], Head] = {}
    stale: list[tuple[str, str]] = []
    for kind, name, revision, status, version in rows:
        key = (kind, name)
        old = before.get(key)
        if (
            old is not None
            and old.revision == revision
            and old.status == status
            and old.version == version
        ):
            heads[key] = old
        else:
            stale.append(key)
    if len(stale) > REREAD_LIMIT:
        return None
    versions: dict[str, dict[int, ViewVersion]] = {}
    stale_versions: list[tuple[str, int]] = []
    stale_views = {name for kind, name in stale if kind == "feature_view"}
    for view, version, fingerprint, status in rows_of(
        conn.execute(
            select(v.c.view, v.c.version, v.c.fingerprint, v.c.status).where(v.c.project == project)
        )
    ):
        old_vv = previous.versions.get(view, {}).get(version)
        if (
            old_vv is not None
            and view not in stale_views
            and (old_vv.fingerprint, old_vv.status) == (fingerprint, status)
        ):
            versions.setdefault(old_vv.view, {})[version] = old_vv
        else:
            stale_versions.append((view, version))
    if len(stale_versions) > REREAD_LIMIT:
        return None
    for i in range(0, len(stale), 500):  # bounded statements (SQLite's variable limit)
        heads.update(_read_heads(conn, project, shared, stale[i : i + 500]))
    for i in range(0, len(stale_versions), 500):
        for vv in _read_versions(conn, project, shared, stale_versions[i : i + 500]):
            versions.setdefault(vv.view, {})[vv.version] = vv
    return heads, versions


def project_lock_key(project: str) -> int:
    """A stable signed 32-bit key per project name (the second key of its advisory lock)."""
    digest = hashlib.blake2b(project.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def inserted_id(result: CursorResult[Any]) -> int:
    """The integer key an INSERT generated (SQLAlchemy types it optional: other statements
    have none)."""
    key = result.inserted_primary_key
    if key is None:
        raise TypeError("inserted_id needs the result of an INSERT")
    return int(key[0])
