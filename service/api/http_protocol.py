"""uvicorn's httptools protocol with the limits a service exposed on a plant network needs.

uvicorn bounds neither the size of a request's headers nor the time a client may take to
send them or its body: four sockets sending 128 MiB of headers took the process from 109 to
661 MiB, and a connection that sends half a request stays open until the client gives up.
This protocol refuses headers beyond ``max_header_bytes`` (431), and closes a connection
whose headers are not complete ``header_timeout_s`` after the request began (or the
connection opened), or whose body stops arriving for ``body_timeout_s`` (408). The
keep-alive timeout between requests is uvicorn's own (``timeout_keep_alive``).

It also sends each response's head together with its body (``_OneWrite``): uvicorn writes
them in two sends; and it tells the app how many requests are in flight (``IN_FLIGHT``).

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


IDLE, HEADERS, BODY = 0, 1, 2  # where a connection's current request stands
# Scope key of the worker's requests in flight (uvicorn's set of their tasks, one per request
# from its headers to its answer, across connections): with only its own there, a predict
# request has nobody to be batched with and is scored at once (``service.scoring.batcher``).
IN_FLIGHT = "softsensor.in_flight"


class _OneWrite:
    """The connection's transport, with a response's status line and headers held back and
    written together with its body's first chunk: one send and one TCP segment instead of
    two (uvicorn writes them separately). Measured on this machine in interleaved rounds, a
    bare ASGI app answered 29 % more requests at one connection and 14 % more at 16 this way.

    Only a response head is held: the first write of the connection's current response,
    once the app has started it. The next write carries it, and anything that ends the
    response without a body write (HEAD, a 204, a close) flushes it first.
    """

    __slots__ = ("_held", "_held_for", "_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._held: bytes | None = None
        self._held_for: object = None  # the cycle whose head was held (one per response)

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        else:
            cycle = self._protocol.cycle
            if (
                cycle is not None
                and cycle is not self._held_for
                and cycle.response_started
                and not cycle.response_complete
            ):
                self._held, self._held_for = data, cycle
                return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus a header size limit and header and body read timeouts.

    Only ``data_received`` is extended: it reads where the request stands from uvicorn's
    own state before and after each chunk, and one watchdog timer per connection compares
    the time the headers began, or the body last moved, with the limits. The parser's
    per-request callbacks stay uvicorn's, so the limits cost a one-row request next to
    nothing (overriding them cost 8 % of throughput at 16 connections).
    """

    limits: HttpLimits | None = None  # tests may set one; else the process's settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or process_limits()
        self._header_bytes = 0
        self._since = 0.0  # loop time the headers began, or the body last moved
        self._refused = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._period = min(self._limits.header_timeout_s, self._limits.body_timeout_s) / 4

    def _phase(self) -> int:
        """HEADERS from the connection's start or a request's first byte until its headers
        are complete (uvicorn sets the scope's method then), BODY until the body is read."""
        scope = self.scope
        if scope is None or "method" not in scope:
            return HEADERS
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            return BODY
        return IDLE

    # -- the watchdog ------------------------------------------------------------------------

    def _check(self) -> None:
        self._watchdog = None
        if self.transport.is_closing():
            return
        phase, waited = self._phase(), self.loop.time() - self._since
        if phase == HEADERS and waited > self._limits.header_timeout_s:
            self._refuse(408, "request headers not received in time")
            return
        if phase == BODY and waited > self._limits.body_timeout_s and not self.flow.read_paused:
            self._refuse(408, "request body not received in time")  # paused: the app is slow
            return
        self._watchdog = self.loop.call_later(self._period, self._check)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless a response already began) and close the connection."""
        self._refused = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        in_request = self._phase() != HEADERS and self.cycle is not None
        if not (in_request and self.cycle.response_started) and not self.transport.is_closing():
            body = message.encode("ascii")
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, _REASONS[status], len(body), body)
            )
        self.logger.warning("%s: closing the connection (%d)", message, status)
        if in_request:
            self.cycle.disconnected = True  # the app sees a client that went away
            self.cycle.message_event.set()
        self.transport.close()

    # -- protocol interface ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writes = _OneWrite(transport, self)
        self.transport = self._writes  # type: ignore[assignment]  # what the cycles write to
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
        before = self._phase()
        super().data_received(data)
        after = self._phase()
        if after == IDLE or self._refused:  # the common case: whole requests per chunk
            return
        if after == BODY:
            self._since = self.loop.time()
            return
        if before != HEADERS:  # a new request began in this chunk
            self._since, self._header_bytes = self.loop.time(), 0
        self._header_bytes += len(data)  # still in the headers: all of it was header
        if self._header_bytes > self._limits.max_header_bytes:
            self._refuse(431, f"request headers exceed {self._limits.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[IN_FLIGHT] = self.tasks  # type: ignore[literal-required]

    def on_response_complete(self) -> None:
        self._writes.flush()  # a response without a body write (HEAD, 204) sends its head
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)
