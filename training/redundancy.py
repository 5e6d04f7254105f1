"""The sensor-redundancy block of the card: each signal predicted from the others, and the
limits of its drift test, chosen on held-out normal operation.

- **weights** (training split): per signal, least squares on the other signals' readings
  and their smoothed values (the EWMA the service keeps), all standardized, after removing
  each signal's slow wander (the detector's baseline): healthy sensors wander slowly and
  independently, and a fit that chased that wander would amplify it, while the faster part
  of the relation (the column's own moves) is what one sensor shares with the others;
- **residual spread** (validation split): the robust spread (median absolute deviation) of
  each residual's departure from its baseline, so rare spikes do not inflate it;
- **limits** (validation split): the detector (``service.monitoring.redundancy``, the very
  code the service runs) is replayed over validation; each signal's statistic has peaks
  (maxima of its runs above its 90th percentile) whose excess is close to exponential.
  The excess is fitted by its mean and extrapolated to the level a peak exceeds at the
  design rate, ``FALSE_ALARMS_PER_WEEK`` per stream shared among the signals; the limit is
  also at least ``MARGIN`` times the highest value validation showed (as every other alarm:
  ``training.calibration``), since a few days of validation cannot show every way normal
  operation moves.

The design rate and the windows are the knobs; the rest follows from the data, so the
same defaults fit any unit (docs/replay.md reports the false alarms and delays they give).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.card import SensorRedundancy
from service.monitoring.redundancy import RedundancyDrift, RedundancyModel

FALSE_ALARMS_PER_WEEK = 0.1  # design rate per stream (all signals): one in ten weeks
SMOOTH_SAMPLES = 10.0  # the regressors' EWMA (rows)
BASELINE_SAMPLES = 60.0  # each residual's slow baseline (rows)
FAST_SAMPLES = 5.0  # the departure's average (rows)
CLIP_SD = 8.0  # departures clipped at this many residual spreads (a spike: 20 and more)
RELEASE = 0.5  # a flagged signal clears below this share of its limit
ON_DELAY_SAMPLES = 3 * int(FAST_SAMPLES)  # rows over the limit before a signal is flagged
MARGIN = 2.0  # limits at least this many times the highest value on validation
TAIL_QUANTILE = 0.9  # the statistic above this quantile forms the peaks fitted
MIN_PEAKS = 20  # peaks needed to extrapolate
MIN_SIGNALS = 3  # fewer signals than this: no redundancy to speak of
RIDGE = 1e-6  # relative ridge of the normal equations, for collinear sensors only
MAD_TO_SD = 1.4826


def ewma_columns(values: FloatArray, samples: float) -> FloatArray:
    """EWMA down the rows with time constant ``samples``, started at the first row (the
    service's recursion)."""
    frame = pd.DataFrame(values)
    return np.asarray(frame.ewm(alpha=1.0 - math.exp(-1.0 / samples), adjust=False).mean())


def fit_weights(target: FloatArray, regressors: FloatArray) -> FloatArray:
    """[k m, m] least-squares weights, column j predicting ``target[:, j]`` from the
    columns of ``regressors`` [n, k m] (k blocks of the m signals) that are not signal j."""
    m, width = target.shape[1], regressors.shape[1]
    gram = regressors.T @ regressors / len(regressors)
    cross = regressors.T @ target / len(regressors)
    weights = np.zeros((width, m))
    for j in range(m):
        others = [i for i in range(width) if i % m != j]
        a = gram[np.ix_(others, others)]
        a = a + RIDGE * np.trace(a) / len(others) * np.eye(len(others))
        weights[others, j] = np.linalg.solve(a, cross[others, j])
    return weights


def peaks(stat: FloatArray, level: float) -> FloatArray:
    """Maximum of each run of ``stat`` above ``level``."""
    on = stat > level
    edges = np.flatnonzero(np.diff(np.r_[0, on.astype(np.int8), 0]))
    return np.array([stat[a:b].max() for a, b in zip(edges[::2], edges[1::2], strict=True)])


def tail_limit(stat: FloatArray, rate_per_sample: float) -> float | None:
    """The level the statistic's peaks exceed ``rate_per_sample`` times per sample,
    extrapolated from the exponential tail of its peaks; None with too few peaks."""
    start = float(np.quantile(stat, TAIL_QUANTILE))
    found = peaks(stat, start)
    if len(found) < MIN_PEAKS:
        return None
    excess = float(np.mean(found - start))
    seen = len(found) / len(stat)  # peaks per sample
    return start + excess * math.log(max(seen / rate_per_sample, 1.0))


def _onsets(flags: NDArray[np.bool_]) -> int:
    before = np.r_[np.zeros((1, flags.shape[1]), dtype=bool), flags[:-1]]
    return int(np.sum(flags & ~before))


def _model(
    names: tuple[str, ...],
    mean: FloatArray,
    scale: FloatArray,
    weights: FloatArray,
    sd: FloatArray,
    limit: FloatArray,
    on_delay: int,
) -> RedundancyModel:
    return RedundancyModel(
        names,
        np.arange(len(names), dtype=np.intp),
        mean,
        scale,
        weights,
        math.exp(-1.0 / SMOOTH_SAMPLES),
        math.exp(-1.0 / BASELINE_SAMPLES),
        math.exp(-1.0 / FAST_SAMPLES),
        CLIP_SD,
        sd,
        limit,
        RELEASE,
        on_delay,
    )


def _replay(model: RedundancyModel, rows: FloatArray, validation: NDArray[np.bool_]) -> FloatArray:
    """The statistic over its limit on the validation rows, the detector settled on the
    rows before them."""
    first = int(np.flatnonzero(validation)[0])
    warm = max(first - round(10 * BASELINE_SAMPLES), 0)
    detector = RedundancyDrift(model)
    detector.observe(rows[warm:first])
    out = []
    for row in rows[validation]:
        detector.observe(row[None, :])
        out.append(detector.ratios())
    return np.array(out)


def calibrate_redundancy(
    raw: FloatArray,
    signals: Sequence[str],
    train: NDArray[np.bool_],
    validation: NDArray[np.bool_],
    sample_interval_s: float | None,
    *,
    on_delay: int = ON_DELAY_SAMPLES,
    margin: float = MARGIN,
) -> SensorRedundancy | None:
    """The block for raw rows ``raw`` [N, S] (NaN: missing or invalid) of ``signals``, the
    rows of each split marked; None when it cannot be calibrated (too few signals, rows
    or peaks, or no sample interval to count weeks in). ``on_delay`` and ``margin`` are
    the defaults' knobs, open for the benchmark that weighs them (``bench.drift_sweep``)."""
    if sample_interval_s is None or not validation.any():
        return None
    filled = pd.DataFrame(raw).ffill().bfill().to_numpy()
    mean, scale = filled[train].mean(axis=0), filled[train].std(axis=0)
    use = np.flatnonzero(np.isfinite(scale) & (scale > 0))
    if len(use) < MIN_SIGNALS or train.sum() < 10 * len(use):
        return None
    z = (filled[:, use] - mean[use]) / scale[use]
    both = np.hstack([z, ewma_columns(z, SMOOTH_SAMPLES)])
    target = z - ewma_columns(z, BASELINE_SAMPLES)
    regressors = both - ewma_columns(both, BASELINE_SAMPLES)
    weights = fit_weights(target[train], regressors[train])
    residual = z - both @ weights
    departure = (residual - ewma_columns(residual, BASELINE_SAMPLES))[validation]
    sd = MAD_TO_SD * np.median(np.abs(departure - np.median(departure, axis=0)), axis=0)
    if len(departure) < 10 * BASELINE_SAMPLES or not (sd > 0).all():
        return None
    names = tuple(signals[int(i)] for i in use)
    rows = filled[:, use]
    unit = _model(names, mean[use], scale[use], weights, sd, np.ones(len(use)), on_delay)
    stat = _replay(unit, rows, validation)
    rate = FALSE_ALARMS_PER_WEEK / len(use) / (7 * 86400 / sample_interval_s)
    limit = []
    for j in range(len(use)):
        level = tail_limit(stat[:, j], rate)
        if level is None:
            return None
        limit.append(max(level, margin * float(stat[:, j].max())))
    final = _model(names, mean[use], scale[use], weights, sd, np.array(limit), on_delay)
    flags = RedundancyDrift(final).observe(rows[validation])
    return SensorRedundancy(
        signals=list(names),
        mean=mean[use].tolist(),
        scale=scale[use].tolist(),
        weights=weights.tolist(),
        smooth_samples=SMOOTH_SAMPLES,
        baseline_samples=BASELINE_SAMPLES,
        fast_samples=FAST_SAMPLES,
        clip_sd=CLIP_SD,
        residual_sd=sd.tolist(),
        limit=limit,
        release=RELEASE,
        on_delay_samples=on_delay,
        margin=margin,
        false_alarms_per_week=FALSE_ALARMS_PER_WEEK,
        validation_samples=int(validation.sum()),
        validation_onsets=_onsets(flags),
    )
