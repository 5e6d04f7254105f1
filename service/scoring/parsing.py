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
from service.scoring.qualities import (
    Qualities,
    bad_as_missing,
    column_qualities,
    record_qualities,
)
from service.scoring.rows import Series
from service.scoring.runtime import LoadedModel
from service.state.clock import to_posix


def _floats(values: list[Any] | FloatArray) -> FloatArray:
    """A JSON value list as floats, null and digital states as NaN; the common all-numbers
    case stays in C."""
    if isinstance(values, np.ndarray):  # read in bulk: numbers only
        return values
    if str not in map(type, values):  # numpy would read "1.5" as a number
        try:
            return np.asarray(values, dtype=np.float64)
        except TypeError:
            pass
    return np.array([v if isinstance(v, float | int) else np.nan for v in values])


def check_rows(n: int, limit: int) -> None:
    if n == 0:
        raise BadInputError("no rows: send at least one record")
    if n > limit:
        raise PayloadTooLargeError(f"{n} rows exceed the limit of {limit} per request")


def in_order(times: FloatArray) -> FloatArray:
    if len(times) < 2:  # a poll's row
        return times
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


def _record_table(model: LoadedModel, req: PredictRequest) -> tuple[FloatArray, Qualities]:
    known, names, needed = model.known_signals, model.raw_signals, model.raw_signal_set
    table = []
    marked = False  # some record carries a quality or a digital state
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
        row = [got[s] for s in names]
        table.append(row)
        # numpy would read "1.5" as a number: a text value is a state, found by its type
        marked = marked or rec.quality is not None or str in map(type, row)
    try:
        if marked:
            raise TypeError("a quality or a digital state: read value by value")
        values = np.array(table, dtype=np.float64)
    except TypeError:  # a null (imputed later) or a digital state somewhere
        values = np.array([_floats(row) for row in table], dtype=np.float64)
    if not marked:
        return values, None
    return values, record_qualities(model, req, table)


def read_series(
    model: LoadedModel, req: PredictRequest, max_rows: int
) -> tuple[Series, tuple[Any, Qualities]]:
    """The request's rows as a [n, S] series in the model's signal order (bad values as
    missing), the timestamps as sent (echoed back unchanged) and the values' qualities."""
    if req.records is not None:
        check_rows(len(req.records), max_rows)
        values, quality = _record_table(model, req)
        stamps: list[Any] = [r.timestamp for r in req.records]
        return Series(_times(model, stamps, len(stamps)), bad_as_missing(values, quality)), (
            stamps,
            quality,
        )
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
    quality = column_qualities(model, req, n)
    values = bad_as_missing(by_signal.T, quality)
    if isinstance(req.timestamp, np.ndarray):  # read in bulk: numbers, all finite
        return Series(in_order(req.timestamp), values), (req.timestamp, quality)
    stamps = list(req.timestamp) if req.timestamp is not None else [None] * n
    return Series(_times(model, stamps, n), values), (stamps, quality)


def row_field(req: PredictRequest) -> str:
    """How the error names row ``{i}``'s timestamp in this request's layout."""
    return "records[{i}].timestamp" if req.records is not None else "timestamp[{i}]"
