"""Pure ASGI middlewares, composed by wrapping (Starlette's pattern): each holds one rule.

They run for every request before any route, the predict path included, and answer their
own refusals through the one error mapping (``service.api.errors``): a refusal here reads
the same as one from a route.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.api.errors import error_body
from service.api.types import ASGIApp, Message, Receive, Scope, Send
from service.contracts.errors import PayloadTooLargeError, UnsupportedMediaTypeError
from service.monitoring.metrics import ServiceMetrics

JSON = (b"content-type", b"application/json")
WITH_BODY = frozenset(("POST", "PUT", "PATCH"))


class JsonBodies:
    """Every endpoint that takes a body takes JSON.

    A missing Content-Type means JSON, as KServe and Triton servers read it (Triton's own
    HTTP client sends none); any other media type is refused with 415, so a cross-site form
    (text/plain, urlencoded, multipart), which a browser sends without a CORS preflight,
    never reaches a route.
    """

    def __init__(self, app: ASGIApp, roots: Sequence[Path] = ()) -> None:
        self.app = app
        self.roots = roots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WITH_BODY:
            headers = scope["headers"]
            for name, value in headers:
                if name == b"content-type":
                    media = value.split(b";", 1)[0].strip().lower()
                    if media != b"application/json" and not media.endswith(b"+json"):
                        shown = media.decode("latin-1")[:80]
                        exc = UnsupportedMediaTypeError(
                            f"content-type {shown!r} is not accepted: send application/json"
                        )
                        await error_body(exc, self.roots).send(scope, receive, send)
                        return
                    break
            else:
                scope["headers"] = [*headers, JSON]
        await self.app(scope, receive, send)


class BodyLimit:
    """Bodies of at most ``limit`` bytes (413): checked on Content-Length before anything is
    read, and again while reading, so that a chunked upload cannot get past it."""

    def __init__(self, app: ASGIApp, limit: int, roots: Sequence[Path] = ()) -> None:
        self.app = app
        self.limit = limit
        self.roots = roots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                exc = PayloadTooLargeError(f"body of {int(value)} bytes exceeds {limit}")
                await error_body(exc, self.roots).send(scope, receive, send)
                return
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:  # raised inside the route's read: its error handler answers
                raise PayloadTooLargeError(f"body exceeds {limit} bytes")
            return message

        await self.app(scope, receive_limited, send)


class RequestMetrics:
    """Requests by endpoint (the matched route's path template), method and status, and
    their latency, for every answer including the refusals of the middlewares inside."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _record(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:  # prometheus_client's labels() is slow: resolved once per key
            children = (
                self.metrics.requests.labels(endpoint, method, str(status)),
                self.metrics.latency.labels(endpoint),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self._record(endpoint, scope["method"], status, time.perf_counter() - started)


class HeadAsGet:
    """HEAD answered as GET without its body, on every GET endpoint (RFC 9110 9.3.2: a
    general-purpose server supports both; load balancers and uptime checkers probe health
    with HEAD). FastAPI's routes take GET only, so the app gets the request as a GET and the
    HTTP server, which still sees HEAD, sends the headers alone (Content-Length included).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        inner = {**scope, "method": "GET"}
        try:
            await self.app(inner, receive, send)
        finally:  # the matched route, for the metrics of the layers outside
            if "route" in inner:
                scope["route"] = inner["route"]
