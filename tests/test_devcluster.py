"""The dev Redis Cluster (`featurestore dev up --redis-cluster N`) against real redis-server and
redis-cli processes (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurestore.cli import app
from featurestore.devprocess import ServiceStatus
from featurestore.devservices import down, free_port, free_ports, status, up
from featurestore.errors import BinaryNotFoundError, DevServiceError, PortInUseError
from tests.conftest import RedisCluster
from tests.helpers import accepting, process_gone

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="needs redis-server and redis-cli (apt-get install redis-server redis-tools)",
)


def _ping_without_password(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(200)


def _fake_cli(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bin" / "redis-cli"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _nodes(statuses: list[ServiceStatus]) -> list[ServiceStatus]:
    return [s for s in statuses if s.name == "redis"]


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "dev"
    try:
        yield path
    finally:
        down(path, timeout=5.0)


def test_fixture_cluster_spreads_keys_over_every_primary(redis_cluster: RedisCluster) -> None:
    from redis.cluster import RedisCluster as Client

    client = Client.from_url(redis_cluster.url)
    try:
        keys = [f"devcluster-test:{i}" for i in range(300)]
        for key in keys:
            client.set(key, key)
        assert [client.get(k) for k in keys] == [k.encode() for k in keys]
        primaries = client.get_primaries()
        assert len(primaries) == 3
        per_node = [client.execute_command("DBSIZE", target_nodes=node) for node in primaries]
        assert all(n > 0 for n in per_node), per_node  # sharded, not all in one slot
        client.delete(*keys)
    finally:
        client.close()
    assert len(redis_cluster.ports) == len(redis_cluster.replica_ports) == 3
    assert redis_cluster.replica_ports[0] == redis_cluster.ports[-1] + 1


def test_up_status_idempotent_restart_and_down(state_dir: Path) -> None:
    """One cluster through its life: a password, a replica each, a node that dies, `down`."""
    from redis.cluster import RedisCluster as Client

    ports = free_ports(6, cluster_bus=True)
    url = f"redis://:s3cret@127.0.0.1:{ports[0]}/0"
    first = up(url, None, state_dir, redis_cluster=3, cluster_replicas=1)
    head, nodes = first[0], _nodes(first)
    assert (head.name, head.state, head.address) == ("cluster", "running", f"127.0.0.1:{ports[0]}")
    assert "all 16384 slots served" in head.detail
    assert [n.address for n in nodes] == [f"127.0.0.1:{p}" for p in ports]
    assert [n.role for n in nodes] == ["primary"] * 3 + ["replica"] * 3
    assert sum(n.slots or 0 for n in nodes) == 16384
    assert all(n.slots for n in nodes[:3])
    primaries = {f"127.0.0.1:{p}" for p in ports[:3]}
    assert all(n.detail.split(";")[0].removeprefix("replica of ") in primaries for n in nodes[3:])
    for port in ports:  # every node enforces the password; replicas synced with --masterauth
        assert _ping_without_password(port).startswith(b"-NOAUTH")
    logs = [n.log_path for n in nodes]
    assert logs == [state_dir / "redis-cluster" / f"node-{p}.log" for p in ports]
    assert "s3cret" not in "".join(p.read_text() for p in logs)

    client = Client.from_url(url)
    client.set("user:1", "a")
    assert client.get("user:1") == b"a"

    again = up(url, None, state_dir, redis_cluster=3, cluster_replicas=1)
    assert [s.pid for s in _nodes(again)] == [n.pid for n in nodes]
    assert all(s.detail.split("; ")[1] == "already running" for s in _nodes(again))
    assert [(s.name, s.state, s.role) for s in status(url, None, state_dir)] == [
        ("cluster", "running", None),
        *[("redis", "running", n.role) for n in nodes],
    ]
    # Another layout, or a standalone Redis, from the same state dir is refused.
    with pytest.raises(DevServiceError, match="already runs"):
        up(url, None, state_dir, redis_cluster=4)
    with pytest.raises(DevServiceError, match="dev up --redis-cluster 3"):
        up(url, None, state_dir)

    # A replica dies: status says so; `up` restarts just that one, and it rejoins.
    dead = nodes[-1]
    assert dead.pid is not None
    os.kill(dead.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not process_gone(dead.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    now = status(url, None, state_dir)
    assert now[0].state == "unhealthy"
    assert [s.state for s in _nodes(now)] == ["running"] * 5 + ["stopped"]
    healed = up(url, None, state_dir, redis_cluster=3, cluster_replicas=1)
    assert healed[0].state == "running"
    assert [s.pid for s in _nodes(healed)][:5] == [n.pid for n in nodes[:5]]
    assert _nodes(healed)[5].pid not in (None, dead.pid)
    assert _nodes(healed)[5].role == "replica"
    assert client.get("user:1") == b"a"
    client.close()

    stopped = down(state_dir)
    pids = [s.pid for s in _nodes(healed)]
    assert [s.address for s in _nodes(stopped)] == [f"127.0.0.1:{p}" for p in ports]
    assert all("SIGTERM" in s.detail for s in _nodes(stopped))
    assert all(pid is not None and process_gone(pid) for pid in pids)
    assert not any(accepting(p) for p in ports)
    assert not list(state_dir.rglob("*.pid"))
    assert not list(state_dir.rglob("nodes-*.conf"))  # the next `up` makes a new cluster
    assert [(s.name, s.state) for s in status(url, None, state_dir)] == [("redis", "stopped")]


@pytest.mark.parametrize("which", ["second primary", "replica bus"])
def test_taken_port_is_refused(state_dir: Path, which: str) -> None:
    ports = free_ports(6, cluster_bus=True)
    busy = ports[1] if which == "second primary" else ports[4] + 10000
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", busy))
        listener.listen()
        with pytest.raises(PortInUseError, match=f"Port {busy} ") as info:
            up(
                f"redis://127.0.0.1:{ports[0]}/0",
                None,
                state_dir,
                redis_cluster=3,
                cluster_replicas=1,
            )
    message = str(info.value)
    assert "online_store.redis_url" in message
    assert "consecutive ports" in message
    assert "Redis Cluster node" in message
    # All or nothing: no node was started.
    assert not list(state_dir.rglob("*.pid"))
    assert not any(accepting(p) for p in ports if p != busy)


def test_missing_redis_cli_names_the_package(state_dir: Path, tmp_path: Path) -> None:
    ports = free_ports(3, cluster_bus=True)
    with pytest.raises(BinaryNotFoundError, match="apt-get install redis-tools"):
        up(
            f"redis://127.0.0.1:{ports[0]}/0",
            None,
            state_dir,
            redis_cluster=3,
            redis_cli_bin=str(tmp_path / "no" / "redis-cli"),
        )
    assert not any(accepting(p) for p in ports)


def test_failed_create_stops_every_node(state_dir: Path, tmp_path: Path) -> None:
    ports = free_ports(3, cluster_bus=True)
    cli = _fake_cli(tmp_path, 'echo "[ERR] Node is not empty" ; exit 1')
    with pytest.raises(DevServiceError, match="exited with code 1") as info:
        up(f"redis://127.0.0.1:{ports[0]}/0", None, state_dir, redis_cluster=3, redis_cli_bin=cli)
    assert "[ERR] Node is not empty" in str(info.value)
    assert str(state_dir / "redis-cluster" / "create.log") in str(info.value)
    assert not list(state_dir.rglob("*.pid"))
    assert not (state_dir / "redis-cluster" / "cluster.json").exists()
    assert not any(accepting(p) for p in ports)


def test_cluster_never_ready_times_out_naming_the_logs(state_dir: Path, tmp_path: Path) -> None:
    ports = free_ports(3, cluster_bus=True)
    cli = _fake_cli(tmp_path, 'echo "pretending to create"; exit 0')  # nodes never meet
    url = f"redis://127.0.0.1:{ports[0]}/0"
    with pytest.raises(DevServiceError, match=r"not ready within 1\.5 s") as info:
        up(url, None, state_dir, redis_cluster=3, timeout=1.5, redis_cli_bin=cli)
    message = str(info.value)
    assert "cluster_state:fail" in message
    assert "create.log" in message
    assert "pretending to create" in message
    assert "node-*.log" in message
    assert not any(accepting(p) for p in ports)


def test_bad_cluster_shapes_are_refused(state_dir: Path) -> None:
    port = free_ports(3, cluster_bus=True)[0]
    url = f"redis://127.0.0.1:{port}/0"
    with pytest.raises(DevServiceError, match="3 to 16 primaries"):
        up(url, None, state_dir, redis_cluster=2)
    with pytest.raises(DevServiceError, match="0 to 2 replicas"):
        up(url, None, state_dir, redis_cluster=3, cluster_replicas=3)
    with pytest.raises(DevServiceError, match="past 65535"):
        up("redis://127.0.0.1:60000/0", None, state_dir, redis_cluster=3)
    with pytest.raises(DevServiceError, match="outside them"):
        up(url, f"127.0.0.1:{port + 2}", state_dir, redis_cluster=3)
    with pytest.raises(DevServiceError, match="outside them"):
        up(url, f"127.0.0.1:{port + 10001}", state_dir, redis_cluster=3)
    assert not state_dir.exists() or not list(state_dir.rglob("*.pid"))


def test_standalone_running_refuses_a_cluster(state_dir: Path) -> None:
    ports = free_ports(3, cluster_bus=True)
    url = f"redis://127.0.0.1:{ports[0]}/0"
    up(url, None, state_dir)
    with pytest.raises(DevServiceError, match="standalone dev Redis"):
        up(url, None, state_dir, redis_cluster=3)
    assert not (state_dir / "redis-cluster").exists()
    assert not accepting(ports[1])


def test_cli_dev_up_redis_cluster_json(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ports = free_ports(3, cluster_bus=True)
    kafka_port = free_port()
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", f"redis://127.0.0.1:{ports[0]}/0")
    monkeypatch.setenv("FEATURESTORE_KAFKA", f"127.0.0.1:{kafka_port}")
    repo = str(example_repo)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> tuple[str, str]:
        result = runner.invoke(app, ["dev", *args, "-r", repo])
        assert result.exit_code == code, result.output
        return result.stdout, result.stderr

    try:
        out, err = run("up", "--redis-cluster", "3", "--json")
        rows = json.loads(out)
        assert [(r["name"], r["state"], r["address"]) for r in rows] == [
            ("cluster", "running", f"127.0.0.1:{ports[0]}"),
            *[("redis", "running", f"127.0.0.1:{p}") for p in ports],
            ("kafka", "running", f"127.0.0.1:{kafka_port}"),
        ]
        assert [r["role"] for r in rows[1:4]] == ["primary"] * 3
        assert sum(r["slots"] for r in rows[1:4]) == 16384
        assert "online_store.cluster: true" in err
        # Without the flag, `up` keeps the cluster it finds recorded.
        again = json.loads(run("up", "--json")[0])
        assert [r["pid"] for r in again] == [r["pid"] for r in rows]
        out, _ = run("status")
        assert out.count(" running ") == 5
        assert out.count("primary, ") == 3
    finally:
        run("down")
    out, _ = run("status", code=3)
    assert out.count(" stopped ") == 2


def test_cli_dev_up_follows_cluster_true_in_the_repo(tmp_path: Path) -> None:
    ports = free_ports(3, cluster_bus=True)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "featurestore.yaml").write_text(
        "project: p\n"
        f"online_store: {{redis_url: 'redis://127.0.0.1:{ports[0]}/0', cluster: true}}\n"
        f"kafka: {{bootstrap_servers: '127.0.0.1:{free_port()}'}}\n"
    )
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["dev", "up", "-r", str(repo), "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert [(r["name"], r.get("role")) for r in rows] == [
            ("cluster", None),
            *[("redis", "primary")] * 3,
            ("kafka", None),
        ]
        assert "online_store.cluster: true" not in result.stderr  # the repo says so already
        plain = tmp_path / "plain"
        plain.mkdir()
        (plain / "featurestore.yaml").write_text("project: q\n")
        bad = runner.invoke(app, ["dev", "up", "-r", str(plain), "--replicas", "1"])
        assert bad.exit_code == 1
        assert "--replicas needs --redis-cluster N" in bad.stderr
    finally:
        runner.invoke(app, ["dev", "down", "-r", str(repo)])
    assert not any(accepting(p) for p in ports)


def test_a_killed_primary_fails_over_and_up_brings_it_back(state_dir: Path) -> None:
    ports = free_ports(6, cluster_bus=True)
    url = f"redis://127.0.0.1:{ports[0]}/0"
    nodes = _nodes(up(url, None, state_dir, redis_cluster=3, cluster_replicas=1))
    victim = nodes[0]
    heir = next(n for n in nodes[3:] if n.detail.startswith(f"replica of {victim.address};"))
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)

    deadline = time.monotonic() + 30  # node timeout 2 s, then an election
    while time.monotonic() < deadline:
        now = status(url, None, state_dir)
        if now[0].state == "unhealthy" and any(
            s.address == heir.address and s.role == "primary" for s in now
        ):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the replica {heir.address} was not promoted: {now}")

    healed = up(url, None, state_dir, redis_cluster=3, cluster_replicas=1)
    assert healed[0].state == "running"
    roles = {s.address: s.role for s in _nodes(healed)}
    assert roles[victim.address] == "replica"  # it rejoined under its heir
    assert roles[heir.address] == "primary"
    assert sum(s.slots or 0 for s in _nodes(healed)) == 16384
