"""``POST /v1/push``: a service writes rows it computed, with a push-only key.

The key is checked before the body is read (401 without a live key); the body is read
within the server's body limit (413 past it) and parsed with orjson (400 if it is not a
JSON object); then the key must be a push key for the view (403: a model's key never
pushes, a push key only its own views; the denial is audited). The push itself is
``Pusher.push`` (all or nothing): 200 with counts, or 422 listing each bad row as
``{"row": index, "field": name or null, "reason": ...}``. It runs in a worker thread:
a push of many rows, or one that lands a full offline buffer, does not hold up the
event loop's other requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from featurestore.errors import AccessDeniedError, EntityInputError, PushRejected
from featurestore.serving import metrics
from featurestore.serving.guard import ERROR_KEY
from featurestore.serving.request_io import api_key_of, check_fields, read_body
from featurestore.serving.schemas import ErrorResponse, json_schema
from featurestore.urls import redact

if TYPE_CHECKING:
    from featurestore.push import Pusher

PUSH_KEYS = ("view", "rows", "to", "version")


class PushRequest(BaseModel):
    """Rows for one feature view; ``to`` is online (default), offline or both."""

    view: str = Field(..., examples=["transaction_risk"])
    rows: list[dict[str, Any]] | dict[str, list[Any]] = Field(
        ...,
        description="Rows ({field: value}) or columns ({field: [values]}): the view's join "
        "keys, event_timestamp (ISO-8601, no zone: UTC; or epoch seconds), optionally "
        "created_timestamp, and features (a missing feature is null).",
        examples=[[{"user_id": 1001, "event_timestamp": "2026-12-02T07:00:00Z", "risk": 0.2}]],
    )
    to: str = Field("online", description="online | offline | online_and_offline")
    version: int | None = Field(None, description="A pinned view version (default: latest)")


class PushOnline(BaseModel):
    written: int = Field(description="Rows that became the online value")
    skipped_older: int = Field(description="Rows older than the stored value: not written")
    skipped_expired: int = Field(description="Rows past the view's TTL on arrival")


class PushOffline(BaseModel):
    buffered: int = Field(description="Rows buffered, landed within seconds (docs/operations.md)")


class PushResponse(BaseModel):
    view: str
    version: int
    to: str
    rows: int
    online: PushOnline
    offline: PushOffline


class PushRowError(BaseModel):
    row: int = Field(description="The row's index in the request")
    field: str | None = Field(description="The field at fault (null: the whole row)")
    reason: str


class PushRejectedResponse(ErrorResponse):
    rows: int = Field(description="Rows in the request (none was written)")
    errors: list[PushRowError] = Field(description="Each bad row (the first 100)")


PUSH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PushResponse},
    400: {"model": ErrorResponse, "description": "Body is not a JSON object"},
    401: {"model": ErrorResponse, "description": "No, unknown, revoked or expired key"},
    403: {
        "model": ErrorResponse,
        "description": "A model's key (lookup keys cannot push), or a push key of other views",
    },
    404: {"model": ErrorResponse, "description": "Unknown view or version"},
    413: {"model": ErrorResponse, "description": "Body past the server's limit, or too many rows"},
    422: {
        "model": PushRejectedResponse,
        "description": "Bad rows, each named (nothing written), or a bad request field",
    },
    503: {
        "model": ErrorResponse,
        "description": "Redis unreachable or refusing, or the offline spool not writable",
    },
}


def add_push_route(app: FastAPI, server: Any, pusher: Pusher) -> None:
    """POST /v1/push on ``server`` (the app's Server: its catalog's keys, body limit)."""

    @app.post(
        "/v1/push",
        summary="Push rows a service computed to a feature view (push-only keys)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": json_schema(PushRequest)}},
            }
        },
        responses=PUSH_RESPONSES,
    )
    async def push(request: Request) -> Response:
        key = api_key_of(request.scope["headers"])
        keys = server.client.catalog.keys
        keys.live(key, datetime.now(UTC))  # 401 before the body is read
        body = await read_body(request.receive, server.max_body_bytes)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _answer(request, 400, {"error": "InvalidJSON", "detail": f"{exc}"})
        if not isinstance(payload, dict):
            return _answer(
                request,
                400,
                {"error": "InvalidJSON", "detail": "The request body must be a JSON object."},
            )
        view, rows, to, version = push_fields(payload)
        try:
            credential = keys.authenticate_push(key, view, datetime.now(UTC))
        except AccessDeniedError as exc:
            pusher.on_decision(
                {
                    "action": "push",
                    "subject": view,
                    "decision": "deny",
                    "detail": {"at": "online", "key": _label(keys, key), "message": str(exc)},
                }
            )
            raise
        try:
            result = await asyncio.to_thread(
                pusher.push, view, rows, to, version=version, credential=credential
            )
        except PushRejected as exc:
            return _answer(
                request,
                422,
                {
                    "error": "PushRejected",
                    "detail": redact(str(exc)),
                    "rows": exc.rows,
                    "errors": exc.errors,
                },
            )
        metrics.PUSHED_ROWS.labels(result.view, result.to).inc(result.rows)
        return Response(orjson.dumps(result.to_json()), media_type="application/json")


def push_fields(payload: dict[str, Any]) -> tuple[str, Any, str, int | None]:
    """(view, rows, to, version) of a push request, each of the type it must have."""
    check_fields(payload, PUSH_KEYS, "push request")
    view = payload.get("view")
    if not isinstance(view, str):
        raise EntityInputError('The push request needs "view": a feature view\'s name.')
    if "rows" not in payload:
        raise EntityInputError('The push request has no "rows".')
    to = payload.get("to", "online")
    if not isinstance(to, str):
        raise EntityInputError('"to" must be "online", "offline" or "online_and_offline".')
    version = payload.get("version")
    if version is not None and type(version) is not int:
        raise EntityInputError('"version" must be an integer (a view version) or absent.')
    return view, payload["rows"], to, version


def _label(keys: Any, key: str) -> str | None:
    from featurestore.policy.keys import parse_key

    try:
        found = keys.credential(parse_key(key)[0])
    except Exception:
        return None
    return found.label if found is not None else None


def _answer(request: Request, status: int, body: dict[str, Any]) -> Response:
    request.scope[ERROR_KEY] = body["error"]  # counted by the Guard once sent
    return Response(orjson.dumps(body), status, media_type="application/json")


class FeastPushes:
    """The push API as Feast's ``POST /push`` needs it (``feast_push.PushTarget``): a push
    to a Feast push source writes every view it feeds, all or nothing: each view's rows
    and the key's right to write it are checked before any is written."""

    def __init__(self, server: Any, pusher: Pusher) -> None:
        self.server = server
        self.pusher = pusher

    def authenticate(self, api_key: str) -> None:
        self.server.client.catalog.keys.live(api_key, datetime.now(UTC))

    def push(
        self, batches: Sequence[tuple[str, list[dict[str, Any]]]], *, to: str, api_key: str
    ) -> bool:
        keys = self.server.client.catalog.keys
        now = datetime.now(UTC)
        credentials = []
        for view, _rows in batches:
            try:
                credentials.append(keys.authenticate_push(api_key, view, now))
            except AccessDeniedError as exc:
                self.pusher.on_decision(
                    {
                        "action": "push",
                        "subject": view,
                        "decision": "deny",
                        "detail": {
                            "at": "online",
                            "key": _label(keys, api_key),
                            "message": str(exc),
                        },
                    }
                )
                raise
        checked = [self.pusher.check(view, rows, to) for view, rows in batches]
        for push, credential in zip(checked, credentials, strict=True):
            result = self.pusher.write(push, credential=credential)
            metrics.PUSHED_ROWS.labels(result.view, result.to).inc(result.rows)
        return True  # offline rows are spooled before this answers: accepted, as Feast's 200
