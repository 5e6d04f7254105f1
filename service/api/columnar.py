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

from service.api.schemas import PredictRequest
from service.contracts.arrays import FloatArray
from service.contracts.errors import PayloadTooLargeError

BULK_BYTES = 64 * 1024  # below this, pydantic alone is as quick
_NUMBERS: Final = (
    "d"  # simdjson buffer type: float64 (JSON integers are converted, as pydantic does)
)
_SCALARS = (str, int, float, type(None))


def read_predict(body: bytes, max_rows: int | None = None) -> PredictRequest:
    """The validated request; raises pydantic's ``ValidationError`` naming a bad field, or
    PayloadTooLargeError when a large body holds more than ``max_rows`` rows: counted on
    simdjson's parse, before a single row is validated."""
    if len(body) >= BULK_BYTES:
        try:
            doc = simdjson.Parser().parse(body)
        except (ValueError, RuntimeError):  # not JSON: the schema names the problem
            doc = None
        if isinstance(doc, simdjson.Object):
            if max_rows is not None:
                check_rows(_count_rows(doc), max_rows)
            bulk = _read_numeric_columns(doc)
            if bulk is not None:
                return bulk
    return PredictRequest.model_validate_json(body)


def check_rows(rows: int, max_rows: int) -> None:
    """The one row limit of a request, for every layout and protocol."""
    if rows > max_rows:
        raise PayloadTooLargeError(f"{rows} rows exceed the limit of {max_rows} per request")


def _count_rows(doc: simdjson.Object) -> int:
    """Rows a parsed body carries, as the schema would count them (0 if it cannot say)."""
    records = doc.get("records")
    if isinstance(records, simdjson.Array):
        return len(records)
    columns = doc.get("columns")
    if isinstance(columns, simdjson.Object):
        return max((len(v) for v in columns.values() if isinstance(v, simdjson.Array)), default=0)
    return 0


def _read_numeric_columns(doc: simdjson.Object) -> PredictRequest | None:
    """The request with ``columns`` and ``timestamp`` as arrays, or None to let the schema
    decide (any value that is not a plain finite number, or any other doubt)."""
    try:
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


def _floats(value: Any) -> FloatArray:
    if not isinstance(value, simdjson.Array):
        raise TypeError("not a list")
    return np.frombuffer(value.as_buffer(of_type=_NUMBERS), dtype=np.float64)
