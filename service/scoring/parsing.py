"""A predict request's rows as a matrix in the model's signal order, with checked times.

Records and columns both become a ``Series`` [n, S] over the model's raw signals (null as
NaN, imputed later), with POSIX times in strictly increasing order. Every refusal names the
field and the reason.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from service.api.schemas import PredictRequest
from service.contracts.arrays import FloatArray
from service.contracts.errors import BadInputError, PayloadTooLargeError, shown_names
from service.scoring.rows import Series
from service.scoring.runtime import LoadedModel
from service.state.clock import to_posix


def _floats(values: list[float | None]) -> FloatArray:
    """A JSON number list as floats, null as NaN; the common all-numbers case stays in C."""
    try:
        return np.asarray(values, dtype=np.float64)
    except TypeError:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def check_rows(n: int, limit: int) -> None:
    if n == 0:
        raise BadInputError("no rows: send at least one record")
    if n > limit:
        raise PayloadTooLargeError(f"{n} rows exceed the limit of {limit} per request")


def in_order(times: FloatArray) -> FloatArray:
    steps = np.diff(times)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        what = "duplicated" if steps[bad[0]] == 0 else "earlier than the row before"
        raise BadInputError(f"timestamp[{int(bad[0]) + 1}]: {what}; rows must be in time order")
    return times


def _times(model: LoadedModel, stamps: list[Any], n: int) -> FloatArray:
    given = n - stamps.count(None)
    if given == 0:
        if n > 1 and model.history > 0:
            raise BadInputError(
                "timestamp: required for more than one row when the model uses lags"
            )
        return np.array([time.time()] * n)
    if given != n:
        raise BadInputError("timestamp: give it for every row or for none")
    try:  # POSIX seconds throughout: one C-level conversion
        times = np.asarray(stamps, dtype=np.float64)
    except TypeError:
        times = np.array([to_posix(s) for s in stamps], dtype=np.float64)
    return in_order(times)


def _record_table(model: LoadedModel, req: PredictRequest) -> FloatArray:
    known, names, needed = model.known_signals, model.raw_signals, model.raw_signal_set
    table = []
    for i, rec in enumerate(req.records or ()):
        got = rec.values
        keys = got.keys()
        if not keys <= known or not needed <= keys:
            unknown, missing = sorted(keys - known), sorted(needed - keys)
            raise BadInputError(
                f"records[{i}].values: unknown signals {shown_names(unknown)}, missing signals "
                f"{missing} for model {model.name!r} (send null for a value that is "
                "not available)"
            )
        table.append([got[s] for s in names])
    try:
        return np.array(table, dtype=np.float64)
    except TypeError:  # a null somewhere: not available, imputed later
        return np.array(
            [[np.nan if v is None else v for v in row] for row in table], dtype=np.float64
        )


def read_series(model: LoadedModel, req: PredictRequest, max_rows: int) -> tuple[Series, Any]:
    """The request's rows as a [n, S] series in the model's signal order, and the timestamps
    as sent (echoed back unchanged)."""
    if req.records is not None:
        check_rows(len(req.records), max_rows)
        values = _record_table(model, req)
        stamps: list[Any] = [r.timestamp for r in req.records]
        return Series(_times(model, stamps, len(stamps)), values), stamps
    names = model.raw_signals
    columns = req.columns or {}
    unknown = sorted(columns.keys() - model.known_signals)
    missing = sorted(set(names) - columns.keys())
    if unknown or missing:
        raise BadInputError(
            f"columns: unknown signals {shown_names(unknown)}, missing signals {missing} for model "
            f"{model.name!r}"
        )
    n = len(columns[names[0]]) if names else 0
    check_rows(n, max_rows)
    by_signal = np.empty((len(names), n))  # contiguous per signal, then viewed [n, S]
    for j, s in enumerate(names):
        by_signal[j] = _floats(columns[s])
    if isinstance(req.timestamp, np.ndarray):  # read in bulk: numbers, all finite
        return Series(in_order(req.timestamp), by_signal.T), req.timestamp
    stamps = list(req.timestamp) if req.timestamp is not None else [None] * n
    return Series(_times(model, stamps, n), by_signal.T), stamps


def row_field(req: PredictRequest) -> str:
    """How the error names row ``{i}``'s timestamp in this request's layout."""
    return "records[{i}].timestamp" if req.records is not None else "timestamp[{i}]"
