"""``featurestore serve --workers 2``: a socket per worker, the kernel spreading the
connections, graceful stop, replaced workers, refused ports (real processes, real Redis)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from featurestore import FeatureStore
from featurestore.devservices import free_port
from featurestore.serving.workers import Slot, Supervisor, reuseport_supported
from tests.helpers import online_repo
from tests.test_online_store import user_stats
from tests.test_serving import Server, start_server, stop_server

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not reuseport_supported(), reason="SO_REUSEPORT workers: Linux only"),
]

ROW = {"user_id": 1, "merchant_id": "m1"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Path:
    path = online_repo(tmp_path_factory.mktemp("workers") / "repo", services.redis_url, "workers")
    with FeatureStore(path) as store:
        store.apply()
        now = datetime.now(UTC)
        store.write_online("user_stats", user_stats([1], [now - timedelta(minutes=1)], [10.0]))
    return path


@pytest.fixture
def served(repo: Path) -> Iterator[Server]:
    server = start_server(repo, "--workers", "2")
    yield server
    stop_server(server)


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def sockets_on_port(server: Server, status: str) -> dict[int, set[str]]:
    """pid -> the sockets ('socket:[inode]') in ``status`` on the server's port, per process."""
    port = port_of(server)
    found: dict[int, set[str]] = {}
    parent = psutil.Process(server.proc.pid)
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            for conn in proc.net_connections("tcp"):
                if conn.status == status and conn.laddr.port == port:
                    inode = os.readlink(f"/proc/{proc.pid}/fd/{conn.fd}")
                    found.setdefault(proc.pid, set()).add(inode)
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return found


def listening_workers(server: Server, n: int = 2, seconds: float = 30) -> dict[int, set[str]]:
    """The processes listening on the server's port, once there are ``n`` of them."""
    deadline = time.monotonic() + seconds
    while True:
        listening = sockets_on_port(server, psutil.CONN_LISTEN)
        if len(listening) == n or time.monotonic() > deadline:
            return listening
        time.sleep(0.1)


def lookup(conn: http.client.HTTPConnection, key: str | None) -> dict[str, Any]:
    conn.request(
        "POST",
        "/v1/features",
        body=orjson.dumps({"model": "fraud_model", "entities": [ROW]}),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, body
    return orjson.loads(body)


def test_each_worker_listens_on_its_own_socket_and_serves_its_share(served: Server) -> None:
    listening = listening_workers(served)
    # Two worker processes, each with its own listening socket (not one shared by all),
    # and not the parent: it only holds the port.
    assert len(listening) == 2, listening
    assert served.proc.pid not in listening
    (a,), (b,) = listening.values()
    assert a != b
    # 16 connections, each answered: the kernel spreads them over both workers (all on one
    # of two by chance: 2 in 2**16). Measured on uvicorn's shared socket: often all on one.
    connections = [http.client.HTTPConnection("127.0.0.1", port_of(served)) for _ in range(16)]
    try:
        for conn in connections:
            answer = lookup(conn, served.key)
            names = answer["metadata"]["feature_names"]
            assert answer["results"][names.index("avg_amount")]["values"] == [10.0]
        established = sockets_on_port(served, psutil.CONN_ESTABLISHED)
        per_worker = {pid: len(established.get(pid, ())) for pid in listening}
        assert sum(per_worker.values()) == 16, per_worker
        assert all(n > 0 for n in per_worker.values()), per_worker
    finally:
        for conn in connections:
            conn.close()


def test_sigterm_lets_a_request_in_flight_finish_then_stops_every_process(repo: Path) -> None:
    server = start_server(repo, "--workers", "2")
    workers = list(listening_workers(server))
    assert len(workers) == 2
    body = orjson.dumps({"model": "fraud_model", "entities": [ROW]})
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=20) as sock:
        sock.sendall(
            b"POST /v1/features HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
            % (server.key.encode(), len(body), body[:10])  # type: ignore[union-attr]
        )
        time.sleep(1)  # the worker has the head: the request is in flight
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    assert b"connection: close" in head.lower()
    assert orjson.loads(payload)["entities"] == {"user_id": [1], "merchant_id": ["m1"]}
    assert server.proc.wait(30) == 0
    for pid in workers:
        assert not psutil.pid_exists(pid)
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port_of(server)), timeout=2).close()


