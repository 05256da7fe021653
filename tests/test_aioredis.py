"""The lean asyncio Redis connection (featurestore/online/aioredis.py) against a real Redis:
concurrent requests share writes, and a stuck Redis fails every waiting request in time."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import redis

from featurestore.devservices import free_port
from featurestore.online.aioredis import AsyncRedis
from tests.test_online_store import start_redis

pytestmark = pytest.mark.services


def _reads_processed(r: redis.Redis) -> int:
    return int(r.info("stats")["total_reads_processed"])


def test_requests_of_one_tick_reach_redis_in_one_write() -> None:
    port = free_port()
    proc = start_redis(port)
    client = AsyncRedis(f"redis://127.0.0.1:{port}/0")
    sync = redis.Redis(port=port)
    sync.ping()

    async def burst() -> tuple[list[list[bytes]], int]:
        await client.execute([(b"SET", b"k", b"v")])
        before = _reads_processed(sync)
        replies = await asyncio.gather(
            *(client.execute([(b"GET", b"k"), (b"ECHO", str(i))]) for i in range(100))
        )
        reads = _reads_processed(sync) - before
        await client.close()
        return replies, reads

    try:
        replies, reads = asyncio.run(burst())
    finally:
        proc.terminate()
        proc.wait(10)
    # Every request got its own replies, in order...
    assert replies == [[b"v", str(i).encode()] for i in range(100)]
    # ...though Redis read them all at once (one write each used to mean ~100 reads).
    # (The INFO command itself is a read.)
    assert reads <= 5, reads


def test_a_stuck_redis_fails_every_waiting_request_within_about_the_timeout() -> None:
    port = free_port()
    proc = start_redis(port)
    timeout = 0.5
    client = AsyncRedis(f"redis://127.0.0.1:{port}/0", timeout=timeout)

    async def stuck() -> tuple[list[BaseException | list[bytes]], float, list[bytes]]:
        assert await client.execute([(b"PING",)]) == [b"PONG"]
        proc.send_signal(signal.SIGSTOP)  # alive, connected, answering nothing
        start = time.monotonic()
        first = asyncio.gather(
            *(client.execute([(b"PING",)]) for _ in range(5)), return_exceptions=True
        )
        await asyncio.sleep(timeout / 2)  # a second wave, sent while the first waits
        second = asyncio.gather(
            *(client.execute([(b"PING",)]) for _ in range(5)), return_exceptions=True
        )
        outcomes = [*await first, *await second]
        elapsed = time.monotonic() - start
        proc.send_signal(signal.SIGCONT)
        after = await client.execute([(b"PING",)])  # a new connection, answered
        await client.close()
        return outcomes, elapsed, after

    try:
        outcomes, elapsed, after = asyncio.run(stuck())
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)
    assert all(isinstance(o, TimeoutError) for o in outcomes), outcomes
    assert "did not answer within 0.5 s" in str(outcomes[0])
    assert elapsed < 3 * timeout + 1  # generous: the machine is shared
    assert after == [b"PONG"]
