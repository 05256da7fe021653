"""Commands to a Redis Cluster: each routed by its key, one pipeline per node, in parallel.

``execute(commands, keys)`` groups the commands by the primary that serves each key's
slot, writes every node's pipeline before reading any reply (so the nodes work at the same
time: a request costs one round trip to each node it touches, concurrently), and answers
the replies in the commands' order. Redirections are followed per command: ``MOVED``
patches the slot map and asks the new owner, ``ASK`` (a slot being migrated) sends
``ASKING`` and the command to the importing node, ``TRYAGAIN``/``CLUSTERDOWN`` and
unreachable nodes refresh the slot map and retry within the caller's ``patience``
(lookups: none beyond one fresh try; writes: long enough for a failover). Other error
replies are handed back in place as exceptions for the caller to type.

``ClusterRouter`` is the sync side (redis-py connection pools, one per node);
``AsyncClusterRouter`` the asyncio side (featurestore/online/aioredis.py, one connection
per node and event loop).

This module is on the online read path: no pyspark, pandas or great_expectations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse, urlunparse

import hiredis
import redis
from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError

from featurestore.errors import OnlineStoreMisconfigured
from featurestore.online.aioredis import AsyncRedis, ReplyError
from featurestore.online.slots import Address, Redirect, SlotMap, key_slot, parse_redirect
from featurestore.urls import redact

CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)
MAX_ROUNDS = 16  # redirections followed per command before giving up
ASKING = (b"ASKING",)


# node -> (indices of its commands, the commands to send it)
Groups = dict[Address, tuple[list[int], list[tuple[Any, ...]]]]


def packed(commands: Sequence[tuple[Any, ...]]) -> bytes:
    """The commands in Redis's protocol, packed by hiredis: redis-py's own packer costs
    about 10 us more per command, and a cluster write sends one command per slot group."""
    return b"".join(map(hiredis.pack_command, commands))


def read_replies(conn: Any, n: int) -> list[Any]:
    """``n`` replies from a redis-py connection, error replies in place (the parser reads
    an error reply whole, so the ones after it are read on)."""
    out: list[Any] = []
    while len(out) < n:
        try:
            while len(out) < n:
                out.append(conn.read_response())
        except redis.ResponseError as exc:
            out.append(exc)
    return out


class ClusterUnavailable(ConnectionError):
    """No node answered, or the commands still failed when the caller's patience ran out."""


def node_url(url: str, address: Address) -> str:
    """``url`` (scheme, user, password) pointed at another node; a cluster has only db 0."""
    parts = urlparse(url)
    auth = parts.netloc.rpartition("@")[0]
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    netloc = f"{auth + '@' if auth else ''}{host}:{address[1]}"
    return urlunparse(parts._replace(netloc=netloc, path="/0"))


def start_address(url: str) -> Address:
    parts = urlparse(url)
    return (parts.hostname or "127.0.0.1", parts.port or 6379)


def redirect_of(reply: Any) -> Redirect | None:
    """A MOVED/ASK reply, from redis-py's exceptions or a bare hiredis error."""
    if isinstance(reply, AskError):  # MovedError is an AskError too
        kind = "MOVED" if isinstance(reply, MovedError) else "ASK"
        return Redirect(kind, reply.slot_id, (reply.host, int(reply.port)))
    if isinstance(reply, ReplyError):
        return parse_redirect(str(reply))
    return None


def transient(reply: Any) -> bool:
    """An error that a retry after a pause answers (a migration or failover under way)."""
    if isinstance(reply, TryAgainError | ClusterDownError):
        return True
    return isinstance(reply, ReplyError) and str(reply).startswith(("TRYAGAIN", "CLUSTERDOWN"))


