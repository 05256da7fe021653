"""The Redis Cluster side of the dev services (`featurestore dev up --redis-cluster N`).

``devservices`` starts and stops the ``redis-server`` processes; this module knows the cluster:
which ports its nodes take, what is recorded about it under the state dir, how ``redis-cli
--cluster create`` joins the nodes, and when the cluster is ready (``cluster_state:ok`` on every
node, every hash slot served, every replica's link to its primary up).

Files under ``state_dir/redis-cluster/``: ``cluster.json`` (the layout: host, primary and replica
ports), ``node-P.pid`` / ``node-P.log`` per node (as for the standalone services), ``node-P/`` (the
node's working dir, holding its ``nodes-P.conf``) and ``create.log`` (redis-cli's output).
Nothing is persisted (``--save ''``, no AOF): ``down`` forgets the cluster and its data.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from featurestore.devprocess import (
    CLUSTER_BUS_OFFSET,
    LOG_MARKER,
    ServiceStatus,
    find_executable,
    fmt_addr,
    log_tail,
    owned,
    read_pid,
)
from featurestore.errors import BinaryNotFoundError, DevServiceError

__all__ = [
    "CLUSTER_DIR",
    "REDIS_CLI_BIN",
    "ClusterLayout",
    "annotate",
    "check_mode",
    "create",
    "forget",
    "form",
    "formed",
    "load",
    "node_args",
    "node_dir",
    "node_key",
    "plan",
    "resolve_cli",
    "save",
    "summary",
    "wait_ready",
]

CLUSTER_DIR = "redis-cluster"
# Name on PATH or a path; `up(redis_cli_bin=...)` overrides it per call.
REDIS_CLI_BIN = "redis-cli"
SLOTS = 16384
MAX_PRIMARIES = 16
MAX_REPLICAS = 2
NODE_TIMEOUT_MS = 2000


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    """Where the nodes of a dev cluster listen: primaries first, then their replicas."""

    host: str
    ports: tuple[int, ...]
    replica_ports: tuple[int, ...]

    @property
    def all_ports(self) -> tuple[int, ...]:
        return self.ports + self.replica_ports

    @property
    def bind_host(self) -> str:
        return "127.0.0.1" if self.host == "localhost" else self.host

    @property
    def replicas_per_primary(self) -> int:
        return len(self.replica_ports) // len(self.ports)

    def describe(self) -> str:
        ports = f"{self.ports[0]}-{self.all_ports[-1]}"
        return (
            f"{len(self.ports)} primaries and {len(self.replica_ports)} replicas on "
            f"{self.host} ports {ports}"
        )


def plan(host: str, port: int, primaries: int, replicas: int) -> ClusterLayout:
    """The layout for ``primaries`` primaries from ``port`` on, then ``replicas`` each."""
    if not 3 <= primaries <= MAX_PRIMARIES:
        raise DevServiceError(
            f"--redis-cluster {primaries}: a Redis Cluster needs 3 to {MAX_PRIMARIES} primaries; "
            "use 3 for development."
        )
    if not 0 <= replicas <= MAX_REPLICAS:
        raise DevServiceError(
            f"--replicas {replicas}: choose 0 to {MAX_REPLICAS} replicas per primary (1 lets a "
            "replica take over when a primary stops)."
        )
    last = port + primaries * (1 + replicas) - 1
    if last + CLUSTER_BUS_OFFSET > 65535:
        raise DevServiceError(
            f"The dev cluster would use ports {port}-{last} and cluster-bus ports up to "
            f"{last + CLUSTER_BUS_OFFSET}, past 65535: set the port in `online_store.redis_url` "
            f"to at most {65535 - CLUSTER_BUS_OFFSET - (last - port)}."
        )
    ports = tuple(range(port, port + primaries))
    return ClusterLayout(host, ports, tuple(range(port + primaries, last + 1)))


def node_key(port: int) -> str:
    """The stem of a node's pid and log files, relative to the state dir."""
    return f"{CLUSTER_DIR}/node-{port}"


def node_dir(state_dir: Path, port: int) -> Path:
    return state_dir / CLUSTER_DIR / f"node-{port}"


