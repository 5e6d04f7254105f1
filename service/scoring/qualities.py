"""The quality of every value a request sent, as a [n, S] matrix of good, uncertain, bad.

A value's quality comes from what the historian sent beside it (``quality``: a symbol or a
number in the request's ``quality_encoding``, read by ``service.plant.quality``), or from the
value itself: a digital state's name where a number belongs ("I/O Timeout", "Shutdown", as PI
sends it) is a bad value. Missing quality is good. A bad value is treated as missing, so the
card's policy substitutes it (carried forward) like a value not sent; the status rules
(``service.scoring.status``) then judge the row from the qualities.

``None`` stands for "all good", so a request without qualities costs nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.api.schemas import PredictRequest, QualityEncoding
from service.contracts.arrays import FloatArray
from service.contracts.errors import BadInputError, shown_names
from service.plant.quality import Quality, from_number, from_text
from service.scoring.runtime import LoadedModel

Qualities = NDArray[np.int8] | None  # [n, S]: 0 good, 1 uncertain, 2 bad; None: all good


def read_quality(value: Any, encoding: QualityEncoding | None, where: str) -> Quality:
    """One sent quality on the one scale."""
    if value is None:
        return Quality.GOOD
    if isinstance(value, str):
        return from_text(value, where)
    return from_number(float(value), encoding, where)


def _check_names(model: LoadedModel, given: Mapping[str, Any], where: str) -> None:
    unknown = sorted(given.keys() - model.known_signals)
    if unknown:
        raise BadInputError(
            f"{where}: unknown signals {shown_names(unknown)} for model {model.name!r}"
        )


def record_qualities(
    model: LoadedModel, req: PredictRequest, table: Sequence[Sequence[Any]]
) -> Qualities:
    """Per record and signal: the sent quality, and bad for a digital state."""
    names = model.raw_signals
    out = np.zeros((len(table), len(names)), dtype=np.int8)
    for i, (rec, row) in enumerate(zip(req.records or (), table, strict=True)):
        for j, v in enumerate(row):
            if isinstance(v, str):
                out[i, j] = Quality.BAD
        if rec.quality is None:
            continue
        where = f"records[{i}].quality"
        _check_names(model, rec.quality, where)
        for j, s in enumerate(names):
            if s in rec.quality:
                q = read_quality(rec.quality[s], req.quality_encoding, f"{where}.{s}")
                out[i, j] = max(out[i, j], q)
    return out if out.any() else None


def column_qualities(model: LoadedModel, req: PredictRequest, n: int) -> Qualities:
    """Per row and signal of a columnar request: the sent quality lists, and bad for a
    digital state in a column."""
    names, columns = model.raw_signals, req.columns or {}
    out = np.zeros((n, len(names)), dtype=np.int8)
    for j, s in enumerate(names):
        column = columns[s]
        if not isinstance(column, np.ndarray):  # a bulk-read column holds numbers only
            for i, v in enumerate(column):
                if isinstance(v, str):
                    out[i, j] = Quality.BAD
    if req.quality is not None:
        _check_names(model, req.quality, "quality")
        for j, s in enumerate(names):
            for i, q in enumerate(req.quality.get(s, ())):
                if q is not None:
                    sent = read_quality(q, req.quality_encoding, f"quality.{s}[{i}]")
                    out[i, j] = max(out[i, j], sent)
    return out if out.any() else None


def bad_as_missing(values: FloatArray, quality: Qualities) -> FloatArray:
    """The values with every bad one made missing (NaN), to be substituted like a gap."""
    if quality is None:
        return values
    bad = quality == Quality.BAD
    if not bad.any():
        return values
    out = np.array(values, dtype=np.float64)
    out[bad] = np.nan
    return out
