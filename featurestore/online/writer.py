"""The online store's one write path, shared by batch and streaming materialization.

A write never replaces a value with an older one. Redis decides, atomically,
in a Lua script loaded once and called by SHA: for each (key, field) it keeps
the value with the larger (event time, created time); on an exact tie the new
write wins, so re-running a job is idempotent. Keys expire at the latest
``event time + TTL`` of any value they hold (a key holding a view without TTL
never expires); values already past their TTL are not written at all, since
a lookup would report them expired.

Rows go in chunks of ``chunk_keys`` keys per script call (each call blocks
Redis for its duration, so chunks stay small for lookups' sake) and
``chunks_per_round_trip`` calls per pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import AskError, ClusterCrossSlotError

from featurestore.errors import (
    EntityInputError,
    OnlineStoreMisconfigured,
    OnlineStoreRefused,
    OnlineStoreUnavailable,
)
from featurestore.online.layout import ViewLayout, encode_value, key_part, value_encoder
from featurestore.times import micros

if TYPE_CHECKING:
    import pyarrow as pa

# KEYS: entity hashes. ARGV: per key, field, value, expire-at (ms; -1: never).
# Values start with the (event us, created us) header: numbers below 2^53 are
# exact in Lua's doubles, which covers microsecond times until the year 2255.
WRITE_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local written, older, expired = 0, 0, 0
for i = 1, #KEYS do
  local key, field, value = KEYS[i], ARGV[3 * i - 2], ARGV[3 * i - 1]
  local exp = tonumber(ARGV[3 * i])
  if exp >= 0 and exp <= now_ms then
    expired = expired + 1
  else
    local old = redis.call('HGET', key, field)
    local newer = true
    if old then
      local oe, oc = struct.unpack('>i8>i8', old)
      local ne, nc = struct.unpack('>i8>i8', value)
      newer = ne > oe or (ne == oe and nc >= oc)
    end
    if newer then
      local ttl = redis.call('PTTL', key)
      redis.call('HSET', key, field, value)
      if exp < 0 then
        if ttl >= 0 then redis.call('PERSIST', key) end
      elseif ttl == -2 or (ttl >= 0 and exp > now_ms + ttl) then
        redis.call('PEXPIREAT', key, exp)
      end
      written = written + 1
    else
      older = older + 1
    end
  end
end
return {written, older, expired}
"""


@dataclass(slots=True)
class WriteStats:
    rows: int = 0
    written: int = 0
    skipped_older: int = 0  # an equal or newer value was already there
    skipped_expired: int = 0  # past the TTL on arrival

    def __iadd__(self, other: WriteStats) -> WriteStats:
        self.rows += other.rows
        self.written += other.written
        self.skipped_older += other.skipped_older
        self.skipped_expired += other.skipped_expired
        return self


Row = tuple[Sequence[Any], int, int | None, Sequence[Any]]  # keys, event us, created us, values


class OnlineWriter:
    """Writes feature rows of view versions to Redis, event-time monotonic."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        chunk_keys: int = 256,
        chunks_per_round_trip: int = 16,
    ) -> None:
        self.client = client
        self.chunk_keys = chunk_keys
        self.chunks_per_round_trip = chunks_per_round_trip
        self._script = client.register_script(WRITE_SCRIPT)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> OnlineWriter:
        return cls(redis.Redis.from_url(url, socket_connect_timeout=2), **options)

    def write(self, layout: ViewLayout, rows: Iterable[Row]) -> WriteStats:
        """Write ``(key values, event us, created us or None, feature values)`` rows.

        Key values follow ``layout.join_keys``; feature values ``layout.features``.
        Every row is checked and encoded before anything is sent, so a bad key
        raises EntityInputError with nothing written.
        """
        stats = WriteStats()
        chunks = list(self._chunks(layout, rows))
        for round_trip in _batched(chunks, self.chunks_per_round_trip):
            stats += self._send(round_trip)
        return stats

    def write_table(self, layout: ViewLayout, table: pa.Table) -> WriteStats:
        """Write an Arrow table with the join keys, ``event_timestamp``, optionally
        ``created_timestamp``, and the layout's features (columns by name)."""
        return self.write(layout, table_rows(layout, table))

    def _chunks(self, layout: ViewLayout, rows: Iterable[Row]) -> Iterator[tuple[list, list]]:
        keys: list[bytes] = []
        args: list[Any] = []
        for key, field, value, expire_at in encoded(layout, rows):
            keys.append(key)
            args += (field, value, expire_at)
            if len(keys) == self.chunk_keys:
                yield keys, args
                keys, args = [], []
        if keys:
            yield keys, args

    def _send(self, chunks: list[tuple[list, list]]) -> WriteStats:
        stats = WriteStats()
        try:
            pipe = self.client.pipeline(transaction=False)
            for keys, args in chunks:
                self._script(keys=keys, args=args, client=pipe)
            replies = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise OnlineStoreUnavailable(
                f"Redis at {_where(self.client)} is unreachable ({exc}). Nothing after the "
                "last completed batch was written; re-run the write when Redis is back "
                "(writes are idempotent)."
            ) from exc
        except redis.ResponseError as exc:
            text = str(exc)
            if is_cluster_reply(exc):
                raise OnlineStoreMisconfigured(
                    f"Redis at {_where(self.client)} is a node of a Redis Cluster ({text}): "
                    "set `online_store.cluster: true` in featurestore.yaml. Nothing after "
                    "the last completed batch was written."
                ) from exc
            raise OnlineStoreRefused(
                f"Redis at {_where(self.client)} refused a write: {text}. Nothing after the "
                "last completed batch was written; writes are idempotent: re-run it when "
                "fixed."
            ) from exc
        for (keys, _), (written, older, expired) in zip(chunks, replies, strict=True):
            stats.rows += len(keys)
            stats.written += written
            stats.skipped_older += older
            stats.skipped_expired += expired
        return stats

    def delete_entities(self, layout: ViewLayout, key_values: Sequence[Sequence[Any]]) -> int:
        """Remove one view version's values of these entities (key values in
        ``layout.join_keys`` order), whatever their event time; returns how many. For
        repairs: every other write keeps the newest event time."""
        keys = entity_keys(layout, key_values)
        removed = 0
        try:
            for batch in _batched(keys, 1000):
                removed += self._hdel(batch, layout.field)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise OnlineStoreUnavailable(
                f"Redis at {_where(self.client)} is unreachable ({exc}); {layout.label}'s "
                "values of these entities were not (all) removed: run the repair again."
            ) from exc
        return removed

    def delete_version(self, layout: ViewLayout, *, scan_count: int = 1000) -> int:
        """Remove one view version's values from every entity hash; returns how many.

        Redis drops a hash when its last field goes, so no empty keys stay behind.
        """
        removed = 0
        pattern = glob_escape(layout.prefix) + b"*"
        try:
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=pattern, count=scan_count):
                batch.append(key)
                if len(batch) >= scan_count:
                    removed += self._hdel(batch, layout.field)
                    batch = []
            if batch:
                removed += self._hdel(batch, layout.field)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise OnlineStoreUnavailable(
                f"Redis at {_where(self.client)} is unreachable ({exc}); {layout.label}'s "
                "online values were not (all) removed. Run `featurestore online cleanup` "
                "when Redis is back."
            ) from exc
        return removed

    def _hdel(self, keys: list[bytes], field: bytes) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hdel(key, field)
        return sum(pipe.execute())


