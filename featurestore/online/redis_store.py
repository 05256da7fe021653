"""The standalone-Redis online store: lookups, the monotonic writer, the serving log, drift.

Lookups send their commands straight down one pooled connection (packed into one write,
the replies read back in order), which is what a redis-py pipeline does minus its
bookkeeping. A dropped connection (Redis restarted) is retried once on a fresh one:
lookups are reads. The asyncio path is featurestore/online/aioredis.py.

Clients are passed in: ``client`` serves lookups and pings (short timeouts), ``bulk``
writes and deletes (no read timeout: a write's script calls may take a while), and
``background`` the serving log and drift (a bounded timeout). ``from_url`` builds them
from one URL (TLS with ``rediss://``, user and password from the URL).

This module is on the online read path: no pyspark, pandas or great_expectations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import msgpack
import redis

from featurestore.errors import (
    OnlineStoreMisconfigured,
    OnlineStoreRefused,
    OnlineStoreUnavailable,
)
from featurestore.online.aioredis import AsyncRedis, ReplyError
from featurestore.online.writer import OnlineWriter, is_cluster_reply
from featurestore.urls import redact

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.online.layout import ViewLayout
    from featurestore.online.store import Command
    from featurestore.online.writer import Row, WriteStats

CONNECTION_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)
LOOKUP_TIMEOUT = 2.0  # seconds: a lookup fails fast rather than queue behind a stuck Redis
BACKGROUND_TIMEOUT = 10.0  # the serving log's appends, drift's reads and publishes


def not_standalone(label: str, exc: BaseException) -> OnlineStoreMisconfigured | None:
    """The error for a cluster node answered as if it were a single Redis (MOVED, ASK,
    CROSSSLOT): the repo's config, not the data, is wrong."""
    if is_cluster_reply(exc):
        return OnlineStoreMisconfigured(
            f"{label} is a node of a Redis Cluster ({exc}): set `online_store.cluster: "
            "true` in featurestore.yaml so featurestore routes keys to their nodes."
        )
    return None


def lookup_refused(label: str, exc: BaseException) -> OnlineStoreRefused:
    """The same typed error for an error reply on the sync and the asyncio path."""
    misconfigured = not_standalone(label, exc)
    if misconfigured is not None:
        return misconfigured
    return OnlineStoreRefused(
        f"The online store ({label}) refused the lookup: {exc}. Check that only "
        "featurestore writes this project's fs:* keys and that the server's Redis user "
        "may read them (HMGET, GET)."
    )


def lookup_unavailable(label: str, exc: BaseException | None) -> OnlineStoreUnavailable:
    return OnlineStoreUnavailable(
        f"The online store ({label}) is unreachable: {exc}. Lookups fail until it "
        "is back; `featurestore dev status` shows local services."
    )


def background_error(label: str, what: str, exc: BaseException) -> OnlineStoreUnavailable:
    return OnlineStoreUnavailable(
        f"Could not {what} on {label}: {exc}. Run the check again when it is back."
    )


