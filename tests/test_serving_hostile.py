"""Hostile input to the feature server (a real process on a real Redis): deeply nested
bodies, failures nobody expected, Redis answering with an error, slow clients."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

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
