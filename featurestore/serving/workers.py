"""``featurestore serve --workers N``: N worker processes, each with its own listening socket.

uvicorn's workers share one listening socket, so whichever process wakes first accepts a
whole burst of new connections: measured, one of two workers often took all of a client's
connections while the other idled. Here each worker binds its own socket with
``SO_REUSEPORT``, and the kernel spreads new connections across the workers' sockets by a
hash of each connection's addresses and ports.

The parent (this module's ``Supervisor``):

- refuses a port already in use (a plain bind, without ``SO_REUSEPORT``, must succeed: a
  second server would otherwise join this one's group and share its port silently), then
  holds the port with a bound socket that does not listen (it gets no connections), so
  nothing else can take it while a worker restarts and ``--port 0`` means one port for all;
- starts the workers (multiprocessing "spawn", as uvicorn does); each binds and listens,
  runs ``uvicorn.Server`` with the options a single worker runs with, and tells the parent
  once it serves;
- on SIGTERM or SIGINT sends SIGTERM to every worker, uvicorn's graceful stop (no new
  connections, requests in flight finish), and waits for them; a second SIGINT is passed on
  as SIGINT, which makes uvicorn stop at once;
- replaces a worker that exits on its own, after a delay that doubles (0.5 s up to 30 s)
  while replacements die within 30 s of starting, and logs it;
- stops everything and exits 1 if a worker of the first start cannot bind or start (the same
  failure would repeat), after the worker logged why.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import uvicorn

from featurestore.errors import ServerStartError

logger = logging.getLogger("uvicorn.error")  # uvicorn's log config shows it, as its own
spawn = multiprocessing.get_context("spawn")

BACKLOG = 2048  # uvicorn's default
STARTUP_FAILURE = 3  # uvicorn's exit code for a server that did not start
FIRST_DELAY = 0.5  # seconds before a dead worker's first replacement
MAX_DELAY = 30.0
STEADY_SECONDS = 30.0  # a worker that ran this long resets its slot's delay
POLL_SECONDS = 0.2  # how soon a signal is acted on


def reuseport_supported() -> bool:
    """Linux spreads connections across SO_REUSEPORT listeners; elsewhere it may not."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _in_use(host: str, port: int, exc: OSError) -> ServerStartError:
    if exc.errno == errno.EADDRINUSE:
        why = "the address is in use (another server?)"
    else:
        why = exc.strerror or str(exc)
    return ServerStartError(
        f"Cannot listen on {host}:{port}: {why}. Stop what holds it or choose another --port."
    )


def hold_port(host: str, port: int) -> socket.socket:
    """Check ``host:port`` is free and keep it for the workers: a bound, not listening
    socket with SO_REUSEPORT (no SO_REUSEADDR, so a plain bind elsewhere is refused)."""
    family = _family(host)
    if port != 0:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As uvicorn binds: connections left in TIME_WAIT do not make the port taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise _in_use(host, port, exc) from None
    hold = socket.socket(family, socket.SOCK_STREAM)
    try:
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        hold.bind((host, port))
    except OSError as exc:
        hold.close()
        raise _in_use(host, port, exc) from None
    return hold


