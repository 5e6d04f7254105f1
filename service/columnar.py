"""Reading a large predict body: numeric columns go straight into float64 arrays.

A 100k-row columnar batch carries over a million JSON numbers. Validated one Python float
at a time (pydantic, then numpy) they cost more than scoring them. When every column and
the timestamps are plain JSON numbers, simdjson hands each list over as one float64
buffer. Anything else (nulls, strings, booleans, ISO dates, records, a malformed body)
goes to the pydantic schema, which accepts it or names the bad field exactly as for a
small body: this path only ever takes the bodies the schema would take, never rejects one.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import simdjson
from numpy.typing import NDArray

from service.schemas import PredictRequest

BULK_BYTES = 64 * 1024  # below this, pydantic alone is as quick
_NUMBERS: Final = (
    "d"  # simdjson buffer type: float64 (JSON integers are converted, as pydantic does)
)
_SCALARS = (str, int, float, type(None))


def read_predict(body: bytes) -> PredictRequest:
    """The validated request; raises pydantic's ``ValidationError`` naming a bad field."""
    if len(body) >= BULK_BYTES:
        bulk = _read_numeric_columns(body)
        if bulk is not None:
            return bulk
    return PredictRequest.model_validate_json(body)


def _read_numeric_columns(body: bytes) -> PredictRequest | None:
    """The request with ``columns`` and ``timestamp`` as arrays, or None to let the schema
    decide (any value that is not a plain finite number, or any other doubt)."""
    try:
        doc = simdjson.Parser().parse(body)
        if not isinstance(doc, simdjson.Object):
            return None
        columns = doc.get("columns")
        if not isinstance(columns, simdjson.Object) or "records" in doc:
            return None
        arrays = {name: _floats(columns[name]) for name in columns}
        stamps = doc.get("timestamp")
        times = None if stamps is None else _floats(stamps)
        head: dict[str, Any] = {k: doc[k] for k in doc if k not in ("columns", "timestamp")}
    except (ValueError, TypeError, KeyError, RuntimeError):  # simdjson's parse and type errors
        return None
    if not all(isinstance(v, _SCALARS) for v in head.values()):
        return None
    lengths = {len(a) for a in arrays.values()} | (set() if times is None else {len(times)})
    if len(lengths) > 1:
        return None
    if not all(np.isfinite(a).all() for a in arrays.values()):
        return None
    # The small fields (model, stream, unknown keys) through the schema as usual.
    checked = PredictRequest.model_validate(head | {"columns": {}})
    return checked.model_copy(update={"columns": arrays, "timestamp": times})


def _floats(value: Any) -> NDArray[np.float64]:
    if not isinstance(value, simdjson.Array):
        raise TypeError("not a list")
    return np.frombuffer(value.as_buffer(of_type=_NUMBERS), dtype=np.float64)
