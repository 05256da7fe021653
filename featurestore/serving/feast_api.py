"""Feast 0.67 feature server's HTTP API on ``featurestore serve``: ``POST
/get-online-features`` and ``POST /push``, with Feast's request and response JSON, so a
service that calls ``feast serve`` switches by changing its URL and adding the API key
header (``Authorization: Bearer fsk_...`` or ``X-API-Key``, as on /v1).

A lookup is the /v1 lookup (same key, the key's model's policies, limits, one Redis round
trip) asked for Feast's references (``view:feature``) or a feature service, answered in
Feast's shape (feast_format.py). Errors are Feast's error detail with our messages; input
Feast's validation refuses with 422 (bad JSON, wrong types, missing fields) is a 422 here
too, and what Feast answers with a 500 (an unknown feature, a missing join key, a key
value of the wrong type) is the 404 or 422 it means.

Request fields Feast does not know are refused, naming the closest known one: Feast
ignores them, which turns a typo (``feature``) into "no features".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from featurestore.errors import (
    AuthenticationError,
    EntityInputError,
    FeatureStoreError,
    ObjectNotFound,
    RateLimited,
)
from featurestore.references import is_feature_reference
from featurestore.serving import metrics
from featurestore.serving.feast_format import detail_body, error_body, response_body
from featurestore.serving.feast_push import (
    PushSourceNotFound,
    PushTarget,
    parse_push,
    push_rows,
    push_views,
    wrong_type,
)
from featurestore.serving.guard import ERROR_KEY, count_error, request_id_of
from featurestore.serving.limits import Gate, entity_rows
from featurestore.serving.request_io import api_key_of, check_fields, read_body

if TYPE_CHECKING:
    from featurestore.online.response import OnlineResponse
    from featurestore.serving.app import Server

__all__ = ["FEAST_PATHS", "LOOKUP_KEYS", "FeastLookup", "add_feast_routes", "parse_lookup"]

log = logging.getLogger("featurestore.serve")

FEAST_PATHS = ("/get-online-features", "/push")

LOOKUP_KEYS = (
    "entities",
    "features",
    "feature_service",
    "full_feature_names",
    "include_feature_view_version_metadata",
)


class FeatureServiceNotFound(ObjectNotFound):
    """The ``feature_service`` a Feast lookup names is not in the registry."""


class PushNotAvailable(FeatureStoreError, NotImplementedError):
    """This server has no push API wired in (501)."""

    http_status = 501


# Feast's classes for errors a Feast client can tell apart (its REST client raises them).
_FEAST_CLASSES: dict[type[FeatureStoreError], tuple[str, str]] = {
    FeatureServiceNotFound: ("feast.errors", "FeatureServiceNotFoundException"),
    PushSourceNotFound: ("feast.errors", "PushSourceNotFoundException"),
}


class FeastLookup:
    """A checked Feast lookup request."""

    __slots__ = ("entities", "features", "full_feature_names", "service", "version_metadata")

    def __init__(
        self,
        entities: dict[str, list[Any]],
        features: list[str],
        service: str | None,
        full_feature_names: bool,
        version_metadata: bool,
    ) -> None:
        self.entities = entities
        self.features = features
        self.service = service
        self.full_feature_names = full_feature_names
        self.version_metadata = version_metadata


def parse_lookup(payload: Any) -> FeastLookup:
    """Feast's ``GetOnlineFeaturesRequest``, checked field by field."""
    if not isinstance(payload, dict):
        raise EntityInputError(
            'The request body must be a JSON object: {"features": [...] or '
            '"feature_service": "...", "entities": {"join_key": [values]}}.'
        )
    check_fields(payload, LOOKUP_KEYS)
    if "entities" not in payload:
        raise EntityInputError('The request has no "entities" ({"join_key": [values]}).')
    entities = payload["entities"]
    if not isinstance(entities, dict):
        raise wrong_type('"entities"', entities, 'an object of join keys to lists, {"id": [1]}')
    features = payload.get("features", [])
    if not isinstance(features, list):
        raise wrong_type('"features"', features, 'a list of references "view:feature"')
    for i, ref in enumerate(features):
        if not isinstance(ref, str):
            raise wrong_type(f'"features" item {i}', ref, 'a string "view:feature"')
        if not is_feature_reference(ref):
            raise EntityInputError(
                f'"features" item {i} ({ref!r}) is not a reference "view:feature" (or '
                '"view@vN:feature"); name a feature service in "feature_service".'
            )
    service = payload.get("feature_service")
    if service is not None and (not isinstance(service, str) or not service):
        raise wrong_type('"feature_service"', service, "a feature service's name")
    if service is not None and features:
        raise EntityInputError(
            'Give "features" or "feature_service", not both (Feast would ignore "features").'
        )
    if service is None and not features:
        raise EntityInputError(
            'No features asked for: give "features": ["view:feature", ...] or '
            '"feature_service": "name".'
        )
    flags = []
    for flag in ("full_feature_names", "include_feature_view_version_metadata"):
        value = payload.get(flag, False)
        if not isinstance(value, bool):
            raise wrong_type(f'"{flag}"', value, "true or false")
        flags.append(value)
    return FeastLookup(entities, features, service, flags[0], flags[1])


