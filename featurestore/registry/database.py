"""The registry's database: the engine (SQLite embedded or PostgreSQL), and what every
log of the registry shares (reading a project's snapshot, who is acting, canonical JSON).

The logs (runs, audit, credentials, drift) and the registry itself import from here, never
from one another, so the registry package has no import cycle.
"""

from __future__ import annotations

import getpass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.exc import SQLAlchemyError

from featurestore.errors import RegistryUnavailable
from featurestore.registry import schema as t
from featurestore.registry.snapshot import Head, RegistrySnapshot, ViewVersion
from featurestore.times import as_utc
from featurestore.urls import redact


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


def read_snapshot(conn: Connection, project: str) -> RegistrySnapshot:
    row = conn.execute(select(t.projects.c.serial).where(t.projects.c.name == project)).first()
    serial = int(row[0]) if row else 0
    r, h = t.revisions, t.heads
    rows = conn.execute(
        select(h.c.kind, h.c.name, h.c.revision, h.c.status, h.c.updated_at, r.c.spec, r.c.version)
        .join(
            r,
            (r.c.project == h.c.project)
            & (r.c.kind == h.c.kind)
            & (r.c.name == h.c.name)
            & (r.c.revision == h.c.revision),
        )
        .where(h.c.project == project)
    ).all()
    heads = {
        (x.kind, x.name): Head(
            x.kind,
            x.name,
            x.revision,
            x.status,
            orjson.loads(x.spec),
            x.version,
            as_utc(x.updated_at),
        )
        for x in rows
    }
    versions: dict[str, dict[int, ViewVersion]] = {}
    for v in conn.execute(select(t.view_versions).where(t.view_versions.c.project == project)):
        versions.setdefault(v.view, {})[v.version] = ViewVersion(
            v.view,
            v.version,
            v.fingerprint,
            orjson.loads(v.version_spec),
            orjson.loads(v.spec),
            v.status,
            as_utc(v.created_at),
            as_utc(v.retired_at),
        )
    return RegistrySnapshot(project, serial, heads, versions)


def whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
