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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.clock import to_posix
from service.columnar import read_predict
from service.dataplane import SoftSensorService
from service.errors import (
    BadInputError,
    ForbiddenError,
    PayloadTooLargeError,
    ServiceError,
    UnauthorizedError,
)
from service.metrics import ServiceMetrics
from service.oip import router as v2_router
from service.registry import RegistryError
from service.schemas import (
    ColumnarPredictResponse,
    ErrorBody,
    LabRequest,
    LabResponse,
    PredictRequest,
    PredictResponse,
    PromoteRequest,
    Stamp,
    StoredLab,
)
from service.settings import Settings, get_settings
from service.store import StoreError

log = logging.getLogger("softsensor")
STAMP: TypeAdapter[Stamp] = TypeAdapter(Stamp)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def get_service(request: Request) -> SoftSensorService:
    service: SoftSensorService = request.app.state.service
    return service


Service = Annotated[SoftSensorService, Depends(get_service)]


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
    responses={c: {"model": ErrorBody} for c in (400, 401, 403, 404, 409, 413, 422, 503)},
)
ops = APIRouter(tags=["operations"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 422, 503)
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
    """A predict body in, the JSON answer out: shared by the route and the gate's fast path."""
    parsed = read_predict(body)
    if len(body) > BIG_BODY:
        payload = await asyncio.to_thread(service.predict, parsed)
    else:
        payload = await service.coalescer.score(parsed)
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


@v1.post("/lab-results", response_model=LabResponse, responses=ERRORS)
def post_lab_results(body: LabRequest, service: Service) -> LabResponse:
    """Store analyzer or lab values durably (before replying) and update the bias."""
    return service.add_lab_results(body)


@v1.get("/lab-results", response_model=list[StoredLab], responses=ERRORS)
def get_lab_results(
    service: Service,
    model: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")] = None,
    stream: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")] = None,
    since: Annotated[str | None, Query(description="ISO time or POSIX seconds")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[StoredLab]:
    """Stored lab results, newest first; of one stream if ``stream`` is given."""
    start = None
    if since is not None:
        try:
            start = to_posix(STAMP.validate_python(since))
        except ValidationError:
            try:
                start = float(since)
            except ValueError as exc:
                raise BadInputError(f"since: not a time: {since!r}") from exc
            if not abs(start) < float("inf"):  # NaN or infinite: no time at all
                raise BadInputError(f"since: not a finite time: {since!r}") from None
    return service.list_lab_results(model, start, limit, stream)


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
                "card": None if slot is None else slot.model.card.model_dump(mode="json"),
            }
        )
    return out


@admin.post("/{name}/reload")
def reload_model(name: str, service: Service) -> dict[str, str]:
    """Load the champion now (verified before the swap); the old one serves meanwhile."""
    return {"model": name, "version": service.reload(name)}


@admin.post("/{name}/promote")
def promote_model(name: str, body: PromoteRequest, service: Service) -> dict[str, str]:
    service.registry.promote(name, body.version)
    return {"model": name, "version": service.reload(name)}


@admin.post("/{name}/rollback")
def rollback_model(name: str, service: Service) -> dict[str, str]:
    service.registry.rollback(name)
    return {"model": name, "version": service.reload(name)}


@ops.get("/metrics", include_in_schema=False)
def metrics(service: Service) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


PREDICT_MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (PredictRequest, "validation"),
    (PredictResponse, "serialization"),
    (ColumnarPredictResponse, "serialization"),
)


def install_openapi(app: FastAPI) -> None:
    """Add the predict route's bodies to the schema components.

    The route reads its body itself (for speed), so FastAPI does not see these models; the
    route's schema refers to them by name and they are registered here once.
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


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The one mapping from a failure to (HTTP status, ``{"error", "detail"}``)."""
    if isinstance(exc, ServiceError):
        if exc.status >= 500:
            log.error("%s: %s", exc.error, exc.detail)
        return exc.status, {"error": exc.error, "detail": exc.detail}
    if isinstance(exc, RegistryError):
        return exc.status, {"error": "registry", "detail": str(exc)}
    if isinstance(exc, StoreError):
        return exc.status, {"error": "store", "detail": str(exc)}
    if isinstance(exc, RequestValidationError | ValidationError):
        problems = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
                "reason": e["msg"],
            }
            for e in exc.errors()
        ]
        return 422, {"error": "bad_input", "detail": problems}
    if isinstance(exc, StarletteHTTPException):  # the framework's own: unreadable body, 404
        if isinstance(exc.__cause__, ServiceError):  # e.g. the body limit hit while reading
            return error_body(exc.__cause__)
        detail = exc.detail
        if exc.__cause__ is not None:  # e.g. RecursionError of a deeply nested JSON body
            detail = f"{detail}: {type(exc.__cause__).__name__}: {str(exc.__cause__)[:200]}"
        error = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return exc.status_code, {"error": error, "detail": detail}
    log.error("unexpected error", exc_info=exc)
    return 500, {"error": "internal_error", "detail": "an unexpected error occurred; see logs"}


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through ``error_body``."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        status, body = error_body(exc)
        return JSONResponse(body, status_code=status)

    for kind in (
        ServiceError,
        RegistryError,
        StoreError,
        RequestValidationError,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(kind, handle)


JSON_HEADERS = [(b"content-type", b"application/json")]


async def _send_json(send: Send, status: int, payload: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class ServiceGate:
    """Outermost ASGI layer: body limit (413), request metrics, and the predict fast path.

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
            if self.fast_predict and scope["path"] == "/v1/predict" and scope["method"] == "POST":
                endpoint = "/v1/predict"
                await self._predict(receive_limited, send_wrapper)
            else:
                await self.app(scope, receive_limited, send_wrapper)
                endpoint = getattr(scope.get("route"), "path", "unmatched")
        except Exception as exc:  # the fast path and the body limit answer here
            if status["started"]:  # the framework already answered (and logs it): pass it on
                raise
            code, body = error_body(exc)
            status["code"] = code
            await _send_json(send, code, orjson.dumps(body))
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
    )
    app.state.service = service
    app.include_router(v1)
    app.include_router(admin)
    app.include_router(v2_router)
    app.include_router(ops)
    install_error_handlers(app)
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
