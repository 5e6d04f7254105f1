"""The FastAPI app: built by ``create_app(settings)``, models loaded in the lifespan.

Routes are thin (parse, call the data plane, return). Every error becomes
``{"error": ..., "detail": ...}`` in one place, with the status its class carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path, PurePath
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.columnar import read_predict
from service.api.docs_pages import install_docs
from service.api.oip import router as v2_router
from service.api.schemas import (
    NAME_PATTERN,
    POSIX_MAX,
    POSIX_MIN,
    ColumnarPredictResponse,
    ErrorBody,
    IsoTime,
    LabRequest,
    LabResponse,
    PredictRequest,
    PredictResponse,
    PromoteRequest,
    StoredLab,
    V2InferRequest,
)
from service.contracts.card import ModelCard
from service.contracts.errors import (
    ForbiddenError,
    PayloadTooLargeError,
    ServiceError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from service.contracts.registry import LoadCheck, RegistryError
from service.dataplane import SoftSensorService
from service.lab.store import StoreError
from service.monitoring.metrics import ServiceMetrics
from service.scoring.runtime import load_problem
from service.settings import Settings, get_settings
from service.state.clock import to_posix

log = logging.getLogger("softsensor")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def get_service(request: Request) -> SoftSensorService:
    service: SoftSensorService = request.app.state.service
    return service


Service = Annotated[SoftSensorService, Depends(get_service)]
# A query parameter arrives as text: numbers in it are read, within the dates a store holds.
SinceSeconds = Annotated[float, Field(ge=POSIX_MIN, le=POSIX_MAX, allow_inf_nan=False)]
ModelName = Annotated[str, PathParam(pattern=NAME_PATTERN, description="model name")]


def require_admin(request: Request) -> None:
    """Bearer-token guard; with no token configured the admin endpoints are off."""
    token = get_service(request).settings.admin_token
    if token is None:
        raise ForbiddenError("admin endpoints are disabled: no SOFTSENSOR_ADMIN_TOKEN is set")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected):
        raise UnauthorizedError("a valid bearer token is required")


v1 = APIRouter(prefix="/v1", tags=["soft sensor"])
admin = APIRouter(
    prefix="/v1/models",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={c: {"model": ErrorBody} for c in (400, 401, 403, 404, 409, 413, 415, 422, 503)},
)
ops = APIRouter(tags=["operations"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 415, 422, 503)
}


BIG_BODY = 64 * 1024  # larger requests are scored in a worker thread, off the event loop


@v1.post(
    "/predict",
    responses={
        200: {
            "description": "records in: `rows`; columns in: one list per field",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/PredictResponse"},
                            {"$ref": "#/components/schemas/ColumnarPredictResponse"},
                        ]
                    }
                }
            },
        },
        **ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}
            },
        }
    },
)
async def predict(request: Request, service: Service) -> Response:
    """Estimates with bias correction, interval and quality flags for one row or a batch.

    Records in, records out (``rows``); columns in, columns out. The body is parsed and
    validated straight from bytes (pydantic-core) and the answer written with orjson: this
    is the hot path of a plant historian polling every few seconds.
    """
    try:
        answer = await score_body(service, await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    return Response(answer, media_type="application/json")


async def score_body(service: SoftSensorService, body: bytes) -> bytes:
    """A predict body in, the JSON answer out: shared by the route and the gate's fast path.

    A large body is read, validated and scored in a worker thread: validating tens of
    thousands of records takes long enough to hold up every other client (readiness probes
    included) if it runs on the event loop.
    """
    if len(body) > BIG_BODY:
        payload = await asyncio.to_thread(_score_big, service, body)
    else:
        payload = await service.coalescer.score(read_predict(body))
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def _score_big(service: SoftSensorService, body: bytes) -> dict[str, Any]:
    return service.predict(read_predict(body, service.settings.max_batch_rows))


@v1.post("/lab-results", response_model=LabResponse, responses=ERRORS)
def post_lab_results(body: LabRequest, service: Service) -> LabResponse:
    """Store analyzer or lab values durably (before replying) and update the bias."""
    return service.add_lab_results(body)


@v1.get("/lab-results", response_model=list[StoredLab], responses=ERRORS)
def get_lab_results(
    service: Service,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    stream: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")] = None,
    since: Annotated[
        SinceSeconds | IsoTime | None, Query(description="ISO time or POSIX seconds")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[StoredLab]:
    """Stored lab results, newest first; of one stream if ``stream`` is given."""
    start = None if since is None else to_posix(since)
    return service.list_lab_results(model, start, limit, stream)


def public_card(card: ModelCard) -> dict[str, Any]:
    """The card as anyone may read it: the training file by its name, not its path on the
    machine that trained the model."""
    out = card.model_dump(mode="json")
    out["data"]["source"] = PurePath(out["data"]["source"]).name
    return out


@v1.get("/models")
def list_models(service: Service) -> list[dict[str, Any]]:
    """The served models: name, version, readiness and the full model card."""
    out = []
    for name in service.served:
        slot = service.slots.get(name)
        out.append(
            {
                "name": name,
                "ready": slot is not None,
                "version": None if slot is None else slot.model.version,
                "card": None if slot is None else public_card(slot.model.card),
            }
        )
    return out


@admin.post("/{name}/reload")
def reload_model(name: ModelName, service: Service) -> dict[str, str]:
    """Load the champion now (verified before the swap); the old one serves meanwhile."""
    return {"model": name, "version": service.reload(name)}


def _load_check(service: SoftSensorService) -> LoadCheck:
    return functools.partial(load_problem, service.registry)


@admin.post("/{name}/promote")
def promote_model(name: ModelName, body: PromoteRequest, service: Service) -> dict[str, str]:
    """Make a version the champion, once it has loaded and scored a test row (else 409)."""
    service.registry.promote(name, body.version, check=_load_check(service))
    return {"model": name, "version": service.reload(name)}


@admin.post("/{name}/rollback")
def rollback_model(name: ModelName, service: Service) -> dict[str, str]:
    """Back to the newest previous version that loads and scores a test row."""
    service.registry.rollback(name, check=_load_check(service))
    return {"model": name, "version": service.reload(name)}


@ops.get("/metrics", include_in_schema=False)
def metrics(service: Service) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


PREDICT_MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (PredictRequest, "validation"),
    (V2InferRequest, "validation"),
    (PredictResponse, "serialization"),
    (ColumnarPredictResponse, "serialization"),
)


def install_openapi(app: FastAPI) -> None:
    """Add the bodies of the routes that read their own (predict, v2 infer) to the schema.

    Those routes read their body themselves (for speed, and to validate a large one off the
    event loop), so FastAPI does not see these models; the routes' schemas refer to them by
    name and they are registered here once.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = original()
            _, defs = models_json_schema(
                PREDICT_MODELS, ref_template="#/components/schemas/{model}"
            )
            spec.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _field_part(part: int | str) -> str:
    """One step of a validation error's location; a client's own key (a signal name) may be
    any length, and is cut so that the answer stays short."""
    text = str(part)
    return text if len(text) <= 64 else f"{text[:64]}...({len(text)} chars)"


