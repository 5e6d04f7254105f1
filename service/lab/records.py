"""What the store keeps, engine-free: a lab result as a record, and the checks every engine
applies before it writes (a NaN or an empty name is the client's mistake, named).

Both engines (``service.lab.store`` on SQLite, ``service.lab.postgres`` on PostgreSQL) read
and write these columns in this order, so a record reads the same whichever one kept it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_STREAM = "default"  # the stream of results and rows that name none
MAX_LIST = 10_000  # a listing is for people and the retraining job; page with ``since``
LAB_COLUMNS = "model, stream, sample_time, value, received, estimate, residual, accepted, reason"

# (model, stream, sample times, estimates) of one stream's scored rows
PredictionBatch = tuple[str, str, NDArray[np.float64], NDArray[np.float64]]


@dataclass(frozen=True)
class LabRecord:
    """One stored lab result, as the service saw it when it arrived."""

    model: str
    sample_time: float  # POSIX s: when the sample was taken (not when it was analyzed)
    value: float
    received: float  # POSIX s: when the service stored it
    estimate: float | None  # raw estimate matched at sample_time, None if none was found
    residual: float | None  # value - estimate
    accepted: bool  # whether it moved the bias
    reason: str | None  # why not, if not
    stream: str = DEFAULT_STREAM


def finite(field: str, value: float) -> float:
    """``value`` as a float; a NaN or infinity is the client's mistake, named."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return number


def optional_finite(field: str, value: float | None) -> float | None:
    return None if value is None else finite(field, value)


def text(field: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    return value


def record_of(row: Sequence[Any]) -> LabRecord:
    """A LabRecord from a ``SELECT {LAB_COLUMNS}`` row."""
    model, stream, sample_time, value, received, estimate, residual, accepted, reason = row
    return LabRecord(
        model, sample_time, value, received, estimate, residual, bool(accepted), reason, stream
    )


def row_of(r: LabRecord) -> tuple[Any, ...]:
    """The validated column values of ``r``, in ``LAB_COLUMNS`` order (accepted as a bool)."""
    if r.reason is not None and not isinstance(r.reason, str):
        raise ValueError(f"reason must be a string or None, got {r.reason!r}")
    return (
        text("model", r.model),
        text("stream", r.stream),
        finite("sample_time", r.sample_time),
        finite("value", r.value),
        finite("received", r.received),
        optional_finite("estimate", r.estimate),
        optional_finite("residual", r.residual),
        bool(r.accepted),
        r.reason,
    )


def prediction_batch(
    model: str, stream: str, rows: Sequence[tuple[float, float]]
) -> PredictionBatch:
    """``(sample_time, estimate)`` pairs as a checked batch; a bad pair is named."""
    text("model", model)
    text("stream", stream)
    for i, (t, e) in enumerate(rows):
        finite(f"rows[{i}].sample_time", t)
        finite(f"rows[{i}].estimate", e)
    times = np.array([t for t, _ in rows], dtype=np.float64)
    estimates = np.array([e for _, e in rows], dtype=np.float64)
    return model, stream, times, estimates


def check_batches(batches: Sequence[PredictionBatch]) -> int:
    """The number of rows in ``batches``; unequal or non-finite arrays raise ValueError."""
    for model, stream, times, estimates in batches:
        if times.shape != estimates.shape or not (
            np.isfinite(times).all() and np.isfinite(estimates).all()
        ):
            raise ValueError(f"predictions of {model}/{stream}: need finite, equal arrays")
    return sum(len(b[2]) for b in batches)


def check_find(sample_time: float, tolerance_s: float) -> tuple[float, float]:
    t = finite("sample_time", sample_time)
    tol = finite("tolerance_s", tolerance_s)
    if tol < 0:
        raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
    return t, tol


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST:
        raise ValueError(f"limit must be in 1..{MAX_LIST}, got {limit}")


def list_filter(
    model: str | None, stream: str | None, since: float | None, mark: str
) -> tuple[str, list[Any]]:
    """The WHERE clause and its parameters of a lab-result listing, checked; ``mark`` is the
    engine's parameter placeholder (``?`` or ``%s``)."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("model", model), ("stream", stream)):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(text(column, value))
    if since is not None:
        clauses.append(f"sample_time >= {mark}")
        params.append(finite("since", since))
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
