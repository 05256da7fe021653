"""The feature server: ``featurestore serve``.

``POST /v1/features`` takes the same request as the in-process client and
answers with ``OnlineResponse.to_json()``. The registry is read once at start
and re-read in the background when its serial changes (every
``refresh_seconds``), never per request; if the registry becomes unreachable
the last snapshot keeps serving and ``/readyz`` says so. Redis errors answer
503 and the next request reconnects by itself.

Every lookup needs an API key (``Authorization: Bearer fsk_...`` or ``X-API-Key``),
made with ``featurestore credentials create --model NAME``. The key names the project
and the model: the request may ask for that model's features (``model`` may be left
out) or for a feature list, which that model's policies then decide. Keys are checked
against the snapshot's key ring (a revoked key stops working within
``refresh_seconds``); another project's key is unknown here.

The request body is parsed with orjson rather than pydantic (the models below
only document the API at ``/docs``): on this path validation is the lookup's. The
lookup itself is a bare ASGI endpoint (``LookupEndpoint``) answered ahead of FastAPI's
routing and middleware; every other route is FastAPI's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from featurestore.errors import (
    AccessDeniedError,
    AuthenticationError,
    EntityInputError,
    FeatureStoreError,
    MalformedRequestError,
    RateLimited,
    did_you_mean,
)
from featurestore.online.cache import LookupCache
from featurestore.online.catalog import Catalog
from featurestore.online.client import DEFAULT_MAX_ENTITIES, OnlineClient
from featurestore.online.layout import nested_kind
from featurestore.online.store import OnlineStore
from featurestore.push.pusher import build_pusher
from featurestore.serving import heap, metrics
from featurestore.serving.feast_api import FEAST_PATHS, add_feast_routes
from featurestore.serving.guard import ERROR_KEY, Guard, answer_failure, count_error
from featurestore.serving.limits import Gate, Limiter, ServingLimits, entity_rows
from featurestore.serving.push_route import FeastPushes, add_push_route
from featurestore.serving.request_io import api_key_of, check_fields, read_body
from featurestore.serving.schemas import (
    ErrorResponse,
    FeaturesRequest,
    FeaturesResponse,
    json_schema,
)
from featurestore.store import FeatureStore
from featurestore.urls import redact, redact_logs

log = logging.getLogger("featurestore.serve")

REQUEST_KEYS = ("model", "features", "entities", "full_feature_names")
DEFAULT_MAX_BODY_BYTES = 1 << 20


class Server:
    """State shared by the routes of one worker: the repo, its online store, the client."""

    def __init__(
        self,
        store: FeatureStore,
        online: OnlineStore,
        *,
        max_entities: int,
        max_body_bytes: int,
        refresh_seconds: float,
        limits: ServingLimits,
    ) -> None:
        self.store = store
        self.online = online
        self.client = OnlineClient(
            online,
            store.catalog(),
            refresh=None,
            max_entities=max_entities,
            require_key=True,
            cache=LookupCache.from_config(store.config.online_cache),
        )
        self.max_body_bytes = max_body_bytes
        self.pusher = build_pusher(store, lambda: self.client.catalog.snapshot, online=online)
        self.refresh_seconds = refresh_seconds
        self.registry_error: str | None = None
        self.drift_poll_seconds = 0.5
        metrics.REGISTRY_SERIAL.set(self.client.catalog.serial)
        heap.settle()
        self.limiter = None if limits.off else Limiter(limits, store.project)
        self.cache_stats = metrics.CacheStats()
        self.plan_stats = metrics.PlanStats()
        known = self.client.catalog.snapshot.active("model")
        for name in limits.models:
            if name not in known:  # a typo would otherwise leave the model unlimited
                log.warning(
                    "serving.limits.models.%s: no model '%s' in project '%s' (yet).%s",
                    name,
                    name,
                    store.project,
                    did_you_mean(name, known),
                )

    def record_metrics(self) -> None:
        """Move the counts kept in plain numbers (usage, lookups, the cache) into metrics."""
        metrics.record_usage(self.client.usage(reset=True))
        metrics.record_on_demand_failures(self.client.on_demand_failures(reset=True))
        metrics.LOOKUP_STATS.flush()
        self.plan_stats.record(self.client.catalog)
        if self.client.cache is not None:
            self.cache_stats.record(self.client.cache.stats())

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self.refresh()
            self.record_metrics()

    def reloaded(self, catalog: Catalog) -> Catalog:
        """``catalog``, or a new one if the registry changed (runs in a worker thread: the
        old catalog serves meanwhile)."""
        new = self.store.refreshed(catalog)
        if new is not catalog:
            heap.settle()
        return new

    async def refresh(self) -> None:
        try:
            catalog = await asyncio.to_thread(self.reloaded, self.client.catalog)
        except Exception as exc:  # keep serving the last good snapshot
            if self.registry_error is None:
                log.warning("registry refresh failed, serving the last snapshot: %s", exc)
            self.registry_error = redact(str(exc))
            metrics.REGISTRY_REFRESH_ERRORS.inc()
            return
        self.registry_error = None
        if catalog is not self.client.catalog:
            log.info(
                "registry changed: serial %s -> %s (%s lookup plans kept)",
                self.client.catalog.serial,
                catalog.serial,
                catalog.stats()["carried"],
            )
            self.plan_stats.record(self.client.catalog)  # the old catalog's last compiles
            self.client.catalog = catalog
            metrics.REGISTRY_SERIAL.set(catalog.serial)


class FeatureServerApp(FastAPI):
    """FastAPI, with POST /v1/features handed to ``lookup`` (and Feast's POST
    /get-online-features to ``feast_lookup``) before routing and middleware (every other
    path, /docs included, goes through FastAPI as usual)."""

    lookup: ASGIApp | None = None
    feast_lookup: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == "/v1/features" and self.lookup is not None:
                await self.lookup(scope, receive, send)
                return
            if path == "/get-online-features" and self.feast_lookup is not None:
                await self.feast_lookup(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    repo_path: str | os.PathLike[str] = ".",
    *,
    store: OnlineStore | None = None,
    feature_store: FeatureStore | None = None,
    max_entities: int = DEFAULT_MAX_ENTITIES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    refresh_seconds: float = 1.0,
    limits: ServingLimits | None = None,
    ui: bool = False,
) -> FastAPI:
    """The feature server of the repo at ``repo_path`` (or ``feature_store``), reading
    ``store`` (default: the repo's online store, from its config), within ``limits``
    (default: the repo's ``serving.limits``), with the web UI at ``/ui`` when ``ui``. What
    is passed in is the caller's to close; what is built here closes with the app.

    The routes close over this app's ``Server`` rather than ask for it as a FastAPI
    dependency: a dependency costs /v1/features about 35 us a request (measured, ~10%)."""
    repo = feature_store if feature_store is not None else FeatureStore(repo_path)
    online = store if store is not None else repo.online_store
    server = Server(
        repo,
        online,
        max_entities=max_entities,
        max_body_bytes=max_body_bytes,
        refresh_seconds=refresh_seconds,
        limits=repo.config.serving_limits if limits is None else limits,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(server.refresh_forever())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.to_thread(server.pusher.close)  # buffered pushes land first
            await server.client.aclose()
            if feature_store is None:
                repo.close()  # closes the online store it built, not one passed in

    app = FeatureServerApp(
        title="featurestore",
        summary="Online feature lookups for models, one Redis round trip each.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.server = server
    app.add_middleware(Guard)

    @app.exception_handler(FeatureStoreError)
    async def feature_store_error(request: Request, exc: FeatureStoreError) -> Response:
        return _response(_feature_store_error(request.scope, exc))

    # In this order: the OpenAPI schema (docs/openapi.json) lists them so.
    add_lookup_route(app, server)
    add_push_route(app, server, server.pusher)
    add_drift_routes(app, server)
    add_health_routes(app, server)
    add_feast_routes(app, server, push=FeastPushes(server, server.pusher))
    if ui:  # read-only pages behind an operator's key; not in the API's schema
        from featurestore.ui.app import PREFIX, create_ui

        app.mount(PREFIX, create_ui(repo, refresh_seconds=refresh_seconds))
    app.openapi = lambda: openapi_with_keys(app)  # type: ignore[method-assign]
    return app


FEATURES_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": FeaturesResponse},
    400: {
        "model": ErrorResponse,
        "description": "Body is not a JSON object, or nests a list or object where "
        "a scalar belongs",
    },
    401: {"model": ErrorResponse, "description": "No, unknown, revoked or expired key"},
    403: {"model": ErrorResponse, "description": "Another model, or denied by policy"},
    404: {"model": ErrorResponse, "description": "Unknown model, feature or version"},
    413: {"model": ErrorResponse, "description": "Too many entity rows or bytes"},
    422: {"model": ErrorResponse, "description": "Bad entity keys or request fields"},
    408: {"model": ErrorResponse, "description": "Body not received in time"},
    429: {
        "model": ErrorResponse,
        "description": "Past the model's or project's limit (serving.limits): "
        "Retry-After says when to retry",
    },
    500: {
        "model": ErrorResponse,
        "description": "Unexpected failure: the body and X-Request-ID carry the id "
        "it is logged under",
    },
    503: {
        "model": ErrorResponse,
        "description": "Redis unreachable or refusing, or too many connections",
    },
}


def add_lookup_route(app: FeatureServerApp, server: Server) -> None:
    """POST /v1/features: the lookup. ``LookupEndpoint`` answers it ahead of FastAPI's
    routing; the route registered here documents it at /docs and answers the same way
    should a request reach FastAPI after all."""
    endpoint = app.lookup = LookupEndpoint(server)

    @app.post(
        "/v1/features",
        summary="Look up features for entity rows",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": json_schema(FeaturesRequest)}},
            }
        },
        responses=FEATURES_RESPONSES,
    )
    async def get_features(request: Request) -> Response:
        return _response(await endpoint.answer(request.scope, request.receive))  # Guard counts


class LookupEndpoint:
    """POST /v1/features as a bare ASGI app: no routing, dependency resolution, request
    object or middleware stack (together about 80 us of a ~260 us request, measured).
    It keeps what they gave: errors named and counted, a JSON 500 with a request id on
    an unexpected failure, a client that left answered with nothing."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, headers, body = await self.answer(scope, receive)
        except ClientDisconnect:
            return  # the client left (or was cut off for reading too slowly)
        except Exception:
            await answer_failure(scope, send)
            count_error(scope, 500)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if status >= 400:
            count_error(scope, status)

    async def answer(self, scope: Scope, receive: Receive) -> Answer:
        """(status, headers, body) of a lookup; typed errors as their JSON answer."""
        start = time.perf_counter()
        try:
            api_key = api_key_of(scope["headers"])
            caller = self.server.client.catalog.authenticate(api_key)  # before reading the body
            limiter = self.server.limiter
            if limiter is None:
                return await self.lookup(scope, receive, api_key, caller.model, start, None)
            gate = limiter.gate(caller.model)
            with gate:  # a slot until the request ends, however it ends
                return await self.lookup(scope, receive, api_key, caller.model, start, gate)
        except RateLimited as exc:
            return _limited(scope, exc)
        except FeatureStoreError as exc:
            return _feature_store_error(scope, exc)

    async def lookup(
        self,
        scope: Scope,
        receive: Receive,
        api_key: str,
        label: str,
        start: float,
        gate: Gate | None,
    ) -> Answer:
        """An authenticated caller's lookup: the body, its fields, its limits, Redis, the
        answer."""
        server = self.server
        body = await read_body(receive, server.max_body_bytes)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(scope, 400, "InvalidJSON", _invalid_json(exc))
        if not isinstance(payload, dict):
            return _error(scope, 400, "InvalidJSON", "The request body must be a JSON object.")
        model, features, full = request_fields(payload)
        if gate is not None:
            rows = entity_rows(payload["entities"])
            if rows <= server.client.max_entities:  # (more: 413 from the lookup)
                gate.charge(rows)  # before Redis is read
        response = await server.client.get_online_features_async(
            payload["entities"],
            model=model,
            features=features,
            full_feature_names=full,
            api_key=api_key,
        )
        content = response.to_json()
        metrics.LOOKUP_STATS.record(label, len(response), time.perf_counter() - start)
        return 200, _json_headers(content), content


def request_fields(
    payload: dict[str, Any],
) -> tuple[str | None, list[str] | None, bool]:
    """(model, features, full_feature_names) of a lookup request, checked: every field
    known, ``entities`` present, each field of the type it must have."""
    check_fields(payload, REQUEST_KEYS)
    if "entities" not in payload:
        raise EntityInputError('The request has no "entities".')
    model = payload.get("model")
    features = payload.get("features")
    if model is not None and not isinstance(model, str):
        raise _not_a('"model"', model, "a string (a model name)")
    if features is not None and (
        not isinstance(features, list) or not all(isinstance(f, str) for f in features)
    ):
        if not isinstance(features, list):
            raise _not_a('"features"', features, "a list of strings")
        i, bad = next((i, f) for i, f in enumerate(features) if not isinstance(f, str))
        raise _not_a(
            f'"features" item {i}',
            bad,
            'a string (a reference "view:feature" or a service)',
        )
    full = payload.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise EntityInputError('"full_feature_names" must be true or false.')
    return model, features, full


def add_drift_routes(app: FastAPI, server: Server) -> None:
    """GET /v1/drift/{model} and its server-sent events."""

    def _drift_caller(request: Request, model: str) -> None:
        caller = server.client.catalog.authenticate(api_key_of(request.scope["headers"]))
        if caller.model != model:
            raise AccessDeniedError(
                f"API key {caller.label} belongs to model '{caller.model}'; it may not read "
                f"model '{model}'s drift status."
            )

    @app.get(
        "/v1/drift/{model}",
        summary="A model's drift status from its last check, with every feature's statistics",
        responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
    )
    async def drift_detail(model: str, request: Request) -> Response:
        _drift_caller(request, model)
        detail = await server.client.drift_status_async(model, detail=True)
        return Response(orjson.dumps(detail), media_type="application/json")

    @app.get(
        "/v1/drift/{model}/events",
        summary="Server-sent events: the model's drift summary now and at every change",
        responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
    )
    async def drift_events(model: str, request: Request) -> StreamingResponse:
        _drift_caller(request, model)
        await server.client.drift_status_async(model)  # errors before the stream starts

        async def events() -> AsyncIterator[bytes]:
            last = None
            quiet = 0.0
            while not await request.is_disconnected():
                status = await server.client.drift_status_async(model)
                if status != last:
                    last, quiet = status, 0.0
                    yield b"event: drift\ndata: " + orjson.dumps(status) + b"\n\n"
                elif quiet >= 15:
                    quiet = 0.0
                    yield b": keep-alive\n\n"  # proxies close idle streams
                await asyncio.sleep(server.drift_poll_seconds)
                quiet += server.drift_poll_seconds

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def add_health_routes(app: FastAPI, server: Server) -> None:
    """/healthz, /readyz and /metrics (no key needed)."""

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", summary="Redis and the registry are reachable")
    async def readyz(request: Request) -> Response:
        redis_ok = await server.client.ping_async()
        try:
            await asyncio.to_thread(server.store.registry.serial, server.store.project)
            registry_error = None
        except Exception as exc:
            registry_error = redact(str(exc))
        ready = redis_ok and registry_error is None
        if not ready:
            request.scope[ERROR_KEY] = "NotReady"
        body = {
            "status": "ready" if ready else "not ready",
            "redis": "ok" if redis_ok else f"unreachable ({server.online.label})",
            "registry": "ok" if registry_error is None else registry_error,
            "registry_serial": server.client.catalog.serial,
        }
        return Response(orjson.dumps(body), 200 if ready else 503, media_type="application/json")

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        server.record_metrics()
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)


def openapi_with_keys(app: FastAPI) -> dict[str, Any]:
    """The generated schema, with the API key the /v1 and Feast routes require declared."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "fsk_... key",
            },
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/") or path in FEAST_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
        app.openapi_schema = schema
    return app.openapi_schema


def _invalid_json(exc: orjson.JSONDecodeError) -> str:
    if "depth" in str(exc):  # orjson stops at 1,024 levels, without recursing
        return (
            "The request body is nested deeper than JSON parsing allows (1,024 "
            "levels); a request nests 3: entity values are scalars."
        )
    return f"The request body is not valid JSON: {exc}."


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]


def _error(scope: Scope, status: int, name: str, detail: str) -> Answer:
    scope[ERROR_KEY] = name  # counted once the answer is sent
    body = orjson.dumps({"error": name, "detail": redact(detail)})  # whatever the message quotes
    return status, _json_headers(body), body


def _feature_store_error(scope: Scope, exc: FeatureStoreError) -> Answer:
    status, headers, body = _error(scope, exc.http_status, type(exc).__name__, str(exc))
    if isinstance(exc, AuthenticationError):
        headers.append((b"www-authenticate", b'Bearer realm="featurestore"'))
    return status, headers, body


def _response(answer: Answer) -> Response:
    status, headers, body = answer
    return Response(body, status, headers={k.decode(): v.decode() for k, v in headers})


def _limited(scope: Scope, exc: RateLimited) -> Answer:
    metrics.REJECTED.labels(exc.model, exc.scope, exc.limit).inc()
    status, headers, body = _error(scope, 429, "RateLimited", str(exc))
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    return status, headers, body


def _not_a(field: str, value: Any, wanted: str) -> EntityInputError:
    """A request field of the wrong type: 400 for a list or object (never looked into),
    422 for a scalar of the wrong type."""
    kind = nested_kind(value)
    if kind is not None:
        return MalformedRequestError(f"{field} is a {kind}; it must be {wanted}.")
    return EntityInputError(f"{field} must be {wanted}.")


def _version() -> str:
    from featurestore import __version__

    return __version__


def app_from_env() -> FastAPI:
    """The factory ``featurestore serve`` gives each uvicorn worker."""
    redact_logs()
    return create_app(
        Path(os.environ.get("FEATURESTORE_REPO", ".")),
        max_entities=int(os.environ.get("FEATURESTORE_MAX_ENTITIES", DEFAULT_MAX_ENTITIES)),
        max_body_bytes=int(os.environ.get("FEATURESTORE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
        refresh_seconds=float(os.environ.get("FEATURESTORE_REFRESH_SECONDS", "1.0")),
        ui=os.environ.get("FEATURESTORE_UI") == "1",
    )