@dataclass(frozen=True)
class ErrorAnswer:
    """What a failure answers: status, ``{"error", "detail"}`` and the headers HTTP asks
    for with that status (``WWW-Authenticate`` with a 401, ``Allow`` with a 405)."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=dict(self.headers))


def error_body(exc: Exception, roots: Sequence[Path] = ()) -> ErrorAnswer:
    """The one mapping from a failure to its answer.

    ``roots`` are the directories whose paths an answer may show relative to them (the
    registry and the state directory); no answer holds an absolute path of the server.
    """
    if isinstance(exc, ServiceError):
        if exc.status >= 500:
            log.error("%s: %s", exc.error, exc.detail)
        return ErrorAnswer(exc.status, {"error": exc.error, "detail": exc.detail}, exc.headers)
    if isinstance(exc, RegistryError | StoreError):
        log.log(logging.ERROR if exc.status >= 500 else logging.INFO, "%s", exc)
        kind = "registry" if isinstance(exc, RegistryError) else "store"
        return ErrorAnswer(exc.status, {"error": kind, "detail": exc.public(roots)})
    if isinstance(exc, RequestValidationError | ValidationError):
        problems = [
            {
                "field": ".".join(_field_part(p) for p in e["loc"] if p != "body") or "body",
                "reason": e["msg"],
            }
            for e in exc.errors()
        ]
        return ErrorAnswer(422, {"error": "bad_input", "detail": problems})
    if isinstance(exc, StarletteHTTPException):  # the framework's own: unreadable body, 404
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


def allowed_methods(app: FastAPI, path: str, named: str) -> str:
    """Every method the API answers at ``path`` (the Allow header of a 405): Starlette names
    only the first matching route's (``named``), the schema knows them all."""
    methods = {m.strip() for m in named.split(",") if m.strip()}
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in operations if m != "parameters"}
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI, roots: Sequence[Path]) -> None:
    """Route every failure through ``error_body``."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        answer = error_body(exc, roots)
        if answer.status == 405:
            named = answer.headers.get("Allow", "")
            allow = allowed_methods(app, request.url.path, named)
            answer = replace(answer, headers={"Allow": allow})
        return answer.response()

    for kind in (
        ServiceError,
        RegistryError,
        StoreError,
        RequestValidationError,
        ValidationError,  # a route that reads its own body (v2 infer) validates it itself
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(kind, handle)


JSON_HEADERS = [(b"content-type", b"application/json")]


def private_roots(settings: Settings) -> tuple[Path, ...]:
    """The server's directories that error answers show paths relative to, deepest first."""
    roots = {settings.registry.resolve(), settings.state_dir.resolve()}
    roots |= {settings.registry, settings.state_dir}  # as configured, maybe relative
    return tuple(sorted(roots, key=lambda p: len(str(p)), reverse=True))