def is_cluster_reply(exc: BaseException) -> bool:
    """A reply only a cluster node gives (MOVED, ASK, CROSSSLOT): a single-Redis client
    was pointed at a cluster."""
    return isinstance(exc, AskError | ClusterCrossSlotError) or str(exc).startswith(
        ("MOVED", "ASK", "CROSSSLOT")
    )


def encoded(layout: ViewLayout, rows: Iterable[Row]) -> Iterator[tuple[bytes, bytes, bytes, int]]:
    """Each row as the write script's (key, field, value, expire-at ms or -1). A row that
    cannot be spelled raises EntityInputError naming it (callers encode every row before
    sending any, so nothing is written)."""
    prefix = layout.prefix
    field = layout.field
    parts = [key_part(d) for d in layout.key_dtypes]
    encode = value_encoder(layout.dtypes)
    ttl_ms = None if layout.ttl_us is None else layout.ttl_us // 1000
    for i, (key_values, event_us, created_us, values) in enumerate(rows):
        if event_us is None:
            raise EntityInputError(f"Row {i} for {layout.label} has no event time.")
        if not isinstance(event_us, int):
            event_us = micros(event_us)
        if created_us is not None and not isinstance(created_us, int):
            created_us = micros(created_us)
        key = prefix + _spell_key(layout, parts, key_values, i).encode()
        expire_at = -1 if ttl_ms is None else event_us // 1000 + ttl_ms
        yield key, field, encode_value(event_us, created_us, encode(values)), expire_at


def entity_keys(layout: ViewLayout, key_values: Sequence[Sequence[Any]]) -> list[bytes]:
    """The Redis keys of these entities (key values in ``layout.join_keys`` order)."""
    parts = [key_part(d) for d in layout.key_dtypes]
    return [
        layout.prefix + _spell_key(layout, parts, kv, i).encode() for i, kv in enumerate(key_values)
    ]


def table_rows(layout: ViewLayout, table: pa.Table) -> Iterator[Row]:
    """An Arrow table's rows as writer rows: the join keys, ``event_timestamp``, optionally
    ``created_timestamp``, and the layout's features (columns by name)."""
    import pyarrow as pa

    def column(name: str) -> list[Any]:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return col.to_pylist()

    missing = [
        c
        for c in (*layout.join_keys, "event_timestamp", *layout.features)
        if c not in table.column_names
    ]
    if missing:
        raise EntityInputError(
            f"Rows for {layout.label} have no column(s) {', '.join(missing)} "
            f"(have: {', '.join(table.column_names)})."
        )
    keys = list(zip(*(column(k) for k in layout.join_keys), strict=True))
    events = column("event_timestamp")
    n = table.num_rows
    created = (
        column("created_timestamp") if "created_timestamp" in table.column_names else [None] * n
    )
    values = list(zip(*(column(f) for f in layout.features), strict=True)) or [()] * n
    return zip(keys, events, created, values, strict=True)


def glob_escape(text: bytes) -> bytes:
    """``text`` as a literal SCAN MATCH pattern."""
    out = bytearray()
    for b in text:
        if b in b"*?[]\\":
            out += b"\\"
        out.append(b)
    return bytes(out)


def _spell_key(layout: ViewLayout, parts: list, key_values: Sequence[Any], row: int) -> str:
    if len(key_values) != len(parts):
        raise EntityInputError(
            f"Row {row} for {layout.label} has {len(key_values)} key value(s); the view's "
            f"entities need {len(parts)}: {', '.join(layout.join_keys)}."
        )
    spelled = []
    for name, part, value in zip(layout.join_keys, parts, key_values, strict=True):
        try:
            spelled.append(part(value))
        except (TypeError, ValueError) as exc:
            raise EntityInputError(f"Row {row} for {layout.label}: key '{name}': {exc}.") from exc
    return ",".join(spelled)


def _where(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def now_us() -> int:
    return time.time_ns() // 1000
