"""The numbers a row is served: estimate, bias-corrected estimate and its interval.

All are clamped to the target's physical range (an impurity is never negative), and the
row says so (``clamped``). The interval is the card's calibrated one
(``service.contracts.card.IntervalCalibration``: split conformal, its width following the
estimate's level); a card without calibration falls back to its validation residual
quantiles.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.card import IntervalCalibration, ModelCard

Numbers = tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]


def served_numbers(
    card: ModelCard,
    interval: IntervalCalibration | None,
    estimate: FloatArray,
    bias: float,
    quantiles: tuple[str, str],
) -> Numbers:
    """(estimate, corrected, interval low, interval high, clamped) of each row."""
    target = card.target.valid_range
    if len(estimate) == 1 and interval is not None:
        return _one_row(float(estimate[0]), bias, target.low, target.high, interval)
    corrected = estimate + bias
    clamped = (np.minimum(estimate, corrected) < target.low) | (
        np.maximum(estimate, corrected) > target.high
    )
    if clamped.any():
        estimate = np.clip(estimate, target.low, target.high)
        corrected = np.clip(corrected, target.low, target.high)
    if interval is not None:
        scale = np.maximum(np.abs(corrected), interval.scale_floor) ** interval.scale_power
        low, high = corrected + interval.low * scale, corrected + interval.high * scale
    else:
        q = card.residual_quantiles
        low, high = corrected + q.get(quantiles[0], 0.0), corrected + q.get(quantiles[1], 0.0)
    return (
        estimate,
        corrected,
        np.maximum(low, target.low),
        np.minimum(high, target.high),
        clamped,
    )


def _one_row(
    e: float, bias: float, low: float, high: float, interval: IntervalCalibration
) -> Numbers:
    """``served_numbers`` of one row in Python floats (the same IEEE operations, without
    numpy's per-call cost, which dominates a one-row request)."""
    c = e + bias
    clamped = min(e, c) < low or max(e, c) > high
    if clamped:
        e, c = min(max(e, low), high), min(max(c, low), high)
    scale = max(abs(c), interval.scale_floor) ** interval.scale_power
    lo, hi = max(c + interval.low * scale, low), min(c + interval.high * scale, high)
    row = np.array([e, c, lo, hi])  # one array, four views
    return row[0:1], row[1:2], row[2:3], row[3:4], np.array([clamped])