Answer = tuple[int, dict[str, str], bytes]


def _json(status: int, body: bytes) -> Answer:
    return status, {"content-type": "application/json"}, body


class FeastLookupEndpoint:
    """POST /get-online-features as a bare ASGI app, answered ahead of FastAPI's routing
    and middleware as /v1/features is (the route cost about 0.13 ms a lookup more,
    measured); it keeps what they give: errors counted, a 500 with a request id."""

    def __init__(self, routes: FeastRoutes) -> None:
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, headers, body = await self.routes.lookup(scope, receive)
        except ClientDisconnect:
            return  # the client left (or was cut off for reading too slowly)
        except Exception:
            status, headers, body = _failure(scope)
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
        if status >= 400:
            count_error(scope, status)


def _failure(scope: Scope) -> Answer:
    """After an unexpected exception (call from an ``except`` block): its traceback logged
    under a request id, and a 500 in Feast's shape naming that id."""
    request_id = request_id_of(scope)
    log.exception("request %s: %s %s failed", request_id, scope.get("method"), scope.get("path"))
    scope[ERROR_KEY] = "InternalServerError"
    body = detail_body(
        "featurestore.errors",
        "InternalServerError",
        f"The server failed on this request (request id {request_id}); its log has the "
        "error under that id. Retrying may not help: report the id.",
    )
    return 500, {"content-type": "application/json", "x-request-id": request_id}, body


def _error(scope: Scope, exc: FeatureStoreError) -> Answer:
    scope[ERROR_KEY] = type(exc).__name__  # counted once the answer is sent
    status, headers, body = _json(
        exc.http_status,
        error_body(exc, feast_class=_FEAST_CLASSES.get(type(exc))),
    )
    if isinstance(exc, AuthenticationError):
        headers["www-authenticate"] = 'Bearer realm="featurestore"'
    if isinstance(exc, RateLimited):
        metrics.REJECTED.labels(exc.model, exc.scope, exc.limit).inc()
        if exc.retry_after is not None:
            headers["retry-after"] = str(exc.retry_after)
    return status, headers, body