def listen_reuseport(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A worker's own listening socket on ``host:port``."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


# -- a worker --------------------------------------------------------------------------


class _ReadyServer(uvicorn.Server):
    """uvicorn's server, telling the supervisor once it has started."""

    def __init__(self, config: uvicorn.Config, ready: Connection) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.send(True)
            self.ready.close()


def _die_with_parent(parent: int) -> None:
    """A worker outliving a killed supervisor would hold the port for ever."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    options: dict[str, Any], host: str, port: int, parent: int, ready: Connection
) -> None:
    _die_with_parent(parent)
    config = uvicorn.Config(**options)  # configures logging, as in a uvicorn worker
    try:
        sock = listen_reuseport(host, port, config.backlog)
    except OSError as exc:
        logger.error(str(_in_use(host, port, exc)))
        sys.exit(STARTUP_FAILURE)
    server = _ReadyServer(config, ready)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


# -- the supervisor --------------------------------------------------------------------


@dataclass
class Slot:
    """One of the N workers, across its replacements."""

    number: int  # 1..N, in the logs
    process: Any = None  # multiprocessing's SpawnProcess
    ready: Connection | None = None  # the parent's end until the worker serves
    serving: bool = False
    started_at: float = 0.0
    quick_deaths: int = 0  # in a row, each within STEADY_SECONDS of starting
    restart_at: float | None = None
    pids: list[int] = field(default_factory=list)  # every process it ran


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class Supervisor:
    def __init__(self, options: dict[str, Any], host: str, port: int, workers: int) -> None:
        self.options = options
        self.host = host
        self.port = port
        self.slots = [Slot(n + 1) for n in range(workers)]
        self.signals: list[int] = []
        self.stopping = False

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit code: 0, or 1 if the start failed."""
        uvicorn.Config(**self.options)  # the log config, for this process's messages
        hold = hold_port(self.host, self.port)
        self.port = hold.getsockname()[1]
        previous = {
            sig: signal.signal(sig, lambda s, _frame: self.signals.append(s))
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for slot in self.slots:
                self.start(slot)
            code = self.supervise()
            self.stop()
            return code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            hold.close()

    def start(self, slot: Slot) -> None:
        ours, theirs = spawn.Pipe(duplex=False)
        slot.process = spawn.Process(
            target=_worker_main,
            args=(self.options, self.host, self.port, os.getpid(), theirs),
            name=f"featurestore-worker-{slot.number}",
        )
        slot.process.start()
        theirs.close()
        slot.ready, slot.serving = ours, False
        slot.started_at, slot.restart_at = time.monotonic(), None
        slot.pids.append(slot.process.pid)

    def supervise(self) -> int:
        first_start = True  # until every worker of the first start serves
        while True:
            if self.take_signals():
                return 0
            waiting = [s.ready for s in self.slots if s.ready is not None]
            alive = [s.process.sentinel for s in self.slots if s.process is not None]
            wait([*waiting, *alive], timeout=POLL_SECONDS)
            now = time.monotonic()
            for slot in self.slots:
                self.check_ready(slot)
                process = slot.process
                if process is not None and not process.is_alive():
                    process.join()
                    if first_start and not slot.serving:
                        logger.error(
                            "featurestore serve: worker %d [%d] did not start (%s); stopping.",
                            slot.number,
                            process.pid,
                            _how(process.exitcode),
                        )
                        return 1
                    self.schedule_restart(slot, now)
                if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                    self.start(slot)
            if first_start and all(s.serving for s in self.slots):
                first_start = False

    def check_ready(self, slot: Slot) -> None:
        if slot.ready is None or not slot.ready.poll():
            return
        with contextlib.suppress(EOFError):  # EOF: it exited before serving (the sentinel tells)
            slot.serving = bool(slot.ready.recv())
        slot.ready.close()
        slot.ready = None

    def schedule_restart(self, slot: Slot, now: float) -> None:
        process, slot.process = slot.process, None
        if slot.ready is not None:
            slot.ready.close()
            slot.ready = None
        if now - slot.started_at < STEADY_SECONDS:
            slot.quick_deaths += 1
        else:
            slot.quick_deaths = 0
        delay = min(FIRST_DELAY * 2 ** max(slot.quick_deaths - 1, 0), MAX_DELAY)
        slot.restart_at = now + delay
        logger.warning(
            "featurestore serve: worker %d [%d] exited unexpectedly (%s); "
            "starting another in %.1f s.",
            slot.number,
            process.pid,
            _how(process.exitcode),
            delay,
        )

    def take_signals(self) -> bool:
        """True once asked to stop: the workers have been sent SIGTERM."""
        signals, self.signals = self.signals, []
        if signals and not self.stopping:
            self.stopping = True
            self.send(signal.SIGTERM)
            signals = signals[1:]
        if signal.SIGINT in signals:  # again: stop now
            self.send(signal.SIGINT)
        return self.stopping

    def send(self, sig: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, sig)

    def stop(self) -> None:
        """Stop every worker gracefully (SIGTERM) and wait for them."""
        if not self.stopping:
            self.stopping = True
            self.send(signal.SIGTERM)
        while True:
            alive = [
                s.process for s in self.slots if s.process is not None and s.process.is_alive()
            ]
            if not alive:
                break
            wait([p.sentinel for p in alive], timeout=POLL_SECONDS)
            self.take_signals()
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join()
            if slot.ready is not None:
                slot.ready.close()


def run_workers(options: dict[str, Any], host: str, port: int, workers: int) -> int:
    """Serve with ``workers`` processes, one SO_REUSEPORT socket each; the exit code.
    ``options``: uvicorn.Config's keyword arguments, as for one worker."""
    return Supervisor(options, host, port, workers).run()
