"""The online store seam: what lookups, writers, the serving log and drift ask of a store.

``OnlineStore`` is a small Protocol; ``online_store_from_config`` picks the implementation
by name (today "redis": standalone Redis, ``redis_store.RedisOnlineStore``; Redis Cluster
is one more class and one more entry in ``ONLINE_STORES``). The name comes from the repo's
config: the scheme of ``online_store.redis_url``.

Reads are Redis-shaped commands, ``(b"HMGET", key, *fields)`` and ``(b"GET", key)``, each
naming its key second, so a sharded store routes each command by its key; the lookup
builds them once (featurestore/online/commands.py) and the store sends them in one round
trip (one per node for a cluster), answering the replies in order.

This module is on the online read path: standard library only at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from featurestore.errors import RepoConfigError, did_you_mean
from featurestore.urls import redact

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.config import RepoConfig
    from featurestore.online.layout import ViewLayout
    from featurestore.online.writer import Row, WriteStats

Command = tuple[Any, ...]


class OnlineStore(Protocol):
    """Where online values live. Errors are typed: OnlineStoreUnavailable when the store
    cannot be reached, OnlineStoreRefused when it answers a read with an error."""

    label: str  # where the store is, credentials redacted, for messages

    # -- lookups (the hot path: one call per lookup, never per key) --------------------
    def read(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to ``commands``, in order, in one round trip."""
        ...

    async def read_async(self, commands: Sequence[Command]) -> list[Any]: ...

    def ping(self) -> bool: ...

    async def ping_async(self) -> bool: ...

    # -- writes (the monotonic writer: a value never replaces a newer one) -------------
    def write(self, layout: ViewLayout, rows: Iterable[Row]) -> WriteStats: ...

    def write_table(self, layout: ViewLayout, table: pa.Table) -> WriteStats: ...

    def delete_entities(self, layout: ViewLayout, key_values: Sequence[Sequence[Any]]) -> int: ...

    def delete_version(self, layout: ViewLayout) -> int: ...

    # -- the serving log and drift ---------------------------------------------------
    def append_served(self, batch: Mapping[bytes, Sequence[bytes]], maxlen: int) -> None:
        """Append each key's encoded samples as one entry of its serving-log stream,
        keeping about ``maxlen`` entries."""
        ...

    def read_served(self, key: bytes, since_ms: int, count: int) -> list[bytes]:
        """The serving-log entries of ``key`` appended since ``since_ms``, oldest first."""
        ...

    def publish(self, values: Mapping[bytes, bytes]) -> None:
        """Set these keys (drift summaries and details); lookups read them with GET."""
        ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def _redis(url: str) -> OnlineStore:
    from featurestore.online.redis_store import RedisOnlineStore

    return RedisOnlineStore.from_url(url)


def _redis_cluster(url: str) -> OnlineStore:
    from featurestore.online.cluster_store import ClusterOnlineStore

    return ClusterOnlineStore.from_url(url)


# name -> how to build it from the online store's URL
ONLINE_STORES: dict[str, Callable[[str], OnlineStore]] = {
    "redis": _redis,
    "redis-cluster": _redis_cluster,
}
# URL scheme -> store name
SCHEMES = {"redis": "redis", "rediss": "redis", "unix": "redis"}


def store_name(url: str) -> str:
    """The name of the store ``url`` asks for (RepoConfigError for an unknown scheme)."""
    scheme = urlparse(url).scheme
    name = SCHEMES.get(scheme)
    if name is None:
        raise RepoConfigError(
            f"online_store.redis_url {redact(url)!r} has scheme {scheme!r}, which no online "
            f"store serves.{did_you_mean(scheme, SCHEMES)} Known schemes: "
            f"{', '.join(f'{s}://' for s in SCHEMES)}."
        )
    return name


def open_name(url: str, *, cluster: bool) -> str:
    """The store for ``url``: its scheme's, or Redis Cluster's when ``cluster`` is set
    (``online_store.cluster: true``)."""
    name = store_name(url)
    return "redis-cluster" if cluster and name == "redis" else name


def open_online_store(url: str, *, cluster: bool = False) -> OnlineStore:
    """The online store at ``url`` (for code that has the URL, not the config: Spark
    executors)."""
    return ONLINE_STORES[open_name(url, cluster=cluster)](url)


def online_store_from_config(config: RepoConfig, name: str | None = None) -> OnlineStore:
    """The repo's online store, by ``name`` (default: the one its URL's scheme names)."""
    url = config.redis_url
    name = name or open_name(url, cluster=config.redis_cluster)
    build = ONLINE_STORES.get(name)
    if build is None:
        raise RepoConfigError(
            f"Unknown online store '{name}'.{did_you_mean(name, ONLINE_STORES)} Known: "
            f"{', '.join(ONLINE_STORES)}."
        )
    return build(url)
