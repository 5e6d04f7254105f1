"""The minimal reference app of benchmark_protocol.md section 4: FastAPI + onnxruntime, one
endpoint, no validation, no metrics. It takes the assembled feature row(s) as ``x`` and
returns the estimates. Started by ``bench.service`` with uvicorn, like the real service.

    SOFTSENSOR_BENCH_MODEL=path/to/model.onnx uvicorn --factory bench.reference_app:create
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request


def create() -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        os.environ["SOFTSENSOR_BENCH_MODEL"], options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await request.json()
        x = np.asarray(body["x"], dtype=np.float32).reshape(-1, session.get_inputs()[0].shape[1])
        y = session.run(None, {name: x})[0]
        return {"y": y.ravel().tolist()}

    return app
