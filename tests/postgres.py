"""A throwaway real PostgreSQL server for the test session.

Load it as a plugin (``pytest_plugins = ["tests.postgres"]``) to get:

* ``postgres_server`` (session): the running :class:`PostgresServer`, started on
  first use and stopped, with its data folder deleted, at the end of the run;
* ``postgres_url`` (session): SQLAlchemy URL of a database on that server;
* ``postgres_db_url`` (function): SQLAlchemy URL of a fresh, empty database for
  one test, so tests never see each other's tables.

The server binaries come from ``$FEATURESTORE_PG_BIN``, else the newest
``/usr/lib/postgresql/*/bin`` (Debian/Ubuntu ``postgresql`` package), else
``PATH``. Missing binaries are an error, not a skip: CI installs them.

The cluster trusts local connections and runs without fsync: it is for tests
only and lives in a ``/tmp`` folder owned by the ``postgres`` user when we run
as root (``initdb`` refuses to run as root).
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from featurestore.devservices import free_port

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir", "start_postgres"]

_INSTALL_HINT = (
    "Install the PostgreSQL server: `apt-get install -y postgresql` (Debian/Ubuntu), "
    "or point FEATURESTORE_PG_BIN at a folder holding initdb, pg_ctl and postgres."
)
_SERVER_OPTIONS = (
    # A test server: nothing needs to survive a crash, and it should start fast.
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=50 -c shared_buffers=16MB "
    # Not UTC on purpose: code that assumes the database hands back UTC shows up in tests.
    "-c timezone=Asia/Kolkata"
)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing or the server did not start."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[Path] = []
    if os.environ.get("FEATURESTORE_PG_BIN"):
        candidates.append(Path(os.environ["FEATURESTORE_PG_BIN"]))
    versioned = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versioned, key=lambda p: _version_key(p.parent.name), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    searched = ", ".join(str(c) for c in candidates) or "nothing found"
    raise PostgresUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found (looked in: "
        f"{searched}). {_INSTALL_HINT}"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name)) or (0,)


@dataclass
class PostgresServer:
    """A running throwaway cluster; every database on it is reachable as ``postgres``."""

    bin_dir: Path
    root: Path  # temp folder: data/, the unix socket and the log
    port: int
    user: str = "postgres"
    start_seconds: float = 0.0
    _counter: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) of one database on this server."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE, ALTER DATABASE...)."""
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name unless given) and return its URL."""
        name = name or f"fs_test_{os.getpid()}_{next(self._counter)}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"Use a plain lower-case identifier as database name, not {name!r}")
        # FILE_COPY: a cheap checkpoint (fsync is off) instead of WAL-logging template1.
        self.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server (immediate: nothing in it is kept) and delete its folder."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                _pg_ctl(self.bin_dir, self.data_dir, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _owner() -> pwd.struct_passwd | None:
    """The account the server runs as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable(
            "Running as root, but there is no 'postgres' user to run the server as "
            f"(initdb refuses root). {_INSTALL_HINT}"
        ) from exc


def _run_as_owner(
    args: list[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    owner = _owner()
    command = ["runuser", "-u", owner.pw_name, "--", *args] if owner else args
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and result.returncode != 0:
        raise PostgresUnavailable(
            f"`{' '.join(args)}` failed with exit code {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result


def _pg_ctl(bin_dir: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run_as_owner(
        [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-t", "30", *args], check=False
    )


def start_postgres(*, attempts: int = 3) -> PostgresServer:
    """initdb a cluster in a fresh /tmp folder and start it on a free 127.0.0.1 port."""
    bin_dir = find_bin_dir()
    began = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="featurestore-pg-", dir="/tmp"))
    try:
        owner = _owner()
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chmod(root, 0o700)
        server = PostgresServer(bin_dir, root, port=0)
        initdb = [str(bin_dir / "initdb"), "-D", str(server.data_dir), "-A", "trust"]
        _run_as_owner([*initdb, "-U", server.user, "-E", "UTF8", "--locale=C", "--no-sync"])
        for attempt in range(attempts):
            # The port was free a moment ago; another process may take it first: retry.
            server.port = free_port()
            options = (
                f"-p {server.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories={root} {_SERVER_OPTIONS}"
            )
            logfile = str(server.log_file)
            result = _pg_ctl(bin_dir, server.data_dir, "-l", logfile, "-o", options, "-w", "start")
            if result.returncode == 0:
                break
            log = server.log_file.read_text(errors="replace") if server.log_file.exists() else ""
            if attempt == attempts - 1 or "could not bind" not in log:
                raise PostgresUnavailable(
                    f"PostgreSQL did not start (pg_ctl exit code {result.returncode}):\n"
                    f"{result.stdout}{result.stderr}\nserver log:\n{log[-4000:]}"
                )
        server.start_seconds = time.perf_counter() - began
        return server
    except BaseException:
        if (root / "data" / "postmaster.pid").exists():
            _pg_ctl(bin_dir, root / "data", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
        raise


_started: list[PostgresServer] = []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a free port, shared by the whole run."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    _started.append(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of the session's ``featurestore`` database."""
    return postgres_server.create_database("featurestore")


@pytest.fixture
def postgres_db_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database for one test; dropped afterwards."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for server in _started:
        terminalreporter.write_line(
            f"PostgreSQL test server ({server.bin_dir}): initdb + start took "
            f"{server.start_seconds:.2f}s"
        )