class RedisOnlineStore:
    """An ``OnlineStore`` on one Redis server (``featurestore.online.store``)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        url: str,
        async_client: AsyncRedis | None = None,
        bulk: redis.Redis | None = None,
        background: redis.Redis | None = None,
        chunk_keys: int = 256,
        chunks_per_round_trip: int = 16,
    ) -> None:
        self.client = client
        self.url = url
        self.label = f"Redis at {redact(url)}"
        self.bulk = bulk if bulk is not None else client
        self.background = background if background is not None else client
        self.writer = OnlineWriter(
            self.bulk, chunk_keys=chunk_keys, chunks_per_round_trip=chunks_per_round_trip
        )
        self._async = async_client if async_client is not None else AsyncRedis(url)
        self._pool = client.connection_pool

    @classmethod
    def from_url(cls, url: str, *, timeout: float = LOOKUP_TIMEOUT) -> RedisOnlineStore:
        lookups = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        return cls(
            redis.Redis.from_url(url, **lookups),
            url=url,
            async_client=AsyncRedis(url, timeout=timeout),
            bulk=redis.Redis.from_url(url, socket_connect_timeout=timeout),
            background=redis.Redis.from_url(
                url, socket_timeout=BACKGROUND_TIMEOUT, socket_connect_timeout=timeout
            ),
        )

    # -- lookups -------------------------------------------------------------------

    def read(self, commands: Sequence[Command]) -> list[Any]:
        error: BaseException | None = None
        for _attempt in (1, 2):
            try:
                conn = self._pool.get_connection()
            except CONNECTION_ERRORS as exc:
                error = exc
                continue
            try:
                conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                return [conn.read_response() for _ in commands]
            except CONNECTION_ERRORS as exc:
                conn.disconnect()  # a stale pooled connection: the retry gets a fresh one
                error = exc
            except redis.RedisError as exc:  # an error reply (WRONGTYPE, NOPERM...)
                conn.disconnect()  # the replies after it are unread: never reuse it
                raise self._refused(exc) from exc
            except BaseException:
                conn.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                self._pool.release(conn)
        raise self._unavailable(error) from error

    async def read_async(self, commands: Sequence[Command]) -> list[Any]:
        try:
            return await self._async.execute(commands)
        except ReplyError as exc:  # every reply was read: the connection stays good
            raise self._refused(exc) from exc
        except CONNECTION_ERRORS:
            pass  # a connection dropped while idle (Redis restarted): one fresh try
        try:
            return await self._async.execute(commands)
        except ReplyError as exc:
            raise self._refused(exc) from exc
        except CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from exc

    def ping(self) -> bool:
        try:
            return self.read([(b"PING",)]) == [b"PONG"]
        except OnlineStoreUnavailable:
            return False

    async def ping_async(self) -> bool:
        try:
            return await self.read_async([(b"PING",)]) == [b"PONG"]
        except OnlineStoreUnavailable:
            return False

    def _refused(self, exc: BaseException) -> OnlineStoreRefused:
        return lookup_refused(self.label, exc)

    def _unavailable(self, exc: BaseException | None) -> OnlineStoreUnavailable:
        return lookup_unavailable(self.label, exc)

    # -- writes --------------------------------------------------------------------

    def write(self, layout: ViewLayout, rows: Iterable[Row]) -> WriteStats:
        return self.writer.write(layout, rows)

    def write_table(self, layout: ViewLayout, table: pa.Table) -> WriteStats:
        return self.writer.write_table(layout, table)

    def delete_entities(self, layout: ViewLayout, key_values: Sequence[Sequence[Any]]) -> int:
        return self.writer.delete_entities(layout, key_values)

    def delete_version(self, layout: ViewLayout) -> int:
        return self.writer.delete_version(layout)

    # -- the serving log and drift ---------------------------------------------------

    def append_served(self, batch: Mapping[bytes, Sequence[bytes]], maxlen: int) -> None:
        try:
            pipe = self.background.pipeline(transaction=False)
            for key, entries in batch.items():
                data = msgpack.packb(list(entries), use_bin_type=True)
                pipe.xadd(key, {b"d": data}, maxlen=maxlen, approximate=True)
            pipe.execute()
        except redis.RedisError as exc:
            raise OnlineStoreUnavailable(
                f"The serving log could not append to {self.label}: {exc}."
            ) from exc

    def read_served(self, key: bytes, since_ms: int, count: int) -> list[bytes]:
        try:
            raw = self.background.xrange(key, min=f"{since_ms}-0", max="+", count=count)
        except redis.RedisError as exc:
            raise self._background_error("read the serving log", exc) from exc
        # redis-py types cover decoded and RESP3 replies; this client returns bytes entries.
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", raw)
        return [fields[b"d"] for _id, fields in entries]

    def publish(self, values: Mapping[bytes, bytes]) -> None:
        try:
            pipe = self.background.pipeline(transaction=False)
            for key, value in values.items():
                pipe.set(key, value)
            pipe.execute()
        except redis.RedisError as exc:
            raise self._background_error("publish the drift status", exc) from exc

    def _background_error(self, what: str, exc: BaseException) -> OnlineStoreUnavailable:
        return background_error(self.label, what, exc)

    def close(self) -> None:
        for client in {id(c): c for c in (self.client, self.bulk, self.background)}.values():
            client.connection_pool.disconnect()

    async def aclose(self) -> None:
        await self._async.close()
