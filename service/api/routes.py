"""The v1 routes: predict, lab results, models, admin, metrics. Thin: parse, call, answer.

Every dependency is async on purpose: FastAPI runs a sync dependency in a worker thread, a
thread hop (and a GIL handover) per request for what is an attribute read.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
from pathlib import PurePath
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError

from service.api.admin_schemas import (
    AuditEvent,
    PromoteRequest,
    RollbackRequest,
    VoidRequest,
    VoidResponse,
)
from service.api.audit import audit_trail
from service.api.body import read_body
from service.api.columnar import read_predict
from service.api.encoding import accepts_gzip, compressed
from service.api.http_protocol import IN_FLIGHT
from service.api.pi_predict import Answer, PredictQuery, read_query, read_shaped
from service.api.schemas import (
    NAME_PATTERN,
    POSIX_MAX,
    POSIX_MIN,
    ErrorBody,
    IsoTime,
    LabRequest,
    LabResponse,
    PredictRequest,
    StoredLab,
)
from service.contracts.card import ModelCard
from service.contracts.errors import BadInputError, ForbiddenError, UnauthorizedError
from service.contracts.registry import LoadCheck
from service.dataplane import SoftSensorService
from service.lab.export import to_csv
from service.plant.published import publish_answer
from service.scoring.runtime import load_problem
from service.state.clock import to_posix

BIG_BODY = 64 * 1024  # larger predict bodies are read and scored in a worker thread


def service_of(request: Request) -> SoftSensorService:
    service: SoftSensorService = request.app.state.service
    return service


async def get_service(request: Request) -> SoftSensorService:
    return service_of(request)


Service = Annotated[SoftSensorService, Depends(get_service)]
# A query parameter arrives as text: numbers in it are read, within the dates a store holds.
SinceSeconds = Annotated[float, Field(ge=POSIX_MIN, le=POSIX_MAX, allow_inf_nan=False)]
ModelName = Annotated[str, PathParam(pattern=NAME_PATTERN, description="model name")]


async def require_admin(request: Request) -> str:
    """Bearer-token guard: the name of the admin whose token was given (for the audit
    trail). Every configured token is compared, in constant time, whichever matches; with
    none configured the admin endpoints are off."""
    tokens = service_of(request).settings.named_tokens()
    if not tokens:
        raise ForbiddenError(
            "admin endpoints are disabled: no SOFTSENSOR_ADMIN_TOKENS (or _ADMIN_TOKEN) is set"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    found = None
    for named in tokens:  # no early exit: the time taken does not tell which one matched
        if hmac.compare_digest(given.encode(), named.token.get_secret_value().encode()):
            found = named.name
    if scheme.lower() != "bearer" or found is None:
        raise UnauthorizedError("a valid bearer token is required")
    return found


Admin = Annotated[str, Depends(require_admin)]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 415, 422, 503)
}
v1 = APIRouter(prefix="/v1", tags=["soft sensor"])
# An admin route also answers 401 and 403; 400 is an unreadable body (not JSON, not UTF-8).
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = ERRORS | {
    code: {"model": ErrorBody} for code in (401, 403)
}
admin = APIRouter(
    prefix="/v1/models",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=ADMIN_ERRORS,
)
admin_v1 = APIRouter(
    prefix="/v1", tags=["admin"], dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS
)
ops = APIRouter(tags=["operations"])


# ---- predict: a Starlette route (no FastAPI body machinery), documented in service.api.openapi


async def predict(request: Request) -> Response:
    """Estimates with bias correction, interval and status for one row or a batch.

    The body is read and validated straight from bytes (pydantic-core, simdjson for large
    numeric columns) and the answer written with orjson: the hot path of a historian polling
    every minute per unit. Small requests go to their model's batcher; a large body is read,
    validated and scored in a worker thread, off the event loop. Query parameters choose
    other shapes in and out (PI Web API, ``service.api.pi_predict``): read into the same
    request, scored by the same path.
    """
    service = service_of(request)
    body = await read_body(request)
    try:
        shape = read_query(request.query_params) if request.scope["query_string"] else None
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    content: bytes | None = None  # the answer's bytes, once written
    headers: dict[str, str] = {}
    try:
        if len(body) > BIG_BODY:  # scored and written in a worker thread
            gzip_ok = service.settings.gzip_answers and accepts_gzip(
                request.headers.get("accept-encoding", "")
            )
            payload, content, headers = await asyncio.to_thread(
                _score_big, service, body, shape, gzip_ok
            )
        else:
            req, answer = _read(service, body, shape)
            in_flight = request.scope.get(IN_FLIGHT)  # absent: not known, so not alone
            alone = in_flight is not None and len(in_flight) == 1
            payload = await service.batchers.score(req, alone)
    except ValidationError as exc:
        if shape is None and any(e["loc"][:1] == ("Items",) for e in exc.errors()):
            raise BadInputError(
                "Items: a PI Web API body is read with ?format=piwebapi (and the model's tag map)"
            ) from exc
        raise RequestValidationError(exc.errors()) from exc
    publish_answer(request.app.state.opcua, payload)  # a queue hand-off: never waits
    if content is None:
        out = payload if answer is None else answer(payload)
        content = orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, media_type="application/json", headers=headers or None)


def _read(
    service: SoftSensorService, body: bytes, shape: PredictQuery | None, max_rows: int | None = None
) -> tuple[PredictRequest, Answer | None]:
    if shape is None:
        return read_predict(body, max_rows), None
    return read_shaped(service, body, shape, lambda: read_predict(body, max_rows))


def _score_big(
    service: SoftSensorService, body: bytes, shape: PredictQuery | None, gzip_ok: bool
) -> tuple[dict[str, Any], bytes, dict[str, str]]:
    """A large request scored, and its answer written (compressed when the client takes
    gzip and it is large), all in a worker thread: the event loop only sends it."""
    req, answer = _read(service, body, shape, service.settings.max_batch_rows)
    payload = service.predict(req)
    out = payload if answer is None else answer(payload)
    content, headers = compressed(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY), gzip_ok)
    return payload, content, headers


# ---- lab results -------------------------------------------------------------------------


@v1.post("/lab-results", response_model=LabResponse, responses=ERRORS)
def post_lab_results(body: LabRequest, service: Service) -> LabResponse:
    """Store analyzer or lab values durably (before replying) and update the bias."""
    return service.add_lab_results(body)


@v1.get(
    "/lab-results",
    response_model=list[StoredLab],
    responses=ERRORS | {200: {"content": {"text/csv": {}}}},
)
def get_lab_results(
    service: Service,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    stream: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")] = None,
    since: Annotated[
        SinceSeconds | IsoTime | None, Query(description="ISO time or POSIX seconds")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    format: Annotated[
        Literal["json", "csv"],
        Query(description="csv: the file `softsensor retrain --lab-results` reads"),
    ] = "json",
) -> Any:
    """Stored lab results, newest first; of one stream if ``stream`` is given."""
    start = None if since is None else to_posix(since)
    if format == "csv":
        text = to_csv(service.labs.records(model, stream, start, limit))
        return Response(text, media_type="text/csv; charset=utf-8")
    return service.list_lab_results(model, start, limit, stream)


@admin_v1.post("/lab-results/void", response_model=VoidResponse)
def void_lab_result(body: VoidRequest, service: Service, actor: Admin) -> VoidResponse:
    """Void a stored lab result (a wrong value): kept in the audit trail with who and why,
    the stream's bias recomputed from the remaining results. 404 if none is stored."""
    return service.labs.void(body, actor)


