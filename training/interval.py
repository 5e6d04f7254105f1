"""The prediction interval of the card: split conformal on the validation split, for the
bias-corrected estimate the service serves.

The service's bias filter is replayed over the analyzer results in the order and at the
delay they arrive, and each result's score is its error over a scale that follows the
estimate's level (fitted on the training split). Where the spec declares the analyzer's
repeatability, the interval is narrowed by the analyzer's share of the scores' variance,
so that it covers the truth rather than the next lab value.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from service.contracts.arrays import FloatArray
from service.contracts.card import IntervalCalibration
from training.data import Dataset
from training.spec import RepeatabilitySpec

COVERAGE = 0.95  # the interval's promise
BIAS_GAIN = 0.3  # the service's default bias filter gain (service.lab.bias.DEFAULT_GAIN)
MAX_ANALYZER_SHARE = 0.75  # the interval narrows to half its lab-result width at most
SHARE_CONFIDENCE = 0.95  # the residual variance behind the share: its upper bound at this level
IntArray = NDArray[np.intp]


def replay_bias(
    index: IntArray, y: FloatArray, estimate: FloatArray, delay: int, gain: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The bias filter over results arriving ``delay`` rows after their sample.

    Returns the corrected estimate at each result's sample time (the bias of the results
    known by then), each result's innovation (its residual minus the bias it met) and the
    bias after each result.
    """
    order = np.argsort(index, kind="stable")
    index, y, estimate = index[order], y[order], estimate[order]
    corrected = np.empty_like(estimate)
    innovation = np.empty_like(estimate)
    path = np.empty_like(estimate)
    bias, known = 0.0, 0
    for k in range(len(index)):
        while known < len(index) and index[known] + delay <= index[k]:
            residual = y[known] - estimate[known]
            innovation[known] = residual - bias
            bias = (1 - gain) * bias + gain * residual
            path[known] = bias
            known += 1
        corrected[k] = estimate[k] + bias
    for j in range(known, len(index)):  # results that arrive after the last sample
        residual = y[j] - estimate[j]
        innovation[j] = residual - bias
        bias = (1 - gain) * bias + gain * residual
        path[j] = bias
    return corrected, innovation, path


def level_scale(corrected: FloatArray, floor: float, power: float) -> FloatArray:
    return np.asarray(np.maximum(np.abs(corrected), floor) ** power)


def calibrate_interval(
    dataset: Dataset, est: dict[str, FloatArray], delay: int
) -> IntervalCalibration:
    train, val = dataset.train, dataset.validation
    low, high = dataset.spec.target.range
    floor = max(float(np.quantile(np.abs(train.y), 0.05)), 1e-3 * (high - low))
    c_train, _, _ = replay_bias(train.index, train.y, est["train"], delay, BIAS_GAIN)
    level = np.log(np.maximum(np.abs(c_train), floor))
    spread = np.log(np.abs(train.y - c_train) + 1e-12 * (high - low))
    power = 0.0
    if np.ptp(level) > 0:  # the slope of log |error| on log level, within [0, 1]
        power = float(np.clip(np.polyfit(level, spread, 1)[0], 0.0, 1.0))
    c_val, _, _ = replay_bias(val.index, val.y, est["validation"], delay, BIAS_GAIN)
    scale = level_scale(c_val, floor, power)
    raw = (val.y - c_val) / scale
    scores = np.sort(raw)
    n, alpha = len(scores), 1.0 - COVERAGE
    lo = scores[max(math.floor((n + 1) * alpha / 2), 1) - 1]
    hi = scores[min(math.ceil((n + 1) * (1 - alpha / 2)), n) - 1]
    share = _analyzer_share(dataset.spec.target.repeatability, val.y, scale, raw)
    if share is not None:  # narrow the quantiles about the median by the truth's share
        centre, k = float(np.median(raw)), math.sqrt(1.0 - share)
        lo, hi = centre + k * (lo - centre), centre + k * (hi - centre)
    inside = float(np.mean((scores >= lo) & (scores <= hi)))
    return IntervalCalibration(
        coverage=COVERAGE,
        low=float(lo),
        high=float(hi),
        scale_power=power,
        scale_floor=floor,
        bias_gain=BIAS_GAIN,
        results=n,
        validation_coverage=inside,
        covers="analyzer" if share is None else "truth",
        analyzer_share=share or 0.0,
    )


def _analyzer_share(
    repeatability: RepeatabilitySpec | None, lab: FloatArray, scale: FloatArray, scores: FloatArray
) -> float | None:
    """The share of the scores' variance that is the analyzer's own scatter, or None when
    the spec declares none.

    A lab result is the truth plus the analyzer's error, independent of the estimate's, so
    the variances add: what is left for the estimate is ``1 - share`` of the scores'
    variance, and the interval around the truth is ``sqrt(1 - share)`` as wide. The share
    is capped so that a declared scatter larger than the residuals themselves (a wrong data
    sheet) cannot shrink the interval to nothing.

    The declared scatter is taken as known, the residuals' variance is estimated from n
    results: the share uses that variance at its one-sided 95 % upper confidence bound
    (chi-square), so a short validation window, whose few readings may happen to scatter
    less than the data sheet says, errs towards a wider interval.
    """
    if repeatability is None:
        return None
    noise = (repeatability.relative_sd * lab) ** 2 + repeatability.absolute_sd**2
    n = len(scores)
    spread = float(np.mean((scores - np.median(scores)) ** 2))
    if spread <= 0 or n < 2:
        return 0.0
    upper = spread * (n - 1) / float(stats.chi2.ppf(1.0 - SHARE_CONFIDENCE, n - 1))
    share = float(np.mean(noise / scale**2)) / upper
    return min(share, MAX_ANALYZER_SHARE)
