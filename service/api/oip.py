"""Open Inference Protocol v2 (the KServe / Triton HTTP API), so generic clients work as is.

Tensors in, tensors out: the input is the lag-assembled feature matrix in engineering units
([N, k], FP32 or FP64, data flat in row-major order or nested), the output ``estimate`` [N, 1].
Errors are ``{"error": "..."}`` with a 4xx status, as the protocol asks.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import simdjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from service.api.body import read_body
from service.api.columnar import BULK_BYTES, check_rows
from service.api.oip_schemas import (
    V2InferRequest,
    V2InferResponse,
    V2ModelMetadata,
    V2OutputTensor,
    V2TensorMeta,
)
from service.api.schemas import NAME_PATTERN, VERSION_PATTERN, ErrorBody
from service.contracts.errors import (
    BadInputError,
    ModelFaultError,
    ModelNotFoundError,
)

if TYPE_CHECKING:
    from service.dataplane import SoftSensorService

ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="model name")]
VersionName = Annotated[str, Path(pattern=VERSION_PATTERN, description="model version")]
router = APIRouter(
    prefix="/v2",
    tags=["open inference protocol v2"],
    responses={c: {"model": ErrorBody} for c in (400, 404, 413, 415, 422, 500, 503)},
)


class V2BadRequestError(BadInputError):
    """A malformed inference request: 400, as the protocol's examples answer."""

    status = 400


def _service(request: Request) -> SoftSensorService:
    service: SoftSensorService = request.app.state.service
    return service


@router.get("")
def server_metadata() -> dict[str, Any]:
    return {"name": "softsensor", "version": "0.1.0", "extensions": []}


@router.get("/health/live")
def live() -> dict[str, bool]:
    """The process is up and answering."""
    return {"live": True}


@router.get("/health/ready", response_model=None)
def ready(request: Request) -> dict[str, bool] | JSONResponse:
    """Ready when every served model has a verified version loaded."""
    if _service(request).ready:
        return {"ready": True}
    return JSONResponse({"ready": False}, status_code=503)


@router.get("/models/{name}/ready", response_model=None)
def model_ready(name: ModelName, request: Request) -> dict[str, Any] | JSONResponse:
    service = _service(request)
    if name in service.slots:
        return {"name": name, "ready": True}
    if name not in service.served:
        raise ModelNotFoundError(None, f"model {name!r} is not served here")
    return JSONResponse({"name": name, "ready": False}, status_code=503)


@router.get("/models/{name}", response_model=V2ModelMetadata)
def model_metadata(name: ModelName, request: Request) -> V2ModelMetadata:
    slot = _service(request).slot(name)
    m = slot.model
    return V2ModelMetadata(
        name=m.name,
        versions=[m.version],
        platform="onnxruntime_onnx",
        inputs=[V2TensorMeta(name=m.input_name, datatype="FP32", shape=[-1, len(m.features)])],
        outputs=[V2TensorMeta(name=m.output_name, datatype="FP32", shape=[-1, 1])],
    )


@router.get("/models/{name}/versions/{version}", response_model=V2ModelMetadata)
def model_version_metadata(
    name: ModelName, version: VersionName, request: Request
) -> V2ModelMetadata:
    meta = model_metadata(name, request)
    if version not in meta.versions:
        raise ModelNotFoundError(None, f"model {name!r} does not serve version {version!r}")
    return meta


def _numbers_only(data: list[Any]) -> bool:
    """Whether nested lists hold only JSON numbers.

    numpy would read ``true`` as 1.0 and ``null`` as NaN without complaint; the datatypes
    served here are numeric, so anything else is the client's mistake. Iterative, so a
    deeply nested list cannot exhaust the stack.
    """
    stack = [data]
    while stack:
        for value in stack.pop():
            kind = type(value)
            if kind is list:
                stack.append(value)
            elif kind is not float and kind is not int:
                return False
    return True