@admin_v1.get("/audit", response_model=list[AuditEvent])
def get_audit(
    service: Service,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AuditEvent]:
    """Promotes, rollbacks and voids with who and why, newest first."""
    return audit_trail(service, model, limit)


# ---- models --------------------------------------------------------------------------------


class ModelInfo(BaseModel):
    name: str
    ready: bool
    version: str | None
    card: dict[str, Any] | None = Field(description="the model card, the data file by name only")


class ChampionChange(BaseModel):
    model: str
    version: str = Field(description="the version now served")


def public_card(card: ModelCard) -> dict[str, Any]:
    """The card as anyone may read it: the training file by its name, not its path on the
    machine that trained the model."""
    out = card.model_dump(mode="json")
    out["data"]["source"] = PurePath(out["data"]["source"]).name
    return out


@v1.get("/models", response_model=list[ModelInfo])
def list_models(service: Service) -> list[ModelInfo]:
    """The served models: name, version, readiness and the model card."""
    out = []
    for name in service.served:
        slot = service.slots.get(name)
        model = None if slot is None else slot.model
        out.append(
            ModelInfo(
                name=name,
                ready=model is not None,
                version=None if model is None else model.version,
                card=None if model is None else public_card(model.card),
            )
        )
    return out


def _load_check(service: SoftSensorService) -> LoadCheck:
    return functools.partial(load_problem, service.registry)


@admin.post("/{name}/reload", response_model=ChampionChange)
def reload_model(name: ModelName, service: Service) -> ChampionChange:
    """Load the champion now (verified before the swap); the old one serves meanwhile."""
    return ChampionChange(model=name, version=service.reload(name))


@admin.post("/{name}/promote", response_model=ChampionChange)
def promote_model(
    name: ModelName, body: PromoteRequest, service: Service, actor: Admin
) -> ChampionChange:
    """Make a version the champion, once it has loaded and scored a test row (else 409);
    recorded in the model's history with the admin's name and the reason."""
    check = _load_check(service)
    service.registry.promote(name, body.version, check=check, by=actor, reason=body.reason)
    return ChampionChange(model=name, version=service.reload(name))


@admin.post("/{name}/rollback", response_model=ChampionChange)
def rollback_model(
    name: ModelName, service: Service, actor: Admin, body: RollbackRequest | None = None
) -> ChampionChange:
    """Back to the newest previous version that loads and scores a test row; recorded in
    the model's history with the admin's name and the reason."""
    reason = None if body is None else body.reason
    service.registry.rollback(name, check=_load_check(service), by=actor, reason=reason)
    return ChampionChange(model=name, version=service.reload(name))


@ops.get("/metrics", include_in_schema=False)
def metrics(service: Service) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
