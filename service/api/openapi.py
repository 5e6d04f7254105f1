"""The OpenAPI schema of the routes that read their own bodies (predict, v2 infer).

Predict is a plain Starlette route and v2 infer reads its body itself (for speed, and to
validate a large body off the event loop), so FastAPI does not see their models: the models
are registered here once, and predict's path item is written here from the same models.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service.api.oip_schemas import V2InferRequest
from service.api.pi_schemas import PiRecordedWrite, PiStreamset
from service.api.schemas import (
    NAME_PATTERN,
    ColumnarPredictResponse,
    ErrorBody,
    PredictRequest,
    PredictResponse,
)

BODY_MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (PredictRequest, "validation"),
    (V2InferRequest, "validation"),
    (PredictResponse, "serialization"),
    (ColumnarPredictResponse, "serialization"),
    (ErrorBody, "serialization"),
    (PiStreamset, "validation"),
    (PiRecordedWrite, "serialization"),
)
PREDICT_ERRORS = (400, 404, 409, 413, 415, 422, 500, 503)


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


PI_ONLY = {"type": "string", "enum": ["piwebapi"]}
PREDICT_PARAMETERS = [
    _query(
        "format",
        "piwebapi: the body is a PI Web API streamset read (PiStreamset), mapped to the "
        "model's signals by its tag map (SOFTSENSOR_TAG_MAPS); Good false is a bad value, "
        "Questionable or Substituted an uncertain one. Default: PredictRequest",
        PI_ONLY,
    ),
    _query(
        "answer",
        "piwebapi: answer the body of PI Web API's POST streamsets/recorded (PiRecordedWrite), "
        "one stream per output point of the tag map, Good/Questionable from each row's status",
        PI_ONLY,
    ),
    _query(
        "model",
        "with format=piwebapi: the model (default: the service's)",
        {"type": "string", "pattern": NAME_PATTERN},
    ),
    _query(
        "stream",
        "with format=piwebapi: the stream, which picks the model's tag map (default: the "
        "model's only tag map, and its stream)",
        {"type": "string", "pattern": r"^[A-Za-z0-9_.:/-]{1,128}$"},
    ),
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def predict_path_item() -> dict[str, Any]:
    """``POST /v1/predict`` as the schema states it."""
    answer = {
        "anyOf": [
            _ref("PredictResponse"),
            _ref("ColumnarPredictResponse"),
            _ref("PiRecordedWrite"),
        ]
    }
    responses: dict[str, Any] = {
        "200": {
            "description": "records in: `rows`; columns in: one list per field; "
            "answer=piwebapi: the body of PI Web API's POST streamsets/recorded",
            "content": {"application/json": {"schema": answer}},
        }
    }
    for code in PREDICT_ERRORS:
        responses[str(code)] = {
            "description": "the error and why",
            "content": {"application/json": {"schema": _ref("ErrorBody")}},
        }
    return {
        "post": {
            "tags": ["soft sensor"],
            "summary": "Predict",
            "description": "Estimates with bias correction, conformal interval and status "
            "(good, uncertain, bad, with reasons) for one row or a batch: records in, records "
            "out; columns in, columns out. With `stream`, the service keeps the stream's lag "
            "history, so a historian may send one row per request.",
            "operationId": "predict_v1_predict_post",
            "parameters": PREDICT_PARAMETERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"anyOf": [_ref("PredictRequest"), _ref("PiStreamset")]}
                    }
                },
            },
            "responses": responses,
        }
    }


def install_openapi(app: FastAPI) -> None:
    """Extend the app's generated schema (once) with the models and predict's path item."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = original()
            _, defs = models_json_schema(BODY_MODELS, ref_template="#/components/schemas/{model}")
            spec.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            paths = spec.setdefault("paths", {})
            app.openapi_schema = spec | {"paths": {"/v1/predict": predict_path_item(), **paths}}
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