def node_args(port: int, password: str | None) -> list[str]:
    """The ``redis-server`` arguments that make a node of the cluster (run in its node dir)."""
    args = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
    args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
    # Replicas sync at once: the default waits 5 s for more replicas to share one transfer.
    args += ["--repl-diskless-sync-delay", "0"]
    return args + (["--masterauth", password] if password else [])


def load(state_dir: Path) -> ClusterLayout | None:
    """The recorded layout, or None when no cluster was started from this state dir."""
    try:
        data = json.loads((state_dir / CLUSTER_DIR / "cluster.json").read_text())
        ports, replicas = tuple(map(int, data["ports"])), tuple(map(int, data["replica_ports"]))
        return ClusterLayout(str(data["host"]), ports, replicas) if ports else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(state_dir: Path, layout: ClusterLayout) -> None:
    for port in layout.all_ports:
        node_dir(state_dir, port).mkdir(parents=True, exist_ok=True)
    data = {"host": layout.host, "ports": layout.ports, "replica_ports": layout.replica_ports}
    path = state_dir / CLUSTER_DIR / "cluster.json"
    path.with_suffix(".tmp").write_text(json.dumps(data) + "\n")
    path.with_suffix(".tmp").replace(path)


def forget(state_dir: Path) -> None:
    """Drop the layout and every node's cluster config (logs stay): the next `up` starts anew."""
    root = state_dir / CLUSTER_DIR
    for path in root.glob("node-*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    (root / "cluster.json").unlink(missing_ok=True)


def resolve_cli(override: str | None) -> str:
    wanted = override or REDIS_CLI_BIN
    found = find_executable(wanted)
    if found:
        return found
    where = "at that path" if os.sep in wanted else "on PATH"
    raise BinaryNotFoundError(
        f"Cannot create the dev Redis Cluster: `{wanted}` was not found {where}. Install it "
        "with `apt-get install redis-tools` (Debian/Ubuntu; macOS: `brew install redis`), or "
        "start without --redis-cluster for a standalone Redis."
    )


def check_mode(state_dir: Path, layout: ClusterLayout | None) -> None:
    """Refuse to mix a standalone dev Redis and a dev cluster from one state dir."""
    recorded = load(state_dir)
    alive = recorded is not None and any(
        owned(p.pid, p.binary)
        for port in recorded.all_ports
        if (p := read_pid(state_dir / f"{node_key(port)}.pid"))
    )
    if recorded is not None and not alive:
        forget(state_dir)  # nothing of it runs: start the next one afresh
    if layout is None:
        if recorded is not None and alive:
            raise DevServiceError(
                f"A dev Redis Cluster ({recorded.describe()}) runs from {state_dir}. Keep it "
                f"with `featurestore dev up --redis-cluster {len(recorded.ports)}`, or run "
                "`featurestore dev down` first to start a standalone Redis."
            )
        return
    standalone = read_pid(state_dir / "redis.pid")
    if standalone is not None and owned(standalone.pid, standalone.binary):
        raise DevServiceError(
            f"The standalone dev Redis (pid {standalone.pid}) runs on "
            f"{fmt_addr(standalone.host, standalone.port)}. Run `featurestore dev down` first, "
            "then `featurestore dev up --redis-cluster N`."
        )
    same = recorded is not None and (recorded.bind_host, recorded.all_ports) == (
        layout.bind_host,
        layout.all_ports,
    )
    if recorded is not None and alive and not same:
        raise DevServiceError(
            f"A dev Redis Cluster ({recorded.describe()}) already runs from {state_dir}, but "
            f"this asks for {layout.describe()}. Run `featurestore dev down`, then `featurestore "
            "dev up` again."
        )


def form(
    layout: ClusterLayout,
    password: str | None,
    cli: str,
    results: list[ServiceStatus],
    state_dir: Path,
    deadline: float,
    timeout: float,
) -> list[ServiceStatus]:
    """Join fresh nodes into a cluster (or find them joined), wait until it serves every slot."""
    begin = time.monotonic()
    note = "already formed"
    if not formed(layout, password, deadline):
        create(layout, password, cli, state_dir, deadline)
        note = "created"
    wait_ready(layout, password, state_dir, deadline, timeout)
    count = len(layout.all_ports)
    nodes = [
        annotate(row, layout.bind_host, port, password)
        for row, port in zip(results[:count], layout.all_ports, strict=True)
    ]
    head = summary(layout, nodes, password, state_dir)
    took = f"{note} and ready in {time.monotonic() - begin:.2f} s; "
    return [replace(head, detail=took + head.detail), *nodes, *results[count:]]


def formed(layout: ClusterLayout, password: str | None, deadline: float | None = None) -> bool:
    """False if every node is still a fresh, empty cluster of one; True if each knows all.
    A node that was just restarted rejoins by gossip, so a partly formed cluster is given
    until ``deadline`` to converge before it is an error."""
    while True:
        known = [_known_nodes(layout, port, password) for port in layout.all_ports]
        if all(k == (1, "0") for k in known):
            return False
        if all(n == len(layout.all_ports) for n, _ in known):
            return True
        if deadline is None or time.monotonic() >= deadline:
            raise DevServiceError(
                f"The dev Redis Cluster ({layout.describe()}) is only partly formed (nodes know "
                f"{[n for n, _ in known]} nodes each). Run `featurestore dev down`, then "
                "`featurestore dev up --redis-cluster N` again."
            )
        time.sleep(0.1)


def _known_nodes(layout: ClusterLayout, port: int, password: str | None) -> tuple[int, Any]:
    """What one node's CLUSTER INFO says: how many nodes it knows, how many slots assigned."""
    try:
        with _session(layout.bind_host, port, password) as query:
            info = _fields(query("CLUSTER", "INFO"))
    except Exception as exc:  # e.g. a node started with another password
        raise DevServiceError(
            f"The dev Redis Cluster node {fmt_addr(layout.host, port)} did not answer "
            f"CLUSTER INFO ({type(exc).__name__}: {exc}). Check the password in "
            "`online_store.redis_url`, or run `featurestore dev down` and `featurestore dev "
            "up` again."
        ) from exc
    return int(info.get("cluster_known_nodes", 1)), info.get("cluster_slots_assigned")


def create(
    layout: ClusterLayout, password: str | None, cli: str, state_dir: Path, deadline: float
) -> None:
    """Join the nodes with ``redis-cli --cluster create`` (slots spread evenly over primaries)."""
    log_path = state_dir / CLUSTER_DIR / "create.log"
    addrs = [fmt_addr(layout.bind_host, p) for p in layout.all_ports]
    cmd = [cli, "--cluster", "create", *addrs]
    cmd += ["--cluster-replicas", str(layout.replicas_per_primary), "--cluster-yes"]
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if password:
        env["REDISCLI_AUTH"] = password  # not on the command line, where `ps` would show it
    with log_path.open("ab") as log:
        log.write(
            f"\n{LOG_MARKER} {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n".encode()
        )
        log.flush()
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired:
            code = None
        else:
            code = done.returncode
    if code != 0:
        why = "did not finish in time" if code is None else f"exited with code {code}"
        raise DevServiceError(
            f"`redis-cli --cluster create` {why} for the dev cluster ({layout.describe()}). "
            f"Last lines of {log_path}:\n{log_tail(log_path)}\nRun `featurestore dev down`, "
            "then `featurestore dev up` again."
        )


def wait_ready(
    layout: ClusterLayout, password: str | None, state_dir: Path, deadline: float, timeout: float
) -> None:
    """Poll until every node says cluster_state:ok, serves all slots and (replicas) is synced."""
    while True:
        problem = _first_problem(layout, password)
        if problem is None:
            return
        if time.monotonic() >= deadline:
            root = state_dir / CLUSTER_DIR
            raise DevServiceError(
                f"The dev Redis Cluster ({layout.describe()}) was not ready within {timeout:g} s: "
                f"{problem}. Read {root / 'create.log'} and the node logs {root}/node-*.log, "
                "then run `featurestore dev down` and `featurestore dev up` again, or allow a "
                f"longer timeout. Last lines of {root / 'create.log'}:\n"
                f"{log_tail(root / 'create.log')}"
            )
        time.sleep(0.05)


def _first_problem(layout: ClusterLayout, password: str | None) -> str | None:
    for port in layout.all_ports:
        where = fmt_addr(layout.bind_host, port)
        try:
            with _session(layout.bind_host, port, password) as query:
                state = _fields(query("CLUSTER", "INFO")).get("cluster_state")
                if state != "ok":
                    return f"{where} reports cluster_state:{state}"
                missing = SLOTS - _covered(query("CLUSTER", "SLOTS"))
                if missing:
                    return f"{where} sees {missing} of {SLOTS} hash slots unserved"
                if port in layout.replica_ports:
                    link = _fields(query("INFO", "replication")).get("master_link_status")
                    if link not in (None, "up"):  # None: it is a primary now (failover)
                        return f"replica {where} has master_link_status:{link}"
        except DevServiceError:
            raise
        except Exception as exc:
            return f"{where} did not answer ({type(exc).__name__}: {exc})"
    return None


def _covered(slots_reply: list[Any]) -> int:
    """How many distinct slots a CLUSTER SLOTS reply assigns to some node."""
    served: set[int] = set()
    for entry in slots_reply:
        served.update(range(int(entry[0]), int(entry[1]) + 1))
    return len(served)


def annotate(node: ServiceStatus, host: str, port: int, password: str | None) -> ServiceStatus:
    """Add the node's role, its slot count and its primary (replicas) to a running node's row."""
    try:
        with _session(host, port, password) as query:
            lines = _text(query("CLUSTER", "NODES")).splitlines()
    except Exception as exc:
        return replace(node, detail=f"{node.detail}; CLUSTER NODES failed: {exc}")
    rows = [line.split() for line in lines if line.strip()]
    me = next((r for r in rows if "myself" in r[2].split(",")), None)
    if me is None:
        return node
    addr_of = {r[0]: r[1].split("@")[0] for r in rows}
    if "master" in me[2].split(","):
        slots = _count_slots(me[8:])
        detail = f"primary, {slots} slots; {node.detail}"
        return replace(node, role="primary", slots=slots, detail=detail)
    primary = addr_of.get(me[3], me[3])
    return replace(node, role="replica", slots=0, detail=f"replica of {primary}; " + node.detail)


def summary(
    layout: ClusterLayout, nodes: list[ServiceStatus], password: str | None, state_dir: Path
) -> ServiceStatus:
    """One row for the cluster as a whole: running only when every node is ready."""
    address = fmt_addr(layout.host, layout.ports[0])
    log_path = state_dir / CLUSTER_DIR / "create.log"
    up = [n for n in nodes if n.state == "running"]
    if not up:
        return ServiceStatus("cluster", address, "stopped", None, log_path, "no node runs")
    problem = _first_problem(layout, password) if len(up) == len(nodes) else None
    primaries = sum(1 for n in up if n.role == "primary")
    counts = f"{primaries} primaries and {len(up) - primaries} replicas up of {len(nodes)} nodes"
    if len(up) < len(nodes):
        detail = f"{counts}; restart the stopped ones with `featurestore dev up`"
        return ServiceStatus("cluster", address, "unhealthy", None, log_path, detail)
    if problem:
        return ServiceStatus(
            "cluster", address, "unhealthy", None, log_path, f"{problem}; {counts}"
        )
    detail = f"cluster_state:ok, all {SLOTS} slots served; {counts}"
    return ServiceStatus("cluster", address, "running", None, log_path, detail)


def _count_slots(fields: list[str]) -> int:
    count = 0
    for field in fields:
        if field.startswith("["):  # a slot being migrated or imported, not served here
            continue
        start, _, end = field.partition("-")
        count += int(end or start) - int(start) + 1
    return count


@contextlib.contextmanager
def _session(host: str, port: int, password: str | None) -> Iterator[Callable[..., Any]]:
    """One connection to a node; the callable sends a command and returns its raw reply."""
    from redis.backoff import NoBackoff
    from redis.connection import Connection
    from redis.retry import Retry

    # Raw replies (no client-side parsing of CLUSTER SLOTS etc.), no retries: a node that
    # does not answer is reported at once and polled again.
    conn = Connection(
        host=host,
        port=port,
        password=password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )

    def query(*args: str) -> Any:
        conn.send_command(*args)
        return conn.read_response()

    try:
        yield query
    finally:
        conn.disconnect()


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _fields(reply: Any) -> dict[str, str]:
    """``key:value`` lines of CLUSTER INFO / INFO as a dict."""
    out = {}
    for line in _text(reply).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            out[key] = value
    return out
