"""The Redis Cluster online store: ``online_store: {redis_url: ..., cluster: true}``.

The same keys and values as standalone Redis (featurestore/online/redis_store.py), spread
over the cluster's primaries by hash slot. A lookup's commands go out as one pipeline per
primary it touches, all sent before any reply is read (featurestore/online/
cluster_router.py), so it costs one round trip to each node, in parallel; writes call the
monotonic script once per slot group (cluster_writer.py); ``retire`` and ``online
cleanup`` scan every primary. ``redis_url`` names any node (the start-up node); the rest
are found with ``CLUSTER SLOTS``, with the URL's scheme (``rediss://``: TLS) and
credentials. Reads go to primaries only: a replica may lag, and lookups must not go back in
event time.

This module is on the online read path: no pyspark, pandas or great_expectations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from featurestore.online.cluster_router import (
    AsyncClusterRouter,
    ClusterRouter,
    ClusterUnavailable,
    Topology,
)
from featurestore.online.cluster_writer import ClusterWriter
from featurestore.online.redis_store import (
    BACKGROUND_TIMEOUT,
    LOOKUP_TIMEOUT,
    background_error,
    lookup_refused,
    lookup_unavailable,
)
from featurestore.urls import redact

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.online.layout import ViewLayout
    from featurestore.online.store import Command
    from featurestore.online.writer import Row, WriteStats


def command_keys(commands: Sequence[Command]) -> list[bytes | None]:
    """Each command's key (its second word; None for PING and the like)."""
    return [c[1] if len(c) > 1 else None for c in commands]


class ClusterOnlineStore:
    """An ``OnlineStore`` on a Redis Cluster (``featurestore.online.store``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = LOOKUP_TIMEOUT,
        chunk_keys: int = 256,
        keys_per_round: int = 16384,
        write_patience: float = 30.0,
    ) -> None:
        self.url = url
        self.label = f"Redis Cluster at {redact(url)}"
        shared = Topology(url)  # what one router learns (a failover, the nodes) all know
        self.lookups = ClusterRouter(url, timeout=timeout, connect_timeout=timeout, topology=shared)
        self.async_lookups = AsyncClusterRouter(url, timeout=timeout, topology=shared)
        self.bulk = ClusterRouter(url, timeout=None, connect_timeout=timeout, topology=shared)
        self.background = ClusterRouter(
            url, timeout=BACKGROUND_TIMEOUT, connect_timeout=timeout, topology=shared
        )
        self.writer = ClusterWriter(
            self.bulk,
            chunk_keys=chunk_keys,
            keys_per_round=keys_per_round,
            patience=write_patience,
        )

    @classmethod
    def from_url(cls, url: str, *, timeout: float = LOOKUP_TIMEOUT) -> ClusterOnlineStore:
        return cls(url, timeout=timeout)

    # -- lookups -------------------------------------------------------------------

    def read(self, commands: Sequence[Command]) -> list[Any]:
        try:
            replies = self.lookups.execute(commands, command_keys(commands))
        except ClusterUnavailable as exc:
            raise lookup_unavailable(self.label, exc) from exc
        return self._checked(replies)

    async def read_async(self, commands: Sequence[Command]) -> list[Any]:
        try:
            replies = await self.async_lookups.execute(commands, command_keys(commands))
        except ClusterUnavailable as exc:
            raise lookup_unavailable(self.label, exc) from exc
        return self._checked(replies)

    def _checked(self, replies: list[Any]) -> list[Any]:
        for reply in replies:
            if isinstance(reply, BaseException):
                raise lookup_refused(self.label, reply)
        return replies

    def ping(self) -> bool:
        """Every primary answers (a cluster with one primary down serves part of its keys:
        not ready)."""
        try:
            primaries = self.lookups.primaries()
            return all(self.lookups.send(a, [(b"PING",)]) == [b"PONG"] for a in primaries)
        except (ClusterUnavailable, ConnectionError, OSError):
            return False

    async def ping_async(self) -> bool:
        try:
            router = self.async_lookups
            slots = router.slots if router.slots is not None else await router.refresh()
            for address in slots.primaries:
                if await router.send(address, [(b"PING",)]) != [b"PONG"]:
                    return False
            return True
        except (ClusterUnavailable, ConnectionError, OSError):
            return False

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

    def _background(self, what: str, commands: list[Command]) -> list[Any]:
        try:
            replies = self.background.execute(commands, command_keys(commands), patience=2.0)
        except ClusterUnavailable as exc:
            raise background_error(self.label, what, exc) from exc
        for reply in replies:
            if isinstance(reply, BaseException):
                raise background_error(self.label, what, reply)
        return replies

    def append_served(self, batch: Mapping[bytes, Sequence[bytes]], maxlen: int) -> None:
        commands: list[Command] = [
            (
                b"XADD",
                key,
                b"MAXLEN",
                b"~",
                maxlen,
                b"*",
                b"d",
                msgpack.packb(list(entries), use_bin_type=True),
            )
            for key, entries in batch.items()
        ]
        self._background("append to the serving log", commands)

    def read_served(self, key: bytes, since_ms: int, count: int) -> list[bytes]:
        command = (b"XRANGE", key, f"{since_ms}-0".encode(), b"+", b"COUNT", count)
        (entries,) = self._background("read the serving log", [command])
        out = []
        for _id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            out.append(values[b"d"])
        return out

    def publish(self, values: Mapping[bytes, bytes]) -> None:
        self._background(
            "publish the drift status", [(b"SET", key, value) for key, value in values.items()]
        )

    def close(self) -> None:
        for router in (self.lookups, self.bulk, self.background):
            router.close()

    async def aclose(self) -> None:
        await self.async_lookups.close()