def json_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The request's headers with its body declared JSON, or UnsupportedMediaTypeError.

    Every endpoint that takes a body takes JSON. A missing Content-Type means JSON, as
    KServe and Triton servers read it (Triton's own HTTP client sends none); any other media
    type is refused, so a cross-site form (text/plain, urlencoded, multipart), which a
    browser sends without a CORS preflight, never reaches a route.
    """
    headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media == b"application/json" or media.endswith(b"+json"):
                return headers
            shown = media.decode("latin-1")[:80]
            raise UnsupportedMediaTypeError(
                f"content-type {shown!r} is not accepted: send application/json"
            )
    return [*headers, *JSON_HEADERS]


async def _send_json(send: Send, status: int, payload: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class ServiceGate:
    """Outermost ASGI layer: body limit (413), JSON bodies only (415), request metrics, and
    the predict fast path.

    The body limit is checked on Content-Length before anything is read, and again while
    reading, so a chunked upload cannot get past it. ``POST /v1/predict`` is answered here,
    with the same validation, data plane and error mapping as the FastAPI route, but without
    the framework's per-request machinery: that is most of the cost of a one-row request.
    """

    def __init__(self, app: ASGIApp, service: SoftSensorService, fast_predict: bool) -> None:
        self.app = app
        self.service = service
        self.limit = service.settings.max_body_bytes
        self.metrics = service.metrics
        self.fast_predict = fast_predict
        self.roots = private_roots(service.settings)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _record(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
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
        status = {"code": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLargeError(f"body exceeds {self.limit} bytes")
            return message

        endpoint = "unmatched"
        try:
            for name, value in scope.get("headers") or ():
                if name == b"content-length" and int(value) > self.limit:
                    raise PayloadTooLargeError(f"body of {int(value)} bytes exceeds {self.limit}")
            if scope["method"] in ("POST", "PUT", "PATCH"):
                scope = dict(scope, headers=json_headers(scope))
            if self.fast_predict and scope["path"] == "/v1/predict" and scope["method"] == "POST":
                endpoint = "/v1/predict"
                await self._predict(receive_limited, send_wrapper)
            else:
                await self.app(scope, receive_limited, send_wrapper)
                endpoint = getattr(scope.get("route"), "path", "unmatched")
        except Exception as exc:  # the fast path and the body limit answer here
            if status["started"]:  # the framework already answered (and logs it): pass it on
                raise
            answer = error_body(exc, self.roots)
            status["code"] = answer.status
            await answer.response()(scope, receive, send)
        finally:
            self._record(endpoint, scope["method"], status["code"], time.perf_counter() - started)

    async def _predict(self, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await _send_json(send, 200, await score_body(self.service, b"".join(chunks)))


class SoftSensorAPI(FastAPI):
    """FastAPI with the service gate in front of all of the framework's per-request work.

    As ordinary middleware the gate would run after FastAPI's and Starlette's own entry code
    (telemetry lookups, middleware stack, error middleware), which costs as much as the
    one-row prediction itself.
    """

    gate: ServiceGate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.gate(scope, receive, send)


async def _watch(service: SoftSensorService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(service.watch_once)
        except Exception:  # the watcher must never die; the error is logged
            log.exception("champion watcher pass failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build an app; nothing is loaded until its lifespan starts."""
    settings = settings or get_settings()
    metrics = ServiceMetrics()
    service = SoftSensorService(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(service.start)
        watcher = None
        if settings.watch_interval_s > 0:
            watcher = asyncio.create_task(_watch(service, settings.watch_interval_s))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            service.stop()

    app = SoftSensorAPI(
        title="Column soft sensor",
        version="0.1.0",
        description="Real-time product-quality estimates from column sensors, with lab-result "
        "bias correction, drift metrics and the Open Inference Protocol v2.",
        lifespan=lifespan,
        docs_url=None,  # the pages come from install_docs: no CDN on a plant network
        redoc_url=None,
    )
    install_docs(app)
    app.state.service = service
    app.include_router(v1)
    app.include_router(admin)
    app.include_router(v2_router)
    app.include_router(ops)
    install_error_handlers(app, private_roots(settings))
    install_openapi(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"]
        )
    # The fast path answers before any middleware: with CORS configured, predict goes
    # through the framework so that its answers carry the CORS headers too.
    fast = settings.fast_predict and not settings.cors_origins
    app.gate = ServiceGate(functools.partial(FastAPI.__call__, app), service, fast)
    return app
