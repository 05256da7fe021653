"""The feature server's outermost layer: every error status counted, and a failure nobody
expected answered as a JSON 500 with a request id (the traceback stays in the log).

A pure ASGI middleware (no per-request task or body copy): it only watches the status
a response starts with. Routes name their error in ``scope[ERROR_KEY]``; other statuses
(404 from routing, 500 from here) are named after their reason phrase.
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featurestore.serving import metrics

log = logging.getLogger("featurestore.serve")

ERROR_KEY = "featurestore.error"
# A caller's X-Request-ID is kept when it is safe to log and to send back.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:
            return  # the client left (or was cut off for reading too slowly): no one to answer
        except Exception:
            started, status = bool(status), 500
            await answer_failure(scope, send, started=started)
        if status >= 400:
            count_error(scope, status)


async def answer_failure(scope: Scope, send: Send, *, started: bool = False) -> None:
    """After an unexpected exception: its traceback logged under a request id, and a JSON
    500 naming that id (unless the response had started: the server closes it unfinished).
    Call from an ``except`` block."""
    request_id = request_id_of(scope)
    log.exception("request %s: %s %s failed", request_id, scope.get("method"), scope.get("path"))
    scope[ERROR_KEY] = "InternalServerError"
    if not started:
        await send_error(
            send,
            500,
            "InternalServerError",
            f"The server failed on this request (request id {request_id}); its log "
            "has the error under that id. Retrying may not help: report the id.",
            request_id=request_id,
        )


def count_error(scope: Scope, status: int) -> None:
    """One more refused or failed request, named by the route (``scope[ERROR_KEY]``) or
    after its status's reason phrase."""
    name = scope.get(ERROR_KEY) or _phrase(status)
    metrics.ERRORS.labels(str(status), name).inc()


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id" and _SAFE_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


async def send_error(
    send: Send, status: int, name: str, detail: str, request_id: str | None = None
) -> None:
    answer: dict[str, Any] = {"error": name, "detail": detail}
    headers = [(b"content-type", b"application/json")]
    if request_id is not None:
        answer["request_id"] = request_id
        headers.append((b"x-request-id", request_id.encode()))
    body = orjson.dumps(answer)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "HTTPError"
