"""Hostile input to the feature server (a real process on a real Redis): deeply nested
bodies, failures nobody expected, Redis answering with an error, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from featurestore import FeatureStore
from featurestore.errors import MalformedRequestError, OnlineStoreRefused
from tests.helpers import online_repo
from tests.test_online_store import user_stats
from tests.test_serving import Server, start_server, stop_server

pytestmark = pytest.mark.services

USER_STATS = ["user_stats:avg_amount"]
CORRUPT_USER = 99  # its value in Redis is not a value the server wrote
WRONG_TYPE_USER = 98  # its key is a Redis string, not a hash: HMGET answers WRONGTYPE


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Iterator[Server]:
    repo = online_repo(tmp_path_factory.mktemp("hostile") / "repo", services.redis_url, "hostile")
    with FeatureStore(repo) as store:
        store.apply()
        now = datetime.now(UTC)
        store.write_online("user_stats", user_stats([1], [now - timedelta(minutes=1)], [10.0]))
    server = start_server(repo, "--workers", "2")
    with FeatureStore(repo) as store:
        plan = store.online_client(api_key=server.key).plan(features=USER_STATS)
    (reads,) = plan.key_reads
    r = redis.Redis.from_url(services.redis_url)
    r.hset(reads.prefix + str(CORRUPT_USER).encode(), reads.fields[0], b"x")
    r.set(reads.prefix + str(WRONG_TYPE_USER).encode(), b"not a hash")
    yield server
    stop_server(server)


def nested(depth: int, kind: str) -> bytes:
    if kind == "lists":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def body(template: bytes, value: bytes) -> bytes:
    return template.replace(b"NESTED", value)


# Each puts a value nested 1,000 levels deep (orjson parses up to 1,024) where the API
# takes a scalar: the answer names the field, not a RecursionError.
NESTED_BODIES = {
    "row key": (b'{"entities": [{"user_id": NESTED, "merchant_id": "m1"}]}', "'user_id'"),
    "column key": (
        b'{"entities": {"user_id": [NESTED], "merchant_id": ["m1"]}}',
        "'user_id'",
    ),
    "model": (b'{"model": NESTED, "entities": [{"user_id": 1}]}', '"model"'),
    "feature": (b'{"features": [NESTED], "entities": [{"user_id": 1}]}', '"features"'),
}


@pytest.mark.parametrize("kind", ["lists", "objects"])
@pytest.mark.parametrize("case", sorted(NESTED_BODIES))
def test_deeply_nested_values_get_a_400_naming_the_field(
    hostile: Server, case: str, kind: str
) -> None:
    template, field = NESTED_BODIES[case]
    response = hostile.post(body(template, nested(1000, kind)))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "MalformedRequestError"
    detail = response.json()["detail"]
    assert field in detail
    assert "scalar" in detail or "string" in detail
    assert len(detail) < 400  # the value is described, never echoed


@pytest.mark.parametrize("kind", ["lists", "objects"])
def test_nesting_deeper_than_json_parsing_allows_gets_a_400(hostile: Server, kind: str) -> None:
    response = hostile.post(body(b'{"entities": [{"user_id": NESTED}]}', nested(100_000, kind)))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidJSON"
    assert "nested" in response.json()["detail"]


def test_in_process_lookups_refuse_nested_keys_without_recursing(hostile: Server) -> None:
    value: Any = 1
    for _ in range(100_000):  # far past Python's recursion limit: repr() would fail
        value = [value]
    with FeatureStore(hostile.repo) as store:
        client = store.online_client(api_key=hostile.key)
        with pytest.raises(MalformedRequestError, match="'user_id' is a list"):
            client.get_online_features([{"user_id": value}], features=USER_STATS)
        with pytest.raises(MalformedRequestError, match="'user_id' is a dict"):
            client.get_online_features({"user_id": [{"a": value}]}, features=USER_STATS)
        client.close()


def _errors(server: Server, status: int, error: str) -> float:
    """The server's featurestore_request_errors_total for ``status`` and ``error``."""
    line = f'featurestore_request_errors_total{{error="{error}",status="{status}"}} '
    for sample in server.get("/metrics").text.splitlines():
        if sample.startswith(line):
            return float(sample[len(line) :])
    return 0.0


