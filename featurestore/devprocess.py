"""Process and port plumbing shared by the dev services (`featurestore dev`).

Starting detached servers, recognising our own processes from a pid file, stopping them, and
checking ports. Nothing here knows which server it runs; ``devservices`` and ``devcluster`` do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from featurestore.errors import DevServiceError

__all__ = [
    "CLUSTER_BUS_OFFSET",
    "LOCAL_HOSTS",
    "PidFile",
    "ServiceStatus",
    "describe",
    "find_executable",
    "fmt_addr",
    "free_port",
    "free_ports",
    "listening",
    "locked",
    "log_tail",
    "owned",
    "port_taken",
    "read_pid",
    "spawn",
    "terminate",
]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# A Redis Cluster node also listens on its port + 10000 for the cluster bus.
CLUSTER_BUS_OFFSET = 10000
LOG_MARKER = "=== featurestore dev: starting"
# Popen objects of servers this process started: kept so they are reaped (no zombies) and never
# garbage-collected while running, which would emit a ResourceWarning.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What one dev service (or Redis Cluster node) is doing, for the CLI to print.

    ``state``: "running" (our process answers its protocol), "unhealthy" (our process is alive
    but does not answer), "stopped", or "external" (the address is served by a process we did not
    start, or is not local). ``pid`` is set only for our live processes. ``role`` ("primary" or
    "replica") and ``slots`` (hash slots served) are set for Redis Cluster nodes only.
    """

    name: str
    address: str
    state: str  # "running" | "stopped" | "unhealthy" | "external"
    pid: int | None
    log_path: Path
    detail: str
    role: str | None = None
    slots: int | None = None


@dataclass(frozen=True, slots=True)
class PidFile:
    pid: int
    host: str
    port: int
    binary: str


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago (tests start servers on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, *, cluster_bus: bool = False, attempts: int = 200) -> list[int]:
    """``count`` consecutive ports free on 127.0.0.1 a moment ago (and port + 10000 with
    ``cluster_bus``, for Redis Cluster nodes). Picked below the kernel's ephemeral range, where
    outgoing connections do not take them meanwhile."""
    low = 15000
    high = _ephemeral_low() - count - (CLUSTER_BUS_OFFSET if cluster_bus else 0)
    for _ in range(attempts):
        first = random.randint(low, max(low, high))
        ports = list(range(first, first + count))
        wanted = ports + ([p + CLUSTER_BUS_OFFSET for p in ports] if cluster_bus else [])
        if not any(port_taken("127.0.0.1", p) for p in wanted):
            return ports
    raise DevServiceError(f"Found no {count} consecutive free ports on 127.0.0.1.")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def find_executable(wanted: str) -> str | None:
    """Absolute path of an executable named on PATH or given as a path, or None."""
    found = wanted if os.sep in wanted else shutil.which(wanted)
    if found and os.path.isfile(found) and os.access(found, os.X_OK):
        return os.path.abspath(found)
    return None


def spawn(
    cmd: list[str],
    *,
    pid_file: PidFile,
    pid_path: Path,
    log_path: Path,
    cwd: Path,
    env: dict[str, str],
    secret: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start one server detached (own session) with its output appended to its log, and record
    its pid file (``pid_file.pid`` is replaced by the new process's pid)."""
    shown = shlex.join(c if secret is None or c != secret else "***" for c in cmd)
    with log_path.open("ab") as log:
        log.write(f"\n{LOG_MARKER} {time.strftime('%Y-%m-%d %H:%M:%S')}: {shown}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    tmp = pid_path.with_suffix(".pid.tmp")
    tmp.write_text(f"{proc.pid}\n{pid_file.host}\n{pid_file.port}\n{pid_file.binary}\n")
    tmp.replace(pid_path)
    return proc


def read_pid(path: Path) -> PidFile | None:
    """Parse a pid file; an unreadable or garbled one counts as absent (it is overwritten)."""
    try:
        pid, host, port, binary = path.read_text().splitlines()[:4]
        return PidFile(int(pid), host, int(port), binary)
    except (OSError, ValueError):
        return None


def owned(pid: int, binary: str | None) -> bool | None:
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


def terminate(pid: int, binary: str | None, timeout: float) -> str:
    """SIGTERM the server's process group, wait up to ``timeout``, then SIGKILL it."""
    begin = time.monotonic()
    _signal(pid, signal.SIGTERM)
    while time.monotonic() - begin < timeout:
        if owned(pid, binary) is None:
            return f"stopped pid {pid} with SIGTERM in {time.monotonic() - begin:.2f} s"
        time.sleep(0.01)
    _signal(pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + 5.0
    while owned(pid, binary) is not None and time.monotonic() < kill_deadline:
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


def port_taken(host: str, port: int) -> bool:
    """True if something listens on (or holds) the port; TIME_WAIT leftovers do not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def listening(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Serialise `up`/`down` calls on one state dir (across processes)."""
    with (state_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines the current run wrote (from the newest start header on)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65536))
            text = handle.read().decode(errors="replace")
    except OSError:
        return "  | (no log)"
    text = text[text.rfind(LOG_MARKER) :] if LOG_MARKER in text else text
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail) or "  | (log is empty)"


def describe(exc: BaseException) -> str:
    text, kind = str(exc), type(exc).__name__
    return text if text.startswith(kind) else f"{kind}: {text}" if text else kind