def _matrix(body: V2InferRequest, width: int, input_name: str) -> np.ndarray:
    tensor = body.inputs[0]
    if len(body.inputs) != 1:
        raise V2BadRequestError(
            f"inputs: expected one tensor ({input_name!r}), got {len(body.inputs)}"
        )
    if len(tensor.shape) != 2 or tensor.shape[1] != width:
        raise V2BadRequestError(f"inputs[0].shape: expected [N, {width}], got {tensor.shape}")
    if not _numbers_only(tensor.data):
        raise V2BadRequestError(
            "inputs[0].data: only numbers (flat or nested lists of them) are allowed; "
            "no booleans, strings, nulls or objects"
        )
    try:
        data = np.asarray(tensor.data, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise V2BadRequestError(f"inputs[0].data: not a numeric array ({exc})") from exc
    except OverflowError as exc:  # a JSON integer beyond float64, e.g. 2**1024
        raise V2BadRequestError(
            "inputs[0].data: an integer too large for a floating-point number"
        ) from exc
    n = tensor.shape[0]
    if data.size != n * width:
        raise V2BadRequestError(
            f"inputs[0].data: {data.size} values do not fill shape {tensor.shape}"
        )
    if not np.all(np.isfinite(data)):
        raise V2BadRequestError("inputs[0].data: NaN or infinite values")
    return data.reshape(n, width)


@router.post(
    "/models/{name}/infer",
    response_model=V2InferResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/V2InferRequest"}}
            },
        }
    },
)
async def infer(name: ModelName, request: Request) -> V2InferResponse:
    """The body is read here, not by FastAPI: a large tensor is validated and scored in a
    worker thread, so that it does not hold up other clients on the event loop."""
    service = _service(request)
    body = await read_body(request)
    if len(body) >= BULK_BYTES:
        return await asyncio.to_thread(_infer, service, name, body)
    return _infer(service, name, body)


def _declared_rows(body: bytes) -> int:
    """The rows a large body's tensor declares (0 if it cannot tell), from simdjson's parse:
    the row limit is checked before a million numbers are validated one by one."""
    try:
        doc: Any = simdjson.Parser().parse(body)  # any shape: a wrong one raises below
        rows = doc["inputs"][0]["shape"][0]
    except (ValueError, RuntimeError, KeyError, IndexError, TypeError):
        return 0
    return rows if isinstance(rows, int) else 0


def _infer(service: SoftSensorService, name: str, body: bytes) -> V2InferResponse:
    slot = service.slot(name)
    m = slot.model
    limit = service.settings.max_batch_rows
    if len(body) >= BULK_BYTES:
        check_rows(_declared_rows(body), limit)
    request = V2InferRequest.model_validate_json(body)
    if request.outputs and any(o.name != m.output_name for o in request.outputs):
        raise V2BadRequestError(f"outputs: this model has one output, {m.output_name!r}")
    x = _matrix(request, len(m.features), m.input_name)
    check_rows(len(x), limit)
    estimate = m.predict(x)
    if not np.all(np.isfinite(estimate)):
        # As for /v1/predict: inputs far outside the features' valid ranges are the client's
        # (a 400 naming them); a non-finite estimate on plausible inputs is the model's.
        low = np.array([f.valid_range.low for f in m.card.features])
        high = np.array([f.valid_range.high for f in m.card.features])
        rows = x[~np.isfinite(estimate)]
        outside = ((rows < low) | (rows > high)).any(axis=0)
        if outside.any():
            names = [m.card.features[j].name for j in np.flatnonzero(outside)]
            raise V2BadRequestError(
                f"inputs[0].data: values of {names} lie so far outside their valid range "
                "that the model gives no finite estimate"
            )
        raise ModelFaultError(f"model {m.name} {m.version} gave a non-finite estimate")
    # Tensors carry no stream nor time: their rows count for the default stream's drift only.
    service.stream(slot, service.settings.default_stream).monitors.drift.add(x, estimate)
    slot.rows_counter.inc(len(estimate))
    return V2InferResponse(
        model_name=m.name,
        model_version=m.version,
        id=request.id,
        outputs=[
            V2OutputTensor(
                name=m.output_name,
                shape=[len(estimate), 1],
                datatype="FP32",
                data=estimate.tolist(),
            )
        ],
    )