class Dispatch:
    """One ``execute``'s bookkeeping, shared by the sync and asyncio routers."""

    __slots__ = (
        "asking", "commands", "keys", "last_error", "moves", "pause", "pending", "refresh",
        "replies", "waits",
    )  # fmt: skip

    def __init__(self, commands: Sequence[tuple[Any, ...]], keys: Sequence[bytes | None]):
        self.commands = commands
        self.keys = keys
        self.replies: list[Any] = [None] * len(commands)
        self.pending = list(range(len(commands)))
        self.asking: dict[int, Address] = {}
        self.refresh = False  # the slot map is stale: refresh before the next round
        self.pause = False  # a node failed or asked to retry: wait before the next round
        self.waits = 0  # rounds that paused
        self.moves = 0
        self.last_error: BaseException | None = None

    def groups(self, slots: SlotMap) -> Groups:
        """Pending commands per node: their indices and the commands to send (with
        ``ASKING`` before each asked one)."""
        out: Groups = {}
        owners, keys, commands, asking = slots.owners, self.keys, self.commands, self.asking
        for i in self.pending:  # the hot path of every lookup: kept to plain lookups
            key = keys[i]
            asked = asking.get(i) if asking else None
            owner = asked or (owners[key_slot(key)] if key is not None else None)
            address = owner if owner is not None else slots.node_for(key)
            group = out.get(address)
            if group is None:
                group = out[address] = ([], [])
            group[0].append(i)
            if asked is not None:
                group[1].append(ASKING)
            group[1].append(commands[i])
        self.pending = []
        return out

    def settle(self, idxs: list[int], replies: list[Any] | BaseException, slots: SlotMap) -> None:
        """Take one node's replies (or its connection error) and queue what must retry."""
        if isinstance(replies, BaseException):
            self.last_error = replies
            self.refresh = self.pause = True  # it may have failed over: ask the others
            for i in idxs:
                self.asking.pop(i, None)
            self.pending += idxs
            return
        it = iter(replies)
        asking, out = self.asking, self.replies
        for i in idxs:
            if asking and asking.pop(i, None) is not None:
                next(it)  # ASKING's +OK
            reply = next(it)
            if not isinstance(reply, BaseException):
                out[i] = reply
                continue
            redirect = redirect_of(reply)
            if redirect is not None:
                if redirect.kind == "MOVED":
                    slots.moved(redirect)
                    self.moves += 1
                    if self.moves % 64 == 0:  # many moved slots: a reshard, read it whole
                        self.refresh = True
                else:
                    self.asking[i] = redirect.address
                self.pending.append(i)
            elif transient(reply):
                self.last_error = reply
                self.pause = True
                self.pending.append(i)
            else:
                self.replies[i] = reply

    def must_stop(self, deadline: float) -> bool:
        """After a round that left commands pending: whether the caller's patience is
        spent. Redirections are always followed; failures get one fresh try at once, then
        retries until ``deadline``."""
        if not self.pause:
            return False
        self.waits += 1
        return self.waits > 1 and time.monotonic() >= deadline

    def next_round(self) -> None:
        self.refresh = self.pause = False

    def failure(self, label: str) -> ClusterUnavailable:
        why = self.last_error or f"still redirected after {MAX_ROUNDS} rounds"
        return ClusterUnavailable(f"{len(self.pending)} command(s) to the {label} failed: {why}")


class Topology:
    """What one store knows of its cluster: the slot map and every node seen, shared by its
    routers (lookups, asyncio, bulk, background), so one that learned of a failover or of
    the other nodes helps the rest, even when the start-up node is the one that died."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = f"Redis Cluster at {redact(url)}"
        self.start = start_address(url)
        self.slots: SlotMap | None = None
        self.known: dict[Address, None] = {self.start: None}

    def candidates(self) -> list[Address]:
        """Nodes to ask for the slot map: today's primaries, their replicas, then every
        node seen before (the start-up node among them)."""
        now = self.slots.nodes if self.slots is not None else []
        return [*dict.fromkeys([*now, *self.known])]

    def adopt(self, reply: Any, address: Address) -> SlotMap | None:
        """The slot map in a CLUSTER SLOTS reply (None for an error reply), made current."""
        if isinstance(reply, BaseException):
            if "cluster support disabled" in str(reply):
                raise OnlineStoreMisconfigured(
                    f"online_store.cluster is true, but the Redis at {redact(self.url)} is "
                    "not a cluster node (cluster support disabled). Set `cluster: false` in "
                    "featurestore.yaml, or point redis_url at a node of the cluster."
                )
            return None
        slots = SlotMap.from_reply(reply, address)
        self.known.update(dict.fromkeys(slots.nodes))
        self.slots = slots
        return slots

    def unavailable(self, error: BaseException | None) -> ClusterUnavailable:
        return ClusterUnavailable(f"no node of the {self.label} answered ({error})")


class SlotMapSource:
    """A router's view of the shared topology."""

    def __init__(self, url: str, topology: Topology | None) -> None:
        self.url = url
        self.topology = topology if topology is not None else Topology(url)
        self.label = self.topology.label

    @property
    def slots(self) -> SlotMap | None:
        return self.topology.slots


