"""The one place where a failure becomes an HTTP answer: ``{"error": ..., "detail": ...}``.

Routes and middlewares raise the project's errors (``service.contracts.errors``: each class
carries its status); the framework's exception handlers and the middlewares that answer
before a route is reached both call :func:`error_body`, so an error reads the same whichever
layer met it. No answer holds an absolute path of the server or a client's input echoed at
length.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.api.forms import MAX_PROBLEMS, collapse_forms
from service.api.types import Receive, Scope, Send
from service.contracts.errors import PathError, ServiceError, SoftSensorError
from service.settings import Settings

log = logging.getLogger("softsensor")


@dataclass(frozen=True)
class ErrorAnswer:
    """What a failure answers: status, ``{"error", "detail"}`` and the headers HTTP asks
    for with that status (``WWW-Authenticate`` with a 401, ``Allow`` with a 405)."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=dict(self.headers))

    async def send(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.response()(scope, receive, send)


def private_roots(settings: Settings) -> tuple[Path, ...]:
    """The server's directories that error answers show paths relative to, deepest first."""
    roots = {settings.registry.resolve(), settings.state_dir.resolve()}
    roots |= {settings.registry, settings.state_dir}  # as configured, maybe relative
    return tuple(sorted(roots, key=lambda p: len(str(p)), reverse=True))


def _field_part(part: int | str) -> str:
    """One step of a validation error's location; a client's own key (a signal name) may be
    any length, and is cut so that the answer stays short."""
    text = str(part)
    return text if len(text) <= 64 else f"{text[:64]}...({len(text)} chars)"


def error_body(exc: Exception, roots: Sequence[Path] = ()) -> ErrorAnswer:
    """The one mapping from a failure to its answer.

    ``roots`` are the directories whose paths an answer may show relative to them (the
    registry and the state directory).
    """
    if isinstance(exc, SoftSensorError):
        if exc.status >= 500 or isinstance(exc, PathError):  # the log keeps the full path
            log.log(logging.ERROR if exc.status >= 500 else logging.INFO, "%s: %s", exc.error, exc)
        body = {"error": exc.error, "detail": exc.public(roots)}
        return ErrorAnswer(exc.status, body, exc.headers)
    if isinstance(exc, RequestValidationError | ValidationError):
        found = collapse_forms(exc.errors())
        problems = [
            {"field": ".".join(_field_part(p) for p in loc if p != "body") or "body", "reason": why}
            for loc, why in found[:MAX_PROBLEMS]
        ]
        if len(found) > MAX_PROBLEMS:
            more = f"and {len(found) - MAX_PROBLEMS} more problems, not listed"
            problems.append({"field": "body", "reason": more})
        return ErrorAnswer(422, {"error": "bad_input", "detail": problems})
    if isinstance(exc, HTTPException):  # the framework's own: unreadable body, 404, 405
        if isinstance(exc.__cause__, ServiceError):  # e.g. the body limit hit while reading
            return error_body(exc.__cause__, roots)
        detail = exc.detail
        if exc.__cause__ is not None:  # e.g. RecursionError of a deeply nested JSON body
            detail = f"{detail}: {type(exc.__cause__).__name__}: {str(exc.__cause__)[:200]}"
        error = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return ErrorAnswer(exc.status_code, {"error": error, "detail": detail}, exc.headers or {})
    log.error("unexpected error", exc_info=exc)
    return ErrorAnswer(
        500, {"error": "internal_error", "detail": "an unexpected error occurred; see logs"}
    )


def allowed_methods(paths: Mapping[str, Mapping[str, Any]], path: str, named: str) -> str:
    """Every method the API answers at ``path`` (the Allow header of a 405): Starlette names
    only the first matching route's (``named``), the OpenAPI ``paths`` know them all."""
    methods = {m.strip() for m in named.split(",") if m.strip()}
    for template, operations in paths.items():
        pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in operations if m != "parameters"}
    if "GET" in methods:  # service.api.middleware.HeadAsGet
        methods.add("HEAD")
    return ", ".join(sorted(methods))


ExceptionHandler = Callable[[Request, Exception], Any]
HANDLED = (SoftSensorError, RequestValidationError, ValidationError, HTTPException)


def exception_handlers(
    roots: Sequence[Path], paths: Callable[[], Mapping[str, Mapping[str, Any]]]
) -> dict[type[Exception], ExceptionHandler]:
    """The framework's exception handlers, every one through :func:`error_body`; ``paths``
    gives the OpenAPI paths for the Allow header of a 405."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        answer = error_body(exc, roots)
        if answer.status == 405:
            allow = allowed_methods(paths(), request.url.path, answer.headers.get("Allow", ""))
            answer = ErrorAnswer(405, answer.body, {"Allow": allow})
        return answer.response()

    return {kind: handle for kind in (*HANDLED, Exception)}
