"""A connection's writes of one event-loop tick sent in one system call.

uvicorn writes a response's head and its body separately, and the event loop sends each
at once: two ``write`` calls and two TCP segments for every small answer, about 15 us
of a lookup's CPU (measured). ``CoalescedWrites`` wraps the connection's transport: what
is written during a tick is joined and sent at the end of it (``call_soon``), so an
answer leaves in one write and a streamed one (server-sent events) only a tick later.
``close`` sends what is pending first; ``abort`` drops it, as a transport's abort does.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescedWrites:
    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if not self.pending:
            return
        data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending.clear()
        if not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self.pending.clear()
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface
        return getattr(self.transport, name)
