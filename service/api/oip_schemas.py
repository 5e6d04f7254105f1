"""Open Inference Protocol v2 bodies (KServe / Triton HTTP), as ``service.api.oip`` reads
and answers them: one feature matrix in, the estimates out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# Numbers, flat or nested in row-major order. Checked by the route itself (iteratively, so
# that a deep nesting cannot exhaust the stack); the schema says what it accepts.
TensorData = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"anyOf": [{"type": "number"}, {"type": "array", "items": {}}]},
            "description": "numbers, flat or nested, row-major; no booleans, strings or nulls",
        }
    ),
]


class V2Tensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    # The models served take a feature matrix: [rows, features], at least one row.
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=2, max_length=2)
    datatype: Literal["FP32", "FP64", "FP16", "INT32", "INT64"]
    parameters: dict[str, Any] | None = None
    data: TensorData


class V2RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor] = Field(min_length=1, max_length=1)  # one feature matrix
    outputs: list[V2RequestOutput] | None = None


class V2OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2OutputTensor]


class V2TensorMeta(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMeta]
    outputs: list[V2TensorMeta]
