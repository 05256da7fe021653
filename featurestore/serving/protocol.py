"""uvicorn's httptools protocol with bounds on how a client sends a request.

uvicorn alone keeps a connection open as long as the client trickles bytes: it has no
header or body read timeout (its keep-alive timer restarts on every byte), and no bound on
header bytes. So per connection:

- the request head (request line and headers) must arrive within ``header_timeout`` of
  the connection opening or of the previous answer, and be at most ``max_head_bytes``;
  a connection that sent nothing is closed silently, a partial head gets 408;
- the body must arrive within ``body_timeout`` of the head: else 408, and the route's
  read ends as a disconnect;
- past ``max_connections`` open connections, a request gets 503 at once.

One timer per connection enforces both timeouts: arming one sets a deadline, and the
timer, when it fires, waits on for a deadline that moved (so a keep-alive connection's
requests cost no timer each, measured ~3 us). The answers are written here, so the 408s
are counted too. A connection's writes of one loop tick go out in one system call
(``writes.CoalescedWrites``).
``featurestore serve`` passes the bounds through the environment (``Bounds.from_env``),
as it does the app's settings: each uvicorn worker is a new process.
"""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from featurestore.serving import metrics
from featurestore.serving.guard import send_error
from featurestore.serving.writes import CoalescedWrites

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class Bounds:
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 1000
    max_head_bytes: int = 64 * 1024

    @classmethod
    def from_env(cls) -> Bounds:
        env = os.environ.get
        return cls(
            header_timeout=float(env("FEATURESTORE_HEADER_TIMEOUT", cls.header_timeout)),
            body_timeout=float(env("FEATURESTORE_BODY_TIMEOUT", cls.body_timeout)),
            max_connections=int(env("FEATURESTORE_MAX_CONNECTIONS", cls.max_connections)),
        )


@functools.cache
def bounds() -> Bounds:
    """This worker's bounds, read once (the first connection comes after the CLI set them)."""
    return Bounds.from_env()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = bounds()
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.max_connections = limits.max_connections
        self.max_head_bytes = limits.max_head_bytes
        self.read_timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when read_timer fires
        self.read_deadline: float | None = None  # None: no read is timed
        self.on_deadline: Any = None  # what to do at read_deadline
        self.in_body = False  # the head is in, the body is not yet
        self.head_begun = False  # bytes of a new head arrived since the timer was armed
        self.head_bytes = 0
        self.refusal: tuple[int, str, str] | None = None

    # -- the connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        self._arm(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.in_body and self.read_deadline is None and not self.transport.is_closing():
            self._arm(self.body_timeout, self._body_timed_out)

    def send_400_response(self, msg: str) -> None:
        # The parser stops on an exception from a callback; uvicorn answers that with 400.
        if self.refusal is not None:
            self._refuse(*self.refusal)
        else:
            super().send_400_response(msg)

    # -- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_begun = True
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self.in_body = True
        if len(self.connections) > self.max_connections:
            app, self.app = self.app, _too_many_connections
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.in_body = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self.pipeline:
            return
        if self.in_body:  # answered before the body was read (a 401, say): still bounded
            if self.read_deadline is None:
                self._arm(self.body_timeout, self._body_timed_out)
        else:
            self._arm(self.header_timeout, self._head_timed_out)

    # -- the bounds ------------------------------------------------------------------

    def _count_head(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > self.max_head_bytes:
            self.refusal = (
                431,
                "RequestHeaderFieldsTooLarge",
                f"The request line and headers exceed {self.max_head_bytes} bytes.",
            )
            raise ValueError("request head too large")  # stops the parser

    def _arm(self, seconds: float, callback: Any) -> None:
        self.head_begun = False
        deadline = self.read_deadline = self.loop.time() + seconds
        self.on_deadline = callback
        if self.read_timer is None or self.timer_at > deadline:  # (a shorter timeout)
            if self.read_timer is not None:
                self.read_timer.cancel()
            self.timer_at = deadline
            self.read_timer = self.loop.call_at(deadline, self._timer_fired)

    def _disarm(self) -> None:
        self.read_deadline = None  # a pending timer finds nothing to do

    def _timer_fired(self) -> None:
        self.read_timer = None
        deadline = self.read_deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:  # re-armed since: wait for the new deadline
            self.timer_at = deadline
            self.read_timer = self.loop.call_at(deadline, self._timer_fired)
            return
        self.read_deadline = None
        self.on_deadline()

    def _head_timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if not self.head_begun:  # nothing asked: close like an idle keep-alive connection
            self.transport.close()
            return
        self._refuse(
            408,
            "RequestTimeout",
            f"The request line and headers did not arrive within {self.header_timeout:g} s.",
        )

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        if not cycle.response_started:
            self._refuse(
                408,
                "RequestTimeout",
                f"The request body did not arrive within {self.body_timeout:g} s.",
            )
        else:
            self.transport.close()
        cycle.disconnected = True  # the route's pending read returns a disconnect
        cycle.message_event.set()

    def _refuse(self, status: int, name: str, detail: str) -> None:
        """Answer ``status`` and close, outside any route (counted here)."""
        metrics.ERRORS.labels(str(status), name).inc()
        body = orjson.dumps({"error": name, "detail": detail})
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


async def _too_many_connections(scope: Any, receive: Any, send: Any) -> None:
    limit = bounds().max_connections
    metrics.ERRORS.labels("503", "TooManyConnections").inc()
    await send_error(
        _closing(send),
        503,
        "TooManyConnections",
        f"This worker has more than {limit} connections open (`serve --max-connections`); "
        "retry, on another replica if you can.",
    )


def _closing(send: Any) -> Any:
    async def closing(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message["headers"], (b"connection", b"close")]
        await send(message)

    return closing
