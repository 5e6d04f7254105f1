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

from service.api.schemas import (
    ColumnarPredictResponse,
    ErrorBody,
    PredictRequest,
    PredictResponse,
    V2InferRequest,
)

BODY_MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (PredictRequest, "validation"),
    (V2InferRequest, "validation"),
    (PredictResponse, "serialization"),
    (ColumnarPredictResponse, "serialization"),
    (ErrorBody, "serialization"),
)
PREDICT_ERRORS = (400, 404, 409, 413, 415, 422, 500, 503)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def predict_path_item() -> dict[str, Any]:
    """``POST /v1/predict`` as the schema states it."""
    answer = {"anyOf": [_ref("PredictResponse"), _ref("ColumnarPredictResponse")]}
    responses: dict[str, Any] = {
        "200": {
            "description": "records in: `rows`; columns in: one list per field",
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
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("PredictRequest")}},
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
