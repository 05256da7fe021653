"""What every authenticated route reads from a raw ASGI request: its API key, its body
(bounded by the server's body limit), and which fields its JSON may have."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from featurestore.errors import (
    AuthenticationError,
    EntityInputError,
    RequestTooLargeError,
    did_you_mean,
)


def api_key_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's API key, from its raw ASGI headers (names arrive lower-cased)."""
    auth = key = None
    for name, value in headers:
        if name == b"authorization" and auth is None:
            auth = value.decode("latin-1")
        elif name == b"x-api-key" and key is None:
            key = value.decode("latin-1")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(
                "Send the API key as `Authorization: Bearer <key>` (or `X-API-Key: <key>`)."
            )
        return token.strip()
    if not key:
        raise AuthenticationError(
            "This server requires an API key: send `Authorization: Bearer <key>`. Create "
            "one with `featurestore credentials create --model NAME`."
        )
    return key.strip()


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body; past ``limit`` bytes it is read to its end (so the connection
    stays usable) but not kept, and refused with its size."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect
    body = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= limit:
        return body  # the usual case: it came whole
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise RequestTooLargeError(f"The request body is {size} bytes; the limit is {limit}.")
    return b"".join(chunks)


def check_fields(payload: dict[str, object], known: tuple[str, ...], what: str = "request") -> None:
    """An unknown field is refused (422) with a suggestion, never ignored."""
    for key in payload:
        if key not in known:
            raise EntityInputError(
                f"Unknown {what} field '{key}'.{did_you_mean(key, known)} "
                f"Fields: {', '.join(known)}."
            )
