"""The service's ASGI app, built by ``create_app(settings)``; models load in its lifespan.

Composition, outermost first (Starlette's pattern; each layer is a plain ASGI app):

    CORS (only if configured) -> RequestMetrics -> BodyLimit -> JsonBodies -> ContentEncoding
        -> HeadAsGet -> router
        POST /v1/predict -> routes.predict (a Starlette route); each answer's latest row
                            also goes to the OPC UA server when one runs (--opcua)
        anything else    -> the FastAPI app (lab results, models, admin, v2, docs, metrics)

Predict is a route like any other, through the same middlewares and error mapping; it is a
Starlette route rather than a FastAPI one because FastAPI's per-request body and dependency
machinery would cost as much as the prediction itself, and it reads and writes its body
itself anyway (pydantic-core and simdjson in, orjson out). Every failure becomes
``{"error", "detail"}`` through ``service.api.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from service.api.docs_pages import install_docs
from service.api.encoding import ContentEncoding
from service.api.errors import exception_handlers, private_roots
from service.api.middleware import BodyLimit, HeadAsGet, JsonBodies, RequestMetrics
from service.api.oip import router as v2_router
from service.api.openapi import install_openapi
from service.api.routes import admin, admin_v1, ops, predict, v1
from service.dataplane import SoftSensorService
from service.monitoring.metrics import ServiceMetrics
from service.settings import Settings, get_settings

log = logging.getLogger("softsensor")


async def _watch(service: SoftSensorService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(service.watch_once)
        except Exception:  # the watcher must never die; the error is logged
            log.exception("champion watcher pass failed")


@contextlib.asynccontextmanager
async def _opcua_server(app: Starlette, settings: Settings) -> AsyncIterator[None]:
    """With ``opcua_endpoint``: the OPC UA server on this event loop, for as long as the app
    runs; predict publishes to ``app.state.opcua``. asyncua is imported only then."""
    if settings.opcua_endpoint is None:
        yield
        return
    from service.plant.opcua_server import EstimateServer

    server = EstimateServer(settings.opcua_endpoint, settings.opcua_stale_after_s)
    await server.start()
    app.state.opcua = server
    try:
        yield
    finally:
        app.state.opcua = None
        await server.stop()


@contextlib.contextmanager
def _startup_heap_frozen() -> Iterator[None]:
    """Everything built at startup out of the cyclic collector's reach while the app runs.

    A full collection of the startup heap (the app, its schemas, the loaded models: some
    80,000 objects) took 50-70 ms, and at 16 busy connections the collector ran one about
    once a second: a stall of every request in flight (p99 latency 57 ms against a p50 of
    3.5 ms). Frozen (``gc.freeze``), a full collection scans only what requests allocate.
    Garbage is collected first, so none is kept; the heap is thawed when the app stops.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _lifespan(service: SoftSensorService, settings: Settings) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(service.start)
        watcher = None
        if settings.watch_interval_s > 0:
            watcher = asyncio.create_task(_watch(service, settings.watch_interval_s))
        try:
            async with _opcua_server(app, settings):
                with _startup_heap_frozen():
                    yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            service.stop()

    return lifespan


def _api(service: SoftSensorService, handlers: dict[Any, Any]) -> FastAPI:
    """Every route but predict, with the generated OpenAPI schema and the docs pages."""
    api = FastAPI(
        title="Column soft sensor",
        version="0.1.0",
        description="Real-time product-quality estimates from column sensors, with lab-result "
        "bias correction, row status, drift metrics and the Open Inference Protocol v2.",
        docs_url=None,  # the pages come from install_docs: no CDN on a plant network
        redoc_url=None,
        exception_handlers=handlers,
    )
    api.state.service = service
    for router in (v1, admin, admin_v1, v2_router, ops):
        api.include_router(router)
    install_docs(api)
    install_openapi(api)
    return api


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; nothing is loaded until its lifespan starts."""
    settings = settings or get_settings()
    metrics = ServiceMetrics()
    service = SoftSensorService(settings, metrics)
    roots = private_roots(settings)
    paths: dict[str, Any] = {}
    handlers = exception_handlers(roots, lambda: paths)
    api = _api(service, handlers)
    paths.update(api.openapi().get("paths", {}))
    middleware = [
        Middleware(RequestMetrics, metrics=metrics),
        Middleware(BodyLimit, limit=settings.max_body_bytes, roots=roots),
        Middleware(JsonBodies, roots=roots),
        Middleware(ContentEncoding, limit=settings.max_body_bytes, roots=roots),
        Middleware(HeadAsGet),
    ]
    if settings.cors_origins:  # outermost, so that refusals carry the CORS headers too
        cors = Middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"]
        )
        middleware.insert(0, cors)
    app = Starlette(
        routes=[Route("/v1/predict", predict, methods=["POST"])],
        middleware=middleware,
        exception_handlers=handlers,
        lifespan=_lifespan(service, settings),
    )
    app.router.default = api  # what no route here matches (a 405 of predict stays here)
    app.state.service = service
    app.state.api = api
    app.state.opcua = None  # the OPC UA server, while one runs (opcua_endpoint)
    return app
