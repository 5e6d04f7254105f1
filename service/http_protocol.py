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
    """HttpToolsProtocol plus a header size limit and header and body read timeouts.

    One watchdog timer per connection looks at the time the current request's headers began
    and the time its body last moved; a request itself only notes ``loop.time()``, so the
    limits cost the hot path of a one-row request next to nothing.
    """

    limits: HttpLimits | None = None  # tests may set one; else the process's settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or process_limits()
        self._header_bytes = 0
        self._in_headers = True  # waiting for (the rest of) a request's headers
        self._in_body = False
        self._since = 0.0  # loop time the headers began, or the body last moved
        self._refused = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._period = min(self._limits.header_timeout_s, self._limits.body_timeout_s) / 4

    # -- the watchdog ------------------------------------------------------------------------

    def _check(self) -> None:
        self._watchdog = None
        if self.transport.is_closing():
            return
        waited = self.loop.time() - self._since
        if self._in_headers and waited > self._limits.header_timeout_s:
            self._refuse(408, "request headers not received in time")
            return
        if self._in_body and waited > self._limits.body_timeout_s and not self.flow.read_paused:
            self._refuse(408, "request body not received in time")  # paused: the app is slow
            return
        self._watchdog = self.loop.call_later(self._period, self._check)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless a response already began) and close the connection."""
        self._refused = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
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
        self._since = self.loop.time()  # a connection that sends nothing goes too
        self._watchdog = self.loop.call_later(self._period, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
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
            super().send_400_response(msg)

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_bytes = True, 0
        self._since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._in_headers, self._in_body = False, True
        self._since = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._since = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()