class ClusterRouter(SlotMapSource):
    """The sync router: a redis-py connection pool per node."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float | None,
        connect_timeout: float,
        topology: Topology | None = None,
    ) -> None:
        super().__init__(url, topology)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.pools: dict[Address, redis.ConnectionPool] = {}
        self.lock = threading.Lock()

    def pool(self, address: Address) -> redis.ConnectionPool:
        pool = self.pools.get(address)
        if pool is None:
            with self.lock:
                pool = self.pools.get(address)
                if pool is None:
                    pool = self.pools[address] = redis.ConnectionPool.from_url(
                        node_url(self.url, address),
                        socket_timeout=self.timeout,
                        socket_connect_timeout=self.connect_timeout,
                    )
        return pool

    def slot_map(self) -> SlotMap:
        return self.slots if self.slots is not None else self.refresh()

    def refresh(self) -> SlotMap:
        error: BaseException | None = None
        for address in self.topology.candidates():
            try:
                (reply,) = self.send(address, [(b"CLUSTER", b"SLOTS")])
            except CONNECTION_ERRORS as exc:
                error = exc
                continue
            slots = self.topology.adopt(reply, address)
            if slots is None:
                error = reply
                continue
            return slots
        raise self.topology.unavailable(error)

    def send(self, address: Address, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One node's pipeline, sent and read back (error replies in place)."""
        pool = self.pool(address)
        conn = pool.get_connection()
        try:
            conn.send_packed_command([packed(commands)], check_health=False)
            return read_replies(conn, len(commands))
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            pool.release(conn)

    def execute(
        self,
        commands: Sequence[tuple[Any, ...]],
        keys: Sequence[bytes | None],
        *,
        patience: float = 0.0,
    ) -> list[Any]:
        job = Dispatch(commands, keys)
        slots = self.slots if self.slots is not None else self.refresh()
        deadline = 0.0  # set when a round first fails: most calls never need it
        for _round in range(MAX_ROUNDS):
            groups = job.groups(slots)
            if len(groups) == 1:  # the common small lookup: one node, no bookkeeping
                ((address, (idxs, cmds)),) = groups.items()
                try:
                    replies: list[Any] | BaseException = self.send(address, cmds)
                except CONNECTION_ERRORS as exc:
                    replies = exc
                job.settle(idxs, replies, slots)
            else:
                self.round(job, groups, slots)
            if not job.pending:
                return job.replies
            deadline = deadline or time.monotonic() + patience
            if job.must_stop(deadline):
                break
            if job.waits > 1:
                time.sleep(min(0.05 * 2 ** (job.waits - 2), 1.0))
            if job.refresh:
                try:
                    slots = self.refresh()
                except ClusterUnavailable as exc:
                    job.last_error = exc
            job.next_round()
        raise job.failure(self.label)

    def round(self, job: Dispatch, groups: Groups, slots: SlotMap) -> None:
        """Write every node's pipeline, then read each: the nodes answer in parallel."""
        sent = []
        for address, (idxs, cmds) in groups.items():
            pool = self.pool(address)
            try:
                conn = pool.get_connection()
            except CONNECTION_ERRORS as exc:
                job.settle(idxs, exc, slots)
                continue
            try:
                conn.send_packed_command([packed(cmds)], check_health=False)
            except CONNECTION_ERRORS as exc:
                conn.disconnect()
                pool.release(conn)
                job.settle(idxs, exc, slots)
                continue
            sent.append((pool, conn, idxs, len(cmds)))
        for pool, conn, idxs, n in sent:
            try:
                replies: list[Any] | BaseException = read_replies(conn, n)
            except CONNECTION_ERRORS as exc:
                conn.disconnect()
                replies = exc
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
            job.settle(idxs, replies, slots)

    def primaries(self) -> list[Address]:
        return self.slot_map().primaries

    def close(self) -> None:
        for pool in list(self.pools.values()):
            pool.disconnect()


class AsyncClusterRouter(SlotMapSource):
    """The asyncio router: one lean connection per node and event loop."""

    def __init__(self, url: str, *, timeout: float, topology: Topology | None = None) -> None:
        super().__init__(url, topology)
        self.timeout = timeout
        self.nodes: dict[Address, AsyncRedis] = {}

    def node(self, address: Address) -> AsyncRedis:
        node = self.nodes.get(address)
        if node is None:
            node = self.nodes[address] = AsyncRedis(
                node_url(self.url, address), timeout=self.timeout
            )
        return node

    async def refresh(self) -> SlotMap:
        error: BaseException | None = None
        for address in self.topology.candidates():
            try:
                (reply,) = await self.node(address).execute(
                    [(b"CLUSTER", b"SLOTS")], raise_errors=False
                )
            except CONNECTION_ERRORS as exc:
                error = exc
                continue
            slots = self.topology.adopt(reply, address)
            if slots is None:
                error = reply
                continue
            return slots
        raise self.topology.unavailable(error)

    async def execute(
        self, commands: Sequence[tuple[Any, ...]], keys: Sequence[bytes | None]
    ) -> list[Any]:
        job = Dispatch(commands, keys)
        deadline = time.monotonic()  # lookups wait for no failover: one fresh try
        slots = self.slots if self.slots is not None else await self.refresh()
        for _round in range(MAX_ROUNDS):
            groups = job.groups(slots)
            if len(groups) == 1:  # the common small lookup: no task per node
                ((address, (idxs, cmds)),) = groups.items()
                job.settle(idxs, await self.send(address, cmds), slots)
            else:  # every node's pipeline sent before any reply is awaited
                sent = []
                for address, (idxs, cmds) in groups.items():
                    future = self.node(address).started(cmds)
                    sent.append((idxs, future if future is not None else self.send(address, cmds)))
                for idxs, waiting in sent:
                    try:
                        replies: list[Any] | Exception = await waiting
                    except CONNECTION_ERRORS as exc:
                        replies = exc
                    job.settle(idxs, replies, slots)
            if not job.pending:
                return job.replies
            if job.must_stop(deadline):
                break
            if job.refresh:
                try:
                    slots = await self.refresh()
                except ClusterUnavailable as exc:
                    job.last_error = exc
            job.next_round()
        raise job.failure(self.label)

    async def send(self, address: Address, cmds: list[tuple[Any, ...]]) -> list[Any] | Exception:
        try:
            return await self.node(address).execute(cmds, raise_errors=False)
        except CONNECTION_ERRORS as exc:
            return exc

    async def close(self) -> None:
        for node in list(self.nodes.values()):
            await node.close()