def test_a_killed_worker_is_replaced(repo: Path) -> None:
    server = start_server(repo, "--workers", "2")
    try:
        before = listening_workers(server)
        # Lookups over 16 connections (both workers), counted in /metrics by every worker.
        connections = [http.client.HTTPConnection("127.0.0.1", port_of(server)) for _ in range(16)]
        for conn in connections:
            lookup(conn, server.key)
            conn.close()
        assert until_lookups(server, 16) >= 16
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        after = before
        while time.monotonic() < deadline and (victim in after or len(after) != 2):
            time.sleep(0.1)
            after = sockets_on_port(server, psutil.CONN_LISTEN)
        assert victim not in after
        assert len(after) == 2, after
        # The replacement serves: enough connections that some reach it.
        connections = [http.client.HTTPConnection("127.0.0.1", port_of(server)) for _ in range(16)]
        try:
            for conn in connections:
                lookup(conn, server.key)
            established = sockets_on_port(server, psutil.CONN_ESTABLISHED)
            (new,) = set(after) - set(before)
            assert established.get(new), established
        finally:
            for conn in connections:
                conn.close()
        # The dead worker's counts stay in /metrics, with the new worker's.
        assert until_lookups(server, 32) >= 32
    finally:
        stop_server(server)
    log = server.proc.stdout.read().decode()  # type: ignore[union-attr]
    assert f"[{victim}] exited unexpectedly (killed by SIGKILL)" in log, log


def until_lookups(server: Server, n: int, seconds: float = 15) -> float:
    """featurestore_lookups_total of the server, read until it reaches ``n`` (workers move
    their counts into the shared metrics every --refresh-seconds)."""
    deadline = time.monotonic() + seconds
    while True:
        text = server.get("/metrics").text
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("featurestore_lookups_total{")
        )
        if total >= n or time.monotonic() > deadline:
            return total
        time.sleep(0.1)


def serve(repo: Path, port: int, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo)),
            *("--port", str(port), "--workers", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


def test_a_taken_port_is_refused_even_by_another_server_of_ours(repo: Path, served: Server) -> None:
    # A second server would be allowed to share the port with SO_REUSEPORT: it must not.
    other = serve(repo, port_of(served))
    out = other.communicate(timeout=60)[0].decode()
    assert other.returncode == 1, out
    assert f"Cannot listen on 127.0.0.1:{port_of(served)}: the address is in use" in out
    assert "Traceback" not in out
    # And a plain listener elsewhere.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = serve(repo, port)
        out = other.communicate(timeout=60)[0].decode()
    assert other.returncode == 1, out
    assert f"Cannot listen on 127.0.0.1:{port}" in out


def test_workers_that_cannot_start_stop_the_server_instead_of_restarting(repo: Path) -> None:
    # Read by each worker's app factory only: every worker fails the same way.
    proc = serve(repo, free_port(), FEATURESTORE_MAX_BODY_BYTES="lots")
    try:
        out = proc.communicate(timeout=90)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 1, out
    assert "did not start" in out, out


class _Exited:
    """What the supervisor reads of a finished worker process."""

    def __init__(self, pid: int, exitcode: int) -> None:
        self.pid, self.exitcode = pid, exitcode


def test_restart_delay_doubles_while_replacements_die_young_and_resets_after() -> None:
    supervisor = Supervisor({}, "127.0.0.1", 0, 1)
    slot = Slot(1)
    delays = []
    for n in range(8):
        slot.process, slot.started_at = _Exited(n, 1), 100.0
        supervisor.schedule_restart(slot, now=101.0)
        assert slot.restart_at is not None
        delays.append(slot.restart_at - 101.0)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    slot.process, slot.started_at = _Exited(9, -9), 100.0
    supervisor.schedule_restart(slot, now=200.0)  # it ran 100 s: a fresh start
    assert slot.restart_at == 200.5
