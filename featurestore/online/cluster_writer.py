"""The monotonic writer on a Redis Cluster: the same script, called once per hash slot.

A script call may only name keys of one slot, and featurestore keys carry no hash tag (a
tag per view would put the whole view in one slot: nothing would be sharded). So a
write's rows are encoded first (a bad row raises with nothing sent), grouped by slot in
their order (a key always falls in the same slot, so its rows keep their order: the later
of two equal-time rows still wins), cut into calls of at most ``chunk_keys`` keys, and
sent ``keys_per_round`` keys at a time through the router: one pipeline per primary, all
primaries written before any reply is read. The value encoding, TTL rules and key layout
are the standalone writer's (featurestore/online/writer.py), so a migration is a copy.

A new primary (after a failover) has no script cache: a NOSCRIPT reply is answered by
sending the script itself (EVAL), which caches it there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from featurestore.errors import OnlineStoreRefused, OnlineStoreUnavailable
from featurestore.online.cluster_router import ClusterRouter, ClusterUnavailable
from featurestore.online.slots import key_slot
from featurestore.online.writer import (
    WRITE_SCRIPT,
    Row,
    WriteStats,
    encoded,
    entity_keys,
    glob_escape,
    table_rows,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.online.layout import ViewLayout

WRITE_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest().encode()


class ClusterWriter:
    """Writes feature rows of view versions to a Redis Cluster, event-time monotonic."""

    def __init__(
        self,
        router: ClusterRouter,
        *,
        chunk_keys: int = 256,
        keys_per_round: int = 16384,
        patience: float = 30.0,
    ) -> None:
        self.router = router
        self.chunk_keys = chunk_keys
        self.keys_per_round = keys_per_round
        self.patience = patience  # seconds a write waits for a failover or migration

    def write(self, layout: ViewLayout, rows: Iterable[Row]) -> WriteStats:
        by_slot: dict[int, list[tuple[bytes, bytes, bytes, int]]] = {}
        for item in encoded(layout, rows):
            by_slot.setdefault(key_slot(item[0]), []).append(item)
        commands: list[tuple[Any, ...]] = []
        for items in by_slot.values():
            for start in range(0, len(items), self.chunk_keys):
                chunk = items[start : start + self.chunk_keys]
                args: list[Any] = []
                for _key, field, value, expire_at in chunk:
                    args += (field, value, expire_at)
                commands.append((b"EVALSHA", WRITE_SHA, len(chunk), *(i[0] for i in chunk), *args))
        stats = WriteStats()
        batch: list[tuple[Any, ...]] = []
        keys = 0
        for command in commands:
            batch.append(command)
            keys += command[2]
            if keys >= self.keys_per_round:
                stats += self._send(batch, layout)
                batch, keys = [], 0
        if batch:
            stats += self._send(batch, layout)
        return stats

    def write_table(self, layout: ViewLayout, table: pa.Table) -> WriteStats:
        return self.write(layout, table_rows(layout, table))

    def _send(self, commands: list[tuple[Any, ...]], layout: ViewLayout) -> WriteStats:
        replies = self._execute(commands, [c[3] for c in commands], layout)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:  # a node that never saw the script (new, restarted, promoted)
            again = [(b"EVAL", WRITE_SCRIPT, *commands[i][2:]) for i in missing]
            answers = self._execute(again, [c[3] for c in again], layout)
            for i, reply in zip(missing, answers, strict=True):
                replies[i] = reply
        stats = WriteStats()
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, BaseException):
                raise OnlineStoreRefused(
                    f"The {self.router.label} refused a write of {layout.label}: {reply}. "
                    "Writes are idempotent: re-run the write when it is fixed."
                )
            written, older, expired = reply
            stats.rows += command[2]
            stats.written += written
            stats.skipped_older += older
            stats.skipped_expired += expired
        return stats

    def _execute(
        self, commands: Sequence[tuple[Any, ...]], keys: Sequence[bytes], layout: ViewLayout
    ) -> list[Any]:
        try:
            return self.router.execute(commands, keys, patience=self.patience)
        except ClusterUnavailable as exc:
            raise OnlineStoreUnavailable(
                f"{layout.label}: the write to the {self.router.label} did not complete "
                f"within {self.patience:g} s ({exc}). Part of the last batch may have been "
                "written; re-run the write when the cluster is back (writes are idempotent)."
            ) from exc

    def delete_entities(self, layout: ViewLayout, key_values: Sequence[Sequence[Any]]) -> int:
        keys = entity_keys(layout, key_values)
        return self._hdel(
            keys, layout, "values of these entities were not (all) removed: run the repair again."
        )

    def delete_version(self, layout: ViewLayout, *, scan_count: int = 1000) -> int:
        """Remove one view version's values from every entity hash, on every primary."""
        pattern = glob_escape(layout.prefix) + b"*"
        removed = 0
        failed = (
            "online values were not (all) removed. Run `featurestore online cleanup` when it "
            "is back."
        )
        try:
            primaries = self.router.primaries()
            for address in primaries:
                cursor = b"0"
                while True:
                    scan = (b"SCAN", cursor, b"MATCH", pattern, b"COUNT", scan_count)
                    (reply,) = self.router.send(address, [scan])
                    cursor, keys = self._checked([reply], layout, failed)[0]
                    if keys:
                        removed += self._hdel(list(keys), layout, failed)
                    if cursor in (b"0", 0):
                        break
        except OnlineStoreUnavailable:
            raise
        except (ClusterUnavailable, ConnectionError, OSError) as exc:
            raise self._unreachable(layout, failed, exc) from exc
        return removed

    def _hdel(self, keys: list[bytes], layout: ViewLayout, failed: str) -> int:
        removed = 0
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            commands = [(b"HDEL", key, layout.field) for key in batch]
            try:
                replies = self.router.execute(commands, batch, patience=self.patience)
            except ClusterUnavailable as exc:
                raise self._unreachable(layout, failed, exc) from exc
            removed += sum(self._checked(replies, layout, failed))
        return removed

    def _checked(self, replies: list[Any], layout: ViewLayout, failed: str) -> list[Any]:
        """The replies, or OnlineStoreRefused for the first error among them (NOPERM,
        WRONGTYPE...): never counted as nothing removed."""
        for reply in replies:
            if isinstance(reply, BaseException):
                raise OnlineStoreRefused(
                    f"The {self.router.label} refused a removal of {layout.label}'s values: "
                    f"{reply}; its {failed}"
                )
        return replies

    def _unreachable(
        self, layout: ViewLayout, failed: str, exc: BaseException
    ) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"The {self.router.label} is unreachable ({exc}); {layout.label}'s {failed}"
        )
