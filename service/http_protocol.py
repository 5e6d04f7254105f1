"""uvicorn's httptools protocol with the limits a service exposed on a plant network needs.

uvicorn bounds neither the size of a request's headers nor the time a client may take to
send them or its body: four sockets sending 128 MiB of headers took the process from 109 to
661 MiB, and a connection that sends half a request stays open until the client gives up.
This protocol refuses headers beyond ``max_header_bytes`` (431), and closes a connection
whose headers are not complete ``header_timeout_s`` after the request began (or the
connection opened), or whose body stops arriving for ``body_timeout_s`` (408). The
keep-alive timeout between requests is uvicorn's own (``timeout_keep_alive``).

Selected with ``uvicorn.run(..., http=GuardedHttpToolsProtocol)``; the limits come from the
process's :class:`service.settings.Settings`, read once per worker process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import get_settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float


@cache
def process_limits() -> HttpLimits:
    settings = get_settings()
    return HttpLimits(settings.max_header_bytes, settings.header_timeout_s, settings.body_timeout_s)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus a header size limit and header and body read timeouts."""

    limits: HttpLimits | None = None  # tests may set one; else the process's settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or process_limits()
        self._header_bytes = 0
        self._in_headers = True
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None

    # -- timers ------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._in_headers and self.flow.read_paused:  # the app is slow, not the client
            self._arm(self._limits.body_timeout_s)
            return
        what = "headers" if self._in_headers else "body"
        self._refuse(408, f"request {what} not received in time")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless a response already began) and close the connection."""
        self._refused = True
        self._disarm()
        started = self.cycle is not None and not self._in_headers and self.cycle.response_started
        if not started and not self.transport.is_closing():
            body = message.encode("ascii")
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, _REASONS[status], len(body), body)
            )
        self.logger.warning("%s: closing the connection (%d)", message, status)
        if self.cycle is not None and not self._in_headers:
            self.cycle.disconnected = True  # the app sees a client that went away
            self.cycle.message_event.set()
        self.transport.close()

    # -- protocol interface ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s)  # a connection that sends nothing goes too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_headers = self._in_headers
        super().data_received(data)
        if in_headers and self._in_headers and not self._refused:
            # Still in the headers after the whole chunk: every byte of it was header.
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse(431, f"request headers exceed {self._limits.max_header_bytes} bytes")

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            self._disarm()
            super().send_400_response(msg)

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._arm(self._limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._arm(self._limits.body_timeout_s)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm(self._limits.body_timeout_s)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
