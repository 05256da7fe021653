"""Online lookups: in-process, sync and asyncio, one Redis round trip per lookup.

The client sends its HMGETs straight down one pooled connection (the commands
packed into one write, the replies read back in order), which is what a
redis-py pipeline does minus its bookkeeping. A dropped connection (Redis
restarted) is retried once on a fresh one: lookups are reads.

This module is on the online read path: no pyspark, pandas or great_expectations.
"""

from __future__ import annotations

import random
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import msgpack
import orjson
import redis

from featurestore.errors import (
    AccessDeniedError,
    AuthenticationError,
    EntityInputError,
    MalformedRequestError,
    OnlineStoreRefused,
    OnlineStoreUnavailable,
    PolicyDeniedError,
    RequestTooLargeError,
)
from featurestore.online.aioredis import AsyncRedis, ReplyError
from featurestore.online.layout import HEADER_SIZE, drift_key, nested_kind, served_key
from featurestore.online.plan import LookupPlan, compile_plan
from featurestore.online.response import EXPIRED, MISSING, PRESENT, OnlineResponse
from featurestore.online.serving_log import ServingLog
from featurestore.online.usage import Usage
from featurestore.policy.keys import Credential, KeyRing
from featurestore.registry.snapshot import RegistrySnapshot
from featurestore.urls import redact

