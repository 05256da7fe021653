"""Online lookups: in-process, sync and asyncio, one Redis round trip per lookup.

The client sends its HMGETs straight down one pooled connection (the commands
packed into one write, the replies read back in order), which is what a
redis-py pipeline does minus its bookkeeping. A dropped connection (Redis
restarted) is retried once on a fresh one: lookups are reads.

This module is on the online read path: no pyspark, pandas or great_expectations.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import msgpack
import redis

from featurestore.errors import EntityInputError, OnlineStoreUnavailable, RequestTooLargeError
from featurestore.online.aioredis import AsyncRedis, ReplyError
from featurestore.online.layout import HEADER_SIZE
from featurestore.online.plan import LookupPlan, compile_plan
from featurestore.online.response import EXPIRED, MISSING, PRESENT, OnlineResponse
from featurestore.registry.snapshot import RegistrySnapshot

DEFAULT_MAX_ENTITIES = 1000
_HEADER_EVENT = struct.Struct(">q").unpack_from
_unpackb = msgpack.unpackb
_CONNECTION_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def now_us() -> int:
    return time.time_ns() // 1000


class Catalog:
    """A registry snapshot and the lookup plans compiled from it."""

    def __init__(
        self, snapshot: RegistrySnapshot, *, policy_default: str = "allow", mask_key: bytes = b""
    ) -> None:
        self.snapshot = snapshot
        self.policy_default = policy_default
        self.mask_key = mask_key
        self._plans: dict[Any, LookupPlan] = {}

    @property
    def serial(self) -> int:
        return self.snapshot.serial

    def plan(
        self,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
    ) -> LookupPlan:
        if (model is None) == (features is None):
            raise EntityInputError(
                "Ask for a model's features (model=...) or for a list of feature references "
                "and feature-service names (features=[...]), not both or neither."
            )
        key = (model, tuple(features) if features is not None else None, full_feature_names)
        plan = self._plans.get(key)
        if plan is None:
            if model is not None:
                resolved = self.snapshot.resolve_model(model)
            else:
                if not features:
                    raise EntityInputError("features=[] asks for nothing; name at least one.")
                resolved = self.snapshot.resolve_all(list(features))
            plan = compile_plan(
                self.snapshot, resolved, model=model, full_feature_names=full_feature_names
            )
            if model is not None:
                plan = self._with_policies(plan, model, resolved)
            if len(self._plans) > 10_000:  # unbounded ad-hoc feature lists must not leak
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _with_policies(self, plan: LookupPlan, model: str, resolved: Sequence[Any]) -> LookupPlan:
        """Policies decided once per plan: a denied feature refuses the plan, a masked one
        is masked in every response (the lookup itself pays nothing for either)."""
        from featurestore.policy.engine import policy_masks

        masks = policy_masks(self.snapshot, model, resolved, self.policy_default)
        if not masks:
            return plan
        dtypes = list(plan.dtypes)
        for i, how in masks:
            dtypes[i] = "string" if how == "hash" else dtypes[i]
        return replace(plan, masks=tuple(masks), mask_key=self.mask_key, dtypes=tuple(dtypes))


def entity_rows(entities: Any, max_entities: int) -> list[dict[str, Any]]:
    """Rows as dicts, from a list of dicts or a dict of equal-length columns."""
    if isinstance(entities, Mapping):
        columns = list(entities.items())
        lengths = {len(v) if isinstance(v, list | tuple) else -1 for _, v in columns}
        if -1 in lengths:
            raise EntityInputError(
                "Entities given as columns must map each join key to a list of values, e.g. "
                '{"user_id": [1, 2]}.'
            )
        if len(lengths) > 1:
            shown = ", ".join(f"{k}: {len(v)}" for k, v in columns)
            raise EntityInputError(f"Entity key columns differ in length ({shown}).")
        n = lengths.pop() if lengths else 0
        if n > max_entities:
            raise _too_many(n, max_entities)
        keys = [k for k, _ in columns]
        rows = [
            dict(zip(keys, values, strict=True))
            for values in zip(*(v for _, v in columns), strict=True)
        ]
    elif isinstance(entities, list | tuple):
        rows = list(entities)
        if len(rows) > max_entities:
            raise _too_many(len(rows), max_entities)
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise EntityInputError(
                    f"Entity row {i} is a {type(row).__name__}; each row is a mapping of join "
                    'keys to values, e.g. {"user_id": 1}.'
                )
    else:
        raise EntityInputError(
            "entities must be a list of rows ({join key: value}) or a mapping of join keys "
            f"to lists of values, not {type(entities).__name__}."
        )
    if not rows:
        raise EntityInputError("No entity rows given: a lookup needs at least one.")
    return rows


def _too_many(n: int, limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"{n} entity rows in one lookup; the limit is {limit}. Split the request, or raise "
        "the limit (FeatureStore.online_client(max_entities=...), `serve --max-entities`)."
    )


def build_commands(plan: LookupPlan, rows: list[dict[str, Any]]) -> list[tuple]:
    """One HMGET per entity row and entity set. Raises EntityInputError naming the row."""
    commands = []
    i = 0
    try:
        for i, row in enumerate(rows):  # noqa: B007 -- i names the row in errors
            for kr in plan.key_reads:
                if len(kr.parts) == 1:
                    key = kr.prefix + kr.parts[0](row[kr.join_keys[0]]).encode()
                else:
                    key = (
                        kr.prefix
                        + ",".join(
                            p(row[k]) for p, k in zip(kr.parts, kr.join_keys, strict=True)
                        ).encode()
                    )
                commands.append((b"HMGET", key, *kr.fields))
    except KeyError as exc:
        key = exc.args[0]
        have = ", ".join(map(str, rows[i])) or "none"
        raise EntityInputError(
            f"Entity row {i} has no '{key}', which {', '.join(plan.views_needing(key))} "
            f"need(s) (the row has: {have})."
        ) from None
    except (TypeError, ValueError) as exc:
        name = _bad_key(plan, rows[i])
        raise EntityInputError(f"Entity row {i}: key '{name}': {exc}.") from None
    return commands


def _bad_key(plan: LookupPlan, row: dict[str, Any]) -> str:
    for kr in plan.key_reads:
        for part, key in zip(kr.parts, kr.join_keys, strict=True):
            try:
                part(row[key])
            except (TypeError, ValueError):
                return key
    return "?"


def assemble(
    plan: LookupPlan, rows: list[dict[str, Any]], replies: list[list[Any]], now: int
) -> OnlineResponse:
    n = len(rows)
    width = plan.width
    values: list[list[Any]] = [[None] * n for _ in range(width)]
    statuses: list[list[str]] = [[MISSING] * n for _ in range(width)]
    events: list[list[int | None]] = [[None] * n for _ in range(width)]
    j = 0
    for r in range(n):
        for kr in plan.key_reads:
            reply = replies[j]
            j += 1
            for view, raw in zip(kr.views, reply, strict=True):
                if raw is None:
                    continue
                (event,) = _HEADER_EVENT(raw)
                if view.ttl_us is not None and event < now - view.ttl_us:
                    for o in view.outputs:
                        statuses[o][r] = EXPIRED
                        events[o][r] = event
                    continue
                data = _unpackb(raw[HEADER_SIZE:])
                for pos, decode in view.decoders:
                    if data[pos] is not None:
                        data[pos] = decode(data[pos])
                for p, o in zip(view.positions, view.outputs, strict=True):
                    values[o][r] = data[p]
                    statuses[o][r] = PRESENT
                    events[o][r] = event
    if plan.masks:
        from featurestore.policy.engine import mask_value

        for o, how in plan.masks:
            values[o] = [mask_value(v, how, plan.mask_key) for v in values[o]]
    return OnlineResponse(plan, rows, values, statuses, events)


class OnlineClient:
    """Lookups against one project's online store.

    ``catalog`` supplies the registry snapshot; ``refresh`` (if given) returns a
    newer Catalog when the registry changed, and is called at most every
    ``refresh_seconds``, never per lookup.
    """

    def __init__(
        self,
        redis_url: str,
        catalog: Catalog,
        *,
        refresh: Callable[[Catalog], Catalog] | None = None,
        refresh_seconds: float = 1.0,
        max_entities: int = DEFAULT_MAX_ENTITIES,
        socket_timeout: float = 2.0,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.redis_url = redis_url
        self.catalog = catalog
        self.max_entities = max_entities
        self._refresh = refresh
        self._refresh_seconds = refresh_seconds
        self._next_refresh = time.monotonic() + refresh_seconds
        self._refresh_lock = threading.Lock()
        self._clock = clock
        options = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
        self._pool = redis.ConnectionPool.from_url(redis_url, **options)
        self._async = AsyncRedis(redis_url, timeout=socket_timeout)

    # -- registry ----------------------------------------------------------------

    def maybe_refresh(self) -> None:
        if self._refresh is None or time.monotonic() < self._next_refresh:
            return
        if not self._refresh_lock.acquire(blocking=False):
            return  # another thread is on it
        try:
            self._next_refresh = time.monotonic() + self._refresh_seconds
            self.catalog = self._refresh(self.catalog)
        finally:
            self._refresh_lock.release()

    def plan(self, **request: Any) -> LookupPlan:
        return self.catalog.plan(**request)

    # -- lookups -----------------------------------------------------------------

    def get_online_features(
        self,
        entities: Any,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        plan, rows, commands = self._prepare(entities, model, features, full_feature_names)
        return assemble(plan, rows, self._execute(commands), self._clock())

    async def get_online_features_async(
        self,
        entities: Any,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        plan, rows, commands = self._prepare(entities, model, features, full_feature_names)
        return assemble(plan, rows, await self._execute_async(commands), self._clock())

    def _prepare(
        self,
        entities: Any,
        model: str | None,
        features: Sequence[str] | None,
        full_feature_names: bool,
    ) -> tuple[LookupPlan, list[dict[str, Any]], list[tuple]]:
        """The plan, the entity rows and the commands: all a lookup does before Redis."""
        self.maybe_refresh()
        plan = self.catalog.plan(
            model=model, features=features, full_feature_names=full_feature_names
        )
        rows = entity_rows(entities, self.max_entities)
        return plan, rows, build_commands(plan, rows)

    def ping(self) -> bool:
        try:
            return self._execute([(b"PING",)]) == [b"PONG"]
        except OnlineStoreUnavailable:
            return False

    async def ping_async(self) -> bool:
        try:
            return await self._execute_async([(b"PING",)]) == [b"PONG"]
        except OnlineStoreUnavailable:
            return False

    def _execute(self, commands: list[tuple]) -> list[Any]:
        error: BaseException | None = None
        for _attempt in (1, 2):
            try:
                conn = self._pool.get_connection()
            except _CONNECTION_ERRORS as exc:
                error = exc
                continue
            try:
                conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                return [conn.read_response() for _ in commands]
            except _CONNECTION_ERRORS as exc:
                conn.disconnect()  # a stale pooled connection: the retry gets a fresh one
                error = exc
            except BaseException:
                conn.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                self._pool.release(conn)
        raise self._unavailable(error) from error

    async def _execute_async(self, commands: list[tuple]) -> list[Any]:
        try:
            return await self._async.execute(commands)
        except ReplyError:
            raise
        except _CONNECTION_ERRORS:
            pass  # a connection dropped while idle (Redis restarted): one fresh try
        try:
            return await self._async.execute(commands)
        except ReplyError:
            raise
        except _CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException | None) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"The online store (Redis at {_redacted(self.redis_url)}) is unreachable: {exc}. "
            "Lookups fail until it is back; `featurestore dev status` shows local services."
        )

    def close(self) -> None:
        self._pool.disconnect()

    async def aclose(self) -> None:
        await self._async.close()


def _redacted(url: str) -> str:
    """The URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
