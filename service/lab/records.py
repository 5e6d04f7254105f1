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

from service.contracts.arrays import all_finite

DEFAULT_STREAM = "default"  # the stream of results and rows that name none
MAX_LIST = 10_000  # a listing is for people and the retraining job; page with ``since``
LAB_COLUMNS = (
    "model, stream, sample_time, value, received, estimate, residual, accepted, reason, result_time"
)
# A voided result as the audit trail keeps it: the record, then who voided it, when and why.
VOID_COLUMNS = f"{LAB_COLUMNS}, voided_at, voided_by, void_reason"

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
    # POSIX s: when the result was known (analyzed, entered), as the client stated it; None
    # when it did not (its delay was then not checked)
    result_time: float | None = None


@dataclass(frozen=True)
class VoidRecord:
    """A lab result an admin voided: out of the stream's history (its bias is replayed
    without it), kept here with who voided it, when and why."""

    record: LabRecord
    voided_at: float  # POSIX s
    voided_by: str  # the admin token's name
    reason: str


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
    model, stream, sample_time, value, received, estimate, residual, accepted, reason, known = row
    return LabRecord(
        model,
        sample_time,
        value,
        received,
        estimate,
        residual,
        bool(accepted),
        reason,
        stream,
        known,
    )


def void_of(row: Sequence[Any]) -> VoidRecord:
    """A VoidRecord from a ``SELECT {VOID_COLUMNS}`` row."""
    return VoidRecord(record_of(row[:10]), row[10], row[11], row[12])


def not_stored(model: str, stream: str, sample_time: float) -> str:
    return (
        f"no lab result of {model!r} stream {stream!r} at sample_time {sample_time} is stored"
        " (voided already? the audit trail lists voids)"
    )


def check_void(by: str, reason: str, at: float) -> tuple[str, str, float]:
    """Who voided, why and when, checked: an audit entry needs all three."""
    return text("by", by), text("reason", reason), finite("at", at)


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
        optional_finite("result_time", r.result_time),
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
        if times.shape != estimates.shape or not (all_finite(times) and all_finite(estimates)):
            raise ValueError(f"predictions of {model}/{stream}: need finite, equal arrays")
    return sum(len(b[2]) for b in batches)


def nearest_query(
    model: str,
    sample_time: float,
    tolerance_s: float,
    stream: str | None,
    mark: str,
    stream_order: str = "stream",
) -> tuple[str, list[Any]]:
    """The query, in one engine's parameter ``mark``, for the stored estimate nearest to
    ``sample_time`` within ``±tolerance_s`` (of any stream unless ``stream`` is given), and
    its parameters. On a tie in distance the later prediction wins, then the first stream
    by name (``stream_order`` sorts names bytewise on every engine), so the answer is
    deterministic."""
    t = finite("sample_time", sample_time)
    tol = finite("tolerance_s", tolerance_s)
    if tol < 0:
        raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
    params: list[Any] = [t, text("model", model)]
    stream_clause = ""
    if stream is not None:
        stream_clause = f" AND stream = {mark}"
        params.append(text("stream", stream))
    query = (
        f"SELECT estimate, ABS(sample_time - {mark}) AS distance FROM predictions"
        f" WHERE model = {mark}{stream_clause} AND sample_time BETWEEN {mark} AND {mark}"
        f" ORDER BY distance, sample_time DESC, {stream_order} LIMIT 1"
    )
    return query, [*params, t - tol, t + tol]


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