DEFAULT_MAX_ENTITIES = 1000
_HEADER_EVENT = struct.Struct(">q").unpack_from
_unpackb = msgpack.unpackb
_loads = orjson.loads
_random = random.random
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
    """A registry snapshot, its API keys, and the lookup plans compiled from them.

    Policies are decided when a plan is compiled (once per model or feature list, key
    and registry change), so a lookup pays a dictionary lookup for them. A denial is
    remembered too: a caller repeating a denied request is refused without re-deciding.
    ``on_decision`` hears each denied lookup and each masked plan (per mask rule), to
    audit them; the audit queue coalesces them per key, rule and window.
    """

    def __init__(
        self,
        snapshot: RegistrySnapshot,
        *,
        policy_default: str = "allow",
        mask_key: bytes = b"",
        keys: KeyRing | None = None,
        on_decision: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.policy_default = policy_default
        self.mask_key = mask_key
        self.keys = keys if keys is not None else KeyRing(snapshot.project)
        self.on_decision = on_decision
        self._plans: dict[Any, LookupPlan] = {}
        # A denied request's error and its audit fields, told again on each repeat.
        self._denied: dict[Any, tuple[AccessDeniedError, dict[str, Any]]] = {}
        self._verified: dict[str, Credential] = {}
        self._rates: dict[str, float] | None = None

    @property
    def serial(self) -> int:
        return self.snapshot.serial

    def authenticate(self, key: str, now: datetime | None = None) -> Credential:
        """The credential of ``key`` (AuthenticationError if it is not a live key of this
        project; AccessDeniedError if its model is gone from the registry). Verified keys
        are remembered for this snapshot: a lookup then pays a dictionary lookup."""
        credential = self._verified.get(key)
        if credential is not None and (
            credential.expires_at is None or credential.expires_at > (now or datetime.now(UTC))
        ):
            return credential
        credential = self.keys.authenticate(key, now or datetime.now(UTC))
        if credential.model not in self.snapshot.active("model"):
            raise AccessDeniedError(
                f"API key {credential.label} belongs to model '{credential.model}', which "
                f"is no longer registered in project '{self.snapshot.project}'."
            )
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = credential
        return credential

    def plan(
        self,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        caller: Credential | None = None,
    ) -> LookupPlan:
        """The plan of a request; with ``caller`` (an authenticated key), only its model may
        be asked for (the default), and its model's policies decide feature lists too."""
        if caller is not None and model is None and features is None:
            model = caller.model  # a key names its model
        if (model is None) == (features is None):
            raise EntityInputError(
                "Ask for a model's features (model=...) or for a list of feature references "
                "and feature-service names (features=[...]), not both or neither."
            )
        if caller is not None and model is not None and model != caller.model:
            raise AccessDeniedError(
                f"API key {caller.label} belongs to model '{caller.model}'; it may not read "
                f"model '{model}'. Ask with that model's key, or with features=[...] under "
                f"'{caller.model}'s policies."
            )
        key = (
            model,
            tuple(features) if features is not None else None,
            full_feature_names,
            caller.key_id if caller is not None else None,
        )
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        denied = self._denied.get(key)
        if denied is not None:
            self._tell(**denied[1])
            raise denied[0]
        # Unbounded ad-hoc feature lists, allowed or denied, must not leak memory.
        if len(self._plans) > 10_000 or len(self._denied) > 10_000:
            self._plans.clear()
            self._denied.clear()
        if model is not None:
            resolved = self.snapshot.resolve_model(model)
        else:
            if not features:
                raise EntityInputError("features=[] asks for nothing; name at least one.")
            resolved = self.snapshot.resolve_all(list(features))
        plan = compile_plan(
            self.snapshot, resolved, model=model, full_feature_names=full_feature_names
        )
        policy_model = model or (caller.model if caller is not None else None)
        if policy_model is not None:
            told: dict[str, Any] = {}
            try:
                plan = self._with_policies(plan, policy_model, resolved, caller, features, told)
            except AccessDeniedError as exc:
                self._denied[key] = (exc, told)
                raise
            rate = self._sample_rates().get(policy_model)
            if rate:
                project = self.snapshot.project
                plan = replace(
                    plan,
                    sample_rate=rate,
                    served_key=served_key(project, policy_model),
                    drift_key=drift_key(project, policy_model),
                )
        self._plans[key] = plan
        return plan

    def _sample_rates(self) -> dict[str, float]:
        """Per monitored model, the serving log's sample rate (the highest of its monitors)."""
        if self._rates is None:
            rates: dict[str, float] = {}
            for head in self.snapshot.active("drift_monitor").values():
                model, rate = head.spec["model"], float(head.spec["sample_rate"])
                rates[model] = max(rate, rates.get(model, 0.0))
            self._rates = rates
        return self._rates

    def _with_policies(
        self,
        plan: LookupPlan,
        model: str,
        resolved: Sequence[Any],
        caller: Credential | None,
        requested: Sequence[str] | None,
        told: dict[str, Any],
    ) -> LookupPlan:
        """``plan`` under ``model``'s policies; a denial's audit fields go into ``told``."""
        from featurestore.policy.engine import masks_of, policy_decisions

        who = caller.label if caller is not None else None
        asked = list(requested) if requested is not None else None

        def denied(feature: Any, decision: Any, exc: Exception) -> None:
            told.update(
                action="deny",
                subject=model,
                decision="deny",
                rule=decision.rule or "default",
                detail={
                    "at": "online",
                    "key": who,
                    "features": [str(feature)],
                    "requested": asked,
                    "message": str(exc),
                },
            )
            self._tell(**told)

        decisions = policy_decisions(
            self.snapshot, model, resolved, self.policy_default, on_deny=denied
        )
        masks = masks_of(decisions)
        dtypes = list(plan.dtypes)
        for i, how in masks:
            dtypes[i] = "string" if how == "hash" else dtypes[i]
        by_rule: dict[str, list[str]] = {}
        for i, _how in masks:  # one record per rule: their number is the registry's
            by_rule.setdefault(decisions[i].rule or "default", []).append(plan.refs[i])
        for rule, refs in sorted(by_rule.items()):
            self._tell(
                action="mask",
                subject=model,
                decision="mask",
                rule=rule,
                detail={"at": "online", "key": who, "features": refs, "requested": asked},
            )
        return replace(
            plan,
            masks=tuple(masks),
            mask_key=self.mask_key,
            dtypes=tuple(dtypes),
            policy_model=model,
            decisions=tuple(d.effect for d in decisions),
        )

    def _tell(self, **record: Any) -> None:
        if self.on_decision is not None:
            self.on_decision(record)


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


def _drift_answer(model: str, raw: bytes | None) -> dict[str, Any]:
    if raw:
        return _loads(raw)
    return {
        "model": model,
        "status": "unknown",
        "reason": "not checked yet (run `featurestore drift check` or `drift monitor`)",
    }


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
        kind = nested_kind(rows[i].get(name))
        if kind is not None:
            raise MalformedRequestError(
                f"Entity row {i}: key '{name}' is a {kind}; entity key values are scalars "
                f'(a string or an integer, as the entity\'s dtype says), e.g. {{"{name}": 1}}.'
            ) from None
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
        from featurestore.policy.engine import masker

        for o, how in plan.masks:
            mask = masker(how, plan.mask_key)
            values[o] = [mask(v) for v in values[o]]
    return OnlineResponse(plan, rows, values, statuses, events)


class OnlineClient:
    """Lookups against one project's online store.

    ``catalog`` supplies the registry snapshot; ``refresh`` (if given) returns a
    newer Catalog when the registry changed, and is called at most every
    ``refresh_seconds``, never per lookup.

    ``api_key`` identifies the caller: only its model may be asked for, and its model's
    policies decide feature lists too; ``require_key`` refuses lookups without one (the
    HTTP server passes each request's key). Lookups are counted per model, feature and
    decision (``usage()``), not logged one by one.
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
        api_key: str | None = None,
        require_key: bool = False,
    ) -> None:
        self.redis_url = redis_url
        self.catalog = catalog
        self.max_entities = max_entities
        self.api_key = api_key
        self.require_key = require_key
        self._refresh = refresh
        self._refresh_seconds = refresh_seconds
        self._next_refresh = time.monotonic() + refresh_seconds
        self._refresh_lock = threading.Lock()
        self._clock = clock
        self._usage = Usage()
        self._drift: dict[bytes, tuple[float, dict[str, Any]]] = {}
        self.drift_refresh_seconds = 1.0
        options = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
        self._pool = redis.ConnectionPool.from_url(redis_url, **options)
        self._async = AsyncRedis(redis_url, timeout=socket_timeout)
        if api_key is not None:
            catalog.authenticate(api_key)  # a bad key fails here, not at the first lookup

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

    def plan(self, *, api_key: str | None = None, **request: Any) -> LookupPlan:
        return self.catalog.plan(caller=self._caller(api_key), **request)

    def _caller(self, api_key: str | None) -> Credential | None:
        key = api_key or self.api_key
        if key is None:
            if self.require_key:
                raise AuthenticationError(
                    "This client requires an API key: pass api_key=... (or set "
                    "FEATURESTORE_API_KEY). Create one with `featurestore credentials create "
                    "--model NAME`."
                )
            return None
        return self.catalog.authenticate(key)

    def usage(self, *, reset: bool = False) -> dict[tuple[str, str, str], tuple[int, int]]:
        """``{(model, feature, decision): (lookups, values)}`` served since the client
        started (or since the last ``reset``); model '' for lookups by feature list
        without a key; decision ``deny`` counts refused lookups."""
        return self._usage.totals(reset=reset)

    # -- lookups -----------------------------------------------------------------

    def get_online_features(
        self,
        entities: Any,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        api_key: str | None = None,
    ) -> OnlineResponse:
        plan, rows, commands = self._prepare(entities, model, features, full_feature_names, api_key)
        fetch = self._drift_fetch(plan, commands)
        replies = self._execute(commands)
        return self._finish(plan, rows, replies, fetch)

    async def get_online_features_async(
        self,
        entities: Any,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        api_key: str | None = None,
    ) -> OnlineResponse:
        plan, rows, commands = self._prepare(entities, model, features, full_feature_names, api_key)
        fetch = self._drift_fetch(plan, commands)
        replies = await self._execute_async(commands)
        return self._finish(plan, rows, replies, fetch)

    def _prepare(
        self,
        entities: Any,
        model: str | None,
        features: Sequence[str] | None,
        full_feature_names: bool,
        api_key: str | None,
    ) -> tuple[LookupPlan, list[dict[str, Any]], list[tuple]]:
        """The plan, the entity rows and the commands: all a lookup does before Redis."""
        self.maybe_refresh()
        try:
            plan = self.catalog.plan(
                model=model,
                features=features,
                full_feature_names=full_feature_names,
                caller=self._caller(api_key),
            )
        except PolicyDeniedError as exc:
            self._usage.denied(exc)
            raise
        rows = entity_rows(entities, self.max_entities)
        commands = build_commands(plan, rows)
        self._usage.add(plan, len(rows))
        return plan, rows, commands

    def _drift_fetch(self, plan: LookupPlan, commands: list[tuple]) -> bool:
        """Read the model's drift summary in the lookup's own round trip, at most every
        ``drift_refresh_seconds``."""
        if not plan.drift_key:
            return False
        cached = self._drift.get(plan.drift_key)
        if cached is not None and time.monotonic() - cached[0] < self.drift_refresh_seconds:
            return False
        commands.append((b"GET", plan.drift_key))
        return True

    def _finish(
        self, plan: LookupPlan, rows: list[dict[str, Any]], replies: list[Any], fetched: bool
    ) -> OnlineResponse:
        now = self._clock()
        if fetched:
            raw = replies.pop()
            summary = _loads(raw) if raw else {"status": "unknown", "reason": "not checked yet"}
            self._drift[plan.drift_key] = (time.monotonic(), summary)
        response = assemble(plan, rows, replies, now)
        if plan.drift_key:
            response.drift = self._drift[plan.drift_key][1]
        if plan.sample_rate and _random() < plan.sample_rate:
            from featurestore.online.serving_log import encode_entry

            self.serving_log.offer(plan.served_key, encode_entry(plan, rows, response, now))
        return response

    @cached_property
    def serving_log(self) -> ServingLog:
        return ServingLog(self.redis_url)

    def drift_status(self, model: str, *, detail: bool = False) -> dict[str, Any]:
        """A model's drift status now (one GET): the summary lookups carry, or with
        ``detail`` every feature's statistics from the last check."""
        (raw,) = self._execute([(b"GET", self._drift_key(model, detail))])
        return _drift_answer(model, raw)

    async def drift_status_async(self, model: str, *, detail: bool = False) -> dict[str, Any]:
        (raw,) = await self._execute_async([(b"GET", self._drift_key(model, detail))])
        return _drift_answer(model, raw)

    def _drift_key(self, model: str, detail: bool) -> bytes:
        from featurestore.online.layout import drift_detail_key

        snapshot = self.catalog.snapshot
        snapshot.model(model)  # ObjectNotFound with a suggestion
        return (drift_detail_key if detail else drift_key)(snapshot.project, model)

    def watch_drift(
        self, model: str, *, interval: float = 1.0, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the model's drift summary now and at every change (polled every
        ``interval``), until ``timeout`` seconds pass (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while deadline is None or time.monotonic() < deadline:
            status = self.drift_status(model)
            if status != last:
                last = status
                yield status
            time.sleep(interval)

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
            except redis.RedisError as exc:  # an error reply (WRONGTYPE, NOPERM...)
                conn.disconnect()  # the replies after it are unread: never reuse it
                raise self._refused(exc) from exc
            except BaseException:
                conn.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                self._pool.release(conn)
        raise self._unavailable(error) from error

    async def _execute_async(self, commands: list[tuple]) -> list[Any]:
        try:
            return await self._async.execute(commands)
        except ReplyError as exc:  # every reply was read: the connection stays good
            raise self._refused(exc) from exc
        except _CONNECTION_ERRORS:
            pass  # a connection dropped while idle (Redis restarted): one fresh try
        try:
            return await self._async.execute(commands)
        except ReplyError as exc:
            raise self._refused(exc) from exc
        except _CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from exc

    def _refused(self, exc: BaseException) -> OnlineStoreRefused:
        """The same typed error for an error reply on the sync and the asyncio path."""
        return OnlineStoreRefused(
            f"The online store (Redis at {redact(self.redis_url)}) refused the lookup: "
            f"{exc}. Check that only featurestore writes this project's fs:* keys and that "
            "the server's Redis user may read them (HMGET, GET)."
        )

    def _unavailable(self, exc: BaseException | None) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"The online store (Redis at {redact(self.redis_url)}) is unreachable: {exc}. "
            "Lookups fail until it is back; `featurestore dev status` shows local services."
        )

    def close(self) -> None:
        if "serving_log" in self.__dict__:
            self.serving_log.flush()
        self._pool.disconnect()

    async def aclose(self) -> None:
        await self._async.close()