def test_an_unexpected_failure_is_a_500_with_a_request_id_logged_and_counted(
    hostile: Server,
) -> None:
    before = _errors(hostile, 500, "InternalServerError")
    ask = {"features": USER_STATS, "entities": [{"user_id": CORRUPT_USER}]}
    response = hostile.post(ask)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["error"] == "InternalServerError"
    request_id = response.headers["x-request-id"]
    assert answer["request_id"] == request_id
    assert request_id in answer["detail"]
    assert "Traceback" not in response.text
    assert "struct" not in response.text  # nothing of the exception reaches the client

    # A caller's own request id is kept (one that is safe to log).
    mine = hostile.post(
        ask, headers={"Authorization": f"Bearer {hostile.key}", "X-Request-ID": "abc-1"}
    )
    assert mine.status_code == 500
    assert mine.headers["x-request-id"] == "abc-1"

    assert hostile.get("/no/such/route").status_code == 404
    deadline = time.monotonic() + 10  # two workers: /metrics merges their files
    while _errors(hostile, 500, "InternalServerError") < before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _errors(hostile, 500, "InternalServerError") >= before + 2
    assert _errors(hostile, 404, "NotFound") >= 1
    # The server's log has each failure's traceback under its request id.
    log = _log(hostile, until=lambda text: "abc-1" in text and request_id in text)
    for rid in (request_id, "abc-1"):
        assert re.search(rf"request {re.escape(rid)}\b.*\nTraceback", log), log[-3000:]
    assert "struct.error" in log
    # And a healthy lookup still works afterwards.
    assert hostile.post({"features": USER_STATS, "entities": [{"user_id": 1}]}).status_code == 200


def _log(server: Server, until: Any) -> str:
    """What the server printed so far, read until ``until(text)`` holds (10 s at most)."""
    fd = server.proc.stdout.fileno()  # type: ignore[union-attr]
    os.set_blocking(fd, False)
    text = ""
    deadline = time.monotonic() + 10
    while not until(text) and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            time.sleep(0.1)
            continue
        text += chunk.decode(errors="replace")
    return text


def test_redis_error_replies_are_the_same_typed_error_sync_async_and_http(
    hostile: Server,
) -> None:
    ask = [{"user_id": WRONG_TYPE_USER}]
    with FeatureStore(hostile.repo) as store:
        client = store.online_client(api_key=hostile.key)
        with pytest.raises(OnlineStoreRefused, match="WRONGTYPE") as sync_error:
            client.get_online_features(ask, features=USER_STATS)

        async def lookups() -> None:
            with pytest.raises(OnlineStoreRefused, match="WRONGTYPE") as async_error:
                await client.get_online_features_async(ask, features=USER_STATS)
            assert type(async_error.value) is type(sync_error.value)
            # The connection is still good for the next lookup.
            ok = await client.get_online_features_async([{"user_id": 1}], features=USER_STATS)
            assert ok.to_dict()["avg_amount"] == [10.0]
            await client.aclose()

        asyncio.run(lookups())
        ok = client.get_online_features([{"user_id": 1}], features=USER_STATS)
        assert ok.to_dict()["avg_amount"] == [10.0]
        client.close()
    assert "redis://" in str(sync_error.value)  # names the store it asked

    response = hostile.post({"features": USER_STATS, "entities": ask})
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "OnlineStoreRefused"
    assert "WRONGTYPE" in response.json()["detail"]