def _payload(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EntityInputError(f"The request body is not valid JSON: {exc}.") from None


class FeastRoutes:
    """The two routes' logic over one worker's ``Server``; ``push`` writes pushed rows
    (None: /push answers 501 after checking the request)."""

    def __init__(self, server: Server, push: PushTarget | None) -> None:
        self.server = server
        self.push_target = push

    async def lookup(self, scope: Scope, receive: Receive) -> Answer:
        start = time.perf_counter()
        try:
            key = api_key_of(scope["headers"])
            caller = self.server.client.catalog.authenticate(key)  # before reading the body
            limiter = self.server.limiter
            gate = limiter.gate(caller.model) if limiter is not None else None
            with gate if gate is not None else contextlib.nullcontext():
                response, ask = await self._lookup(receive, key, gate)
        except FeatureStoreError as exc:
            return _error(scope, exc)
        body = response_body(response, list(ask.entities), version_metadata=ask.version_metadata)
        metrics.LOOKUP_STATS.record(caller.model, len(response), time.perf_counter() - start)
        return _json(200, body)

    async def _lookup(
        self, receive: Receive, key: str, gate: Gate | None
    ) -> tuple[OnlineResponse, FeastLookup]:
        server = self.server
        ask = parse_lookup(_payload(await read_body(receive, server.max_body_bytes)))
        if gate is not None:
            rows = entity_rows(ask.entities)
            if rows <= server.client.max_entities:  # (more: 413 from the lookup)
                gate.charge(rows)  # before Redis is read
        if ask.service is not None:
            try:
                server.client.catalog.snapshot.feature_service(ask.service)
            except ObjectNotFound as exc:
                raise FeatureServiceNotFound(str(exc)) from None
        response = await server.client.get_online_features_async(
            ask.entities,
            features=[ask.service] if ask.service is not None else ask.features,
            full_feature_names=ask.full_feature_names,
            api_key=key,
        )
        return response, ask

    async def push(self, scope: Scope, receive: Receive) -> Answer:
        target = self.push_target
        try:
            key = api_key_of(scope["headers"])
            if target is None:
                self.server.client.catalog.authenticate(key)  # a live key, at least
            else:
                target.authenticate(key)  # before the body is read or a name resolved
            ask = parse_push(_payload(await read_body(receive, self.server.max_body_bytes)))
            snapshot = self.server.client.catalog.snapshot
            views = push_views(snapshot, ask.push_source_name)
            batches = [(view, push_rows(snapshot, view, ask.columns)) for view in views]
            if target is None:
                # TODO(push): create_app passes FeatureStore.push behind push keys at merge.
                raise PushNotAvailable(
                    f"POST /push is not served by this server yet (push source "
                    f"'{ask.push_source_name}' feeds {', '.join(views)}): nothing was written. "
                    "Write online features in-process with FeatureStore.write_online."
                )
            complete = await asyncio.to_thread(target.push, batches, to=ask.to, api_key=key)
        except FeatureStoreError as exc:
            return _error(scope, exc)
        return 200 if complete else 202, {}, b""


LOOKUP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["entities"],
    "properties": {
        "features": {"type": "array", "items": {"type": "string"}, "example": ["view:feature"]},
        "feature_service": {"type": "string"},
        "entities": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {}},
            "example": {"user_id": [1, 2]},
        },
        "full_feature_names": {"type": "boolean", "default": False},
        "include_feature_view_version_metadata": {"type": "boolean", "default": False},
    },
    "additionalProperties": False,
}
PUSH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["push_source_name", "df"],
    "properties": {
        "push_source_name": {"type": "string"},
        "df": {"type": "object", "additionalProperties": {"type": "array", "items": {}}},
        "to": {"enum": ["online", "offline", "online_and_offline"], "default": "online"},
        "allow_registry_cache": {"type": "boolean", "default": True},
        "transform_on_write": {"type": "boolean", "default": True},
    },
    "additionalProperties": False,
}
_FEAST_ERROR = {
    "description": 'Feast\'s error detail: a JSON string of {"module", "class", "message"}',
    "content": {"application/json": {"schema": {"type": "string"}}},
}


def add_feast_routes(app: FastAPI, server: Server, push: PushTarget | None = None) -> None:
    """Register Feast's /get-online-features and /push on ``app`` (and the lookup's bare
    ASGI endpoint as ``app.feast_lookup``, which a ``FeatureServerApp`` answers first; the
    route documents it and answers should a request reach FastAPI)."""
    routes = FeastRoutes(server, push)
    app.feast_lookup = FeastLookupEndpoint(routes)  # type: ignore[attr-defined]

    def respond(answer: Answer) -> Response:
        status, headers, body = answer
        return Response(body, status, headers=headers)

    @app.post(
        "/get-online-features",
        summary="Feast-compatible lookup (Feast 0.67's request and response)",
        tags=["feast"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": LOOKUP_SCHEMA}},
            }
        },
        responses={status: _FEAST_ERROR for status in (401, 403, 404, 413, 422, 429, 503)},
    )
    async def get_online_features(request: Request) -> Response:
        return respond(await routes.lookup(request.scope, request.receive))

    @app.post(
        "/push",
        summary="Feast-compatible push (Feast 0.67's request)",
        tags=["feast"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PUSH_SCHEMA}},
            }
        },
        responses={
            202: {"description": "Written online; the offline rows land within seconds"},
            **{status: _FEAST_ERROR for status in (401, 403, 413, 422, 501)},
        },
    )
    async def push_features(request: Request) -> Response:
        return respond(await routes.push(request.scope, request.receive))
