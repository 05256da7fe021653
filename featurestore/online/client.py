"""Online lookups: in-process, sync and asyncio, one round trip to the online store each.

A lookup is: the catalog's plan (featurestore/online/catalog.py), the entity rows
(entities.py), one command per row and entity set (commands.py), one round trip through
the injected ``OnlineStore`` (store.py; Redis: redis_store.py), and the response
assembled from the replies (response.py). The model's drift summary rides in the same
round trip, at most every ``drift_refresh_seconds``.

This module is on the online read path: no pyspark, pandas or great_expectations.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from featurestore.errors import AuthenticationError, PolicyDeniedError
from featurestore.online.cache import LookupCache, read_through, read_through_async
from featurestore.online.catalog import Catalog
from featurestore.online.commands import build_commands
from featurestore.online.entities import DEFAULT_MAX_ENTITIES, entity_rows
from featurestore.online.layout import drift_detail_key, drift_key
from featurestore.online.on_demand import request_values
from featurestore.online.plan import LookupPlan
from featurestore.online.response import OnlineResponse, assemble
from featurestore.online.serving_log import ServingLog
from featurestore.online.usage import Usage
from featurestore.policy.keys import Credential

if TYPE_CHECKING:
    from featurestore.online.store import OnlineStore

__all__ = ["DEFAULT_MAX_ENTITIES", "Catalog", "OnlineClient", "now_us"]

_loads = orjson.loads
_random = random.random


def now_us() -> int:
    return time.time_ns() // 1000


def _drift_answer(model: str, raw: bytes | None) -> dict[str, Any]:
    if raw:
        return _loads(raw)
    return {
        "model": model,
        "status": "unknown",
        "reason": "not checked yet (run `featurestore drift check` or `drift monitor`)",
    }


class OnlineClient:
    """Lookups against one project's online store.

    ``store`` is the online store to read (``OnlineStore``; the caller owns it and closes
    it: ``close`` here flushes the serving log). ``catalog`` supplies the registry
    snapshot; ``refresh`` (if given) returns a newer Catalog when the registry changed,
    and is called at most every ``refresh_seconds``, never per lookup.

    ``api_key`` identifies the caller: only its model may be asked for, and its model's
    policies decide feature lists too; ``require_key`` refuses lookups without one (the
    HTTP server passes each request's key). Lookups are counted per model, feature and
    decision (``usage()``), not logged one by one.

    ``cache`` (a ``LookupCache``, e.g. ``LookupCache.from_config(config.online_cache)``)
    answers the views and models it names from recent replies, within their staleness
    bounds; the rest of a lookup still goes to the store in one round trip.
    """

    def __init__(
        self,
        store: OnlineStore,
        catalog: Catalog,
        *,
        refresh: Callable[[Catalog], Catalog] | None = None,
        refresh_seconds: float = 1.0,
        max_entities: int = DEFAULT_MAX_ENTITIES,
        clock: Callable[[], int] = now_us,
        api_key: str | None = None,
        require_key: bool = False,
        cache: LookupCache | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
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
        self._failures: dict[str, int] = {}
        self._drift: dict[bytes, tuple[float, dict[str, Any]]] = {}
        self.drift_refresh_seconds = 1.0
        if api_key is not None:
            catalog.authenticate(api_key)  # a bad key fails here, not at the first lookup
        if cache is not None:
            cache.check_names(catalog.snapshot)

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
        plan, rows, commands, requests = self._prepare(
            entities, model, features, full_feature_names, api_key
        )
        n = len(commands)  # the entity rows' commands, before the drift summary's
        fetch = self._drift_fetch(plan, commands)
        replies = read_through(self.cache, plan, commands, n, self.store.read)
        return self._finish(plan, rows, replies, fetch, requests)

    async def get_online_features_async(
        self,
        entities: Any,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        api_key: str | None = None,
    ) -> OnlineResponse:
        plan, rows, commands, requests = self._prepare(
            entities, model, features, full_feature_names, api_key
        )
        n = len(commands)
        fetch = self._drift_fetch(plan, commands)
        replies = await read_through_async(self.cache, plan, commands, n, self.store.read_async)
        return self._finish(plan, rows, replies, fetch, requests)

    def _prepare(
        self,
        entities: Any,
        model: str | None,
        features: Sequence[str] | None,
        full_feature_names: bool,
        api_key: str | None,
    ) -> tuple[LookupPlan, list[dict[str, Any]], list[tuple], dict[str, list[Any]] | None]:
        """The plan, the entity rows, the commands and the request fields (checked against
        their RequestSources): all a lookup does before Redis."""
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
        requests = None
        if plan.on_demand.steps:
            requests = {}
            for step in plan.on_demand.steps:
                requests.update(request_values(step, rows))
        self._usage.add(plan, len(rows))
        return plan, rows, commands, requests

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
        self,
        plan: LookupPlan,
        rows: list[dict[str, Any]],
        replies: list[Any],
        fetched: bool,
        requests: dict[str, list[Any]] | None = None,
    ) -> OnlineResponse:
        now = self._clock()
        if fetched:
            raw = replies.pop()
            summary = _loads(raw) if raw else {"status": "unknown", "reason": "not checked yet"}
            self._drift[plan.drift_key] = (time.monotonic(), summary)
        response = assemble(plan, rows, replies, now, requests)
        if response.errors:
            self._count_failures(plan, response)
        if plan.drift_key:
            response.drift = self._drift[plan.drift_key][1]
        if plan.sample_rate and _random() < plan.sample_rate:
            from featurestore.online.serving_log import encode_entry

            self.serving_log.offer(plan.served_key, encode_entry(plan, rows, response, now))
        return response

    def _count_failures(self, plan: LookupPlan, response: OnlineResponse) -> None:
        failures = self._failures
        for o, messages in (response.errors or {}).items():
            view = plan.refs[o].split(":", 1)[0]
            failures[view] = failures.get(view, 0) + sum(m is not None for m in messages)

    def on_demand_failures(self, *, reset: bool = False) -> dict[str, int]:
        """Failed on-demand values (a function that raised or returned the wrong type),
        by view version, since the client started (or the last ``reset``)."""
        counts = dict(self._failures)
        if reset:
            self._failures.clear()
        return counts

    @cached_property
    def serving_log(self) -> ServingLog:
        return ServingLog(self.store)

    def drift_status(self, model: str, *, detail: bool = False) -> dict[str, Any]:
        """A model's drift status now (one GET): the summary lookups carry, or with
        ``detail`` every feature's statistics from the last check."""
        (raw,) = self.store.read([(b"GET", self._drift_key(model, detail))])
        return _drift_answer(model, raw)

    async def drift_status_async(self, model: str, *, detail: bool = False) -> dict[str, Any]:
        (raw,) = await self.store.read_async([(b"GET", self._drift_key(model, detail))])
        return _drift_answer(model, raw)

    def _drift_key(self, model: str, detail: bool) -> bytes:
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
        return self.store.ping()

    async def ping_async(self) -> bool:
        return await self.store.ping_async()

    def close(self) -> None:
        """Flush the serving log; the store is its owner's to close."""
        if "serving_log" in self.__dict__:
            self.serving_log.flush()

    async def aclose(self) -> None:
        """Close the store's asyncio connection before its event loop ends (the next
        asyncio lookup, on any loop, opens a new one)."""
        await self.store.aclose()