# -- slow clients -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Iterator[Server]:
    """One worker with short read timeouts."""
    repo = online_repo(tmp_path_factory.mktemp("slow") / "repo", services.redis_url, "slow")
    with FeatureStore(repo) as store:
        store.apply()
        now = datetime.now(UTC)
        store.write_online("user_stats", user_stats([1], [now], [10.0]))
    server = start_server(repo, "--header-timeout", "1", "--body-timeout", "1")
    yield server
    stop_server(server)


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _open(server: Server, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", _port(server)), timeout=5)
        s.setblocking(False)
        socks.append(s)
    return socks


def _trickle(socks: list[socket.socket], first: dict[socket.socket, bytes], limit: float) -> dict:
    """Send each socket its first bytes, then one byte every 0.2 s until the server closes it
    or ``limit`` seconds pass: {socket: (seconds until closed or None, bytes answered)}."""
    start = time.monotonic()
    answered: dict[socket.socket, bytes] = {s: b"" for s in socks}
    closed: dict[socket.socket, float] = {}
    for s in socks:
        s.send(first[s])
    next_byte = start + 0.2
    while len(closed) < len(socks) and time.monotonic() - start < limit:
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.05)
        for s in readable:
            try:
                data = s.recv(65536)
            except ConnectionError:
                data = b""
            answered[s] += data
            if not data:
                closed[s] = time.monotonic() - start
        if time.monotonic() >= next_byte:
            next_byte += 0.2
            for s in socks:
                if s not in closed:
                    with contextlib.suppress(BlockingIOError, ConnectionError):
                        s.send(b"a")
    for s in socks:
        s.close()
    return {s: (closed.get(s), answered[s]) for s in socks}


def test_slow_clients_are_cut_off_and_others_are_served_meanwhile(guarded: Server) -> None:
    timeout = 1.0
    head = (
        "POST /v1/features HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {guarded.key}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    slow_body = _open(guarded, 100)
    slow_head = _open(guarded, 100)
    first = {s: head + b'{"entities": ' for s in slow_body}
    first.update(
        {s: b"POST /v1/features HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " for s in slow_head}
    )

    latencies: list[float] = []

    async def meanwhile() -> None:
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(5):
                t = time.monotonic()
                ok = await http.post(
                    f"{guarded.url}/v1/features",
                    content=orjson.dumps({"features": USER_STATS, "entities": [{"user_id": 1}]}),
                    headers={"Authorization": f"Bearer {guarded.key}"},
                )
                latencies.append(time.monotonic() - t)
                assert ok.status_code == 200, ok.text
                assert ok.json()["results"][0]["values"] == [10.0]
                await asyncio.sleep(0.2)

    async def both() -> dict:
        trickled = asyncio.to_thread(_trickle, slow_body + slow_head, first, 10 * timeout)
        result, _ = await asyncio.gather(trickled, meanwhile())
        return result

    result = asyncio.run(both())
    bound = 3 * timeout + 1  # generous: the machine is shared
    for closed_after, answer in result.values():
        assert closed_after is not None, "a slow client was never cut off"
        assert closed_after < bound, closed_after
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert len(latencies) == 5
    assert max(latencies) < 2.0, latencies
    assert _errors(guarded, 408, "RequestTimeout") >= 200


def test_an_idle_connection_is_closed_after_the_header_timeout(guarded: Server) -> None:
    (s,) = _open(guarded, 1)
    s.setblocking(True)
    s.settimeout(10)
    start = time.monotonic()
    assert s.recv(100) == b""  # closed without an answer: it asked for nothing
    assert time.monotonic() - start < 4
    s.close()


def test_connections_past_the_cap_get_503(tmp_path: Path, services: Any) -> None:
    repo = online_repo(tmp_path / "repo", services.redis_url, "capped")
    with FeatureStore(repo) as store:
        store.apply()
    server = start_server(repo, "--max-connections", "5", "--header-timeout", "30")
    ask = {"features": USER_STATS, "entities": [{"user_id": 1}]}
    try:
        idle = _open(server, 8)
        time.sleep(0.3)
        refused = server.post(ask)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "TooManyConnections"
        assert "5" in refused.json()["detail"]
        for s in idle:
            s.close()
        deadline = time.monotonic() + 10
        while (status := server.post(ask).status_code) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 200
        assert _errors(server, 503, "TooManyConnections") >= 1
    finally:
        stop_server(server)


def test_a_request_head_past_its_size_bound_gets_431(guarded: Server) -> None:
    response = httpx.get(f"{guarded.url}/healthz", headers={"X-Big": "a" * 70_000}, timeout=10)
    assert response.status_code == 431
    assert response.json()["error"] == "RequestHeaderFieldsTooLarge"
    assert guarded.get("/healthz").status_code == 200
