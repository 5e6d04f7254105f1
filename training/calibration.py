"""What the served number promises, calibrated on the exported model's own estimates.

The card's calibration block (``service.contracts.card.Calibration``) is computed here, after
export, from the ONNX graph the service will run (whatever network produced it), so the interval
and the alarms describe the number a plant is served:

- **interval**: split conformal on the validation split, for the *bias-corrected* estimate:
  the service's bias filter is replayed over the analyzer results in the order and at the
  delay they arrive, and each result's score is its error over a scale that follows the
  estimate's level (fitted on the training split) (``training.interval``);
- **inputs**: a PCA of the input signals on the training split, with T2 and SPE limits at
  the 99 % quantile of the validation split, and each column's residual spread;
- **training range**: per feature, the range of the training file, widened by 5 %;
- **alarms**: every window and threshold from held-out normal operation (the validation
  split), ``ALARM_MARGIN`` times the largest value its statistic reached there;
- **redundancy**: each sensor predicted from the others, and its drift test's limits at a
  design false-alarm rate (``training.redundancy``).

Statistics that need consecutive rows (frozen stretches, EWMAs, run lengths) read the
training file again at full resolution: a dataset's parts hold only the labelled rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.card import (
    AlarmCalibration,
    Calibration,
    InputPCA,
    IntervalCalibration,
    SensorRedundancy,
    TrainingRange,
)
from service.contracts.features import FeaturePlan, LagFeature
from training.data import Dataset, read_table
from training.export import ExportedModel, run_onnx
from training.interval import BIAS_GAIN, calibrate_interval, level_scale, replay_bias
from training.redundancy import calibrate_redundancy, ewma_columns

LIMIT_QUANTILE = 0.99  # T2 and SPE limits
EXPLAINED = 0.99  # PCA components: the fewest that explain this share of the variance
RANGE_MARGIN = 0.05  # training range widened by this share of its span on each side
ALARM_MARGIN = 2.0  # thresholds: this many times the largest value on held-out normal data
DRIFT_FAST_SAMPLES = 15.0  # sensor drift: fast EWMA of the residual ...
DRIFT_SLOW_SAMPLES = 360.0  # ... minus a slow one, so a sensor's slow wander is not a fault
DRIFT_LIMIT_FLOOR = 1.0  # residual standard deviations
OUTSIDE_MIN_SAMPLES = 30  # at least this long outside the training range before drift
BIAS_ALARM_FLOOR_SD = 2.0  # the residual alarm at least this many innovation spreads
BIAS_CLIP_HEADROOM = 1.25  # the bias may reach this times the alarm level (at high levels)
CHANGE_TOLERANCE = 1e-9  # as service.monitoring.changes: a smaller relative step is no change
FROZEN_QUANTILE = 0.999  # of a signal's runs of equal values: its normal repeat
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class _Rows:
    """The training file at full resolution, assembled for the exported model."""

    x: FloatArray  # [n, F] kept features
    row: IntArray  # data row of each x row
    raw: FloatArray  # [N, S] measured signals as read (NaN where missing or invalid)
    signals: tuple[str, ...]


def _plan(dataset: Dataset, kept: Sequence[int]) -> tuple[FeaturePlan, list[LagFeature]]:
    """The feature assembly of a model using the spec's features ``kept``, as
    ``service.scoring.runtime`` builds it from the card."""
    spec = dataset.spec
    features = [spec.lag_features()[i] for i in kept]
    needed = {f.signal for f in features}
    for d in reversed(spec.derived):
        if d.name in needed:
            needed |= set(d.combine)
    measured = [s.name for s in spec.signals if s.name in needed]
    if spec.target.name in needed:
        measured.append(spec.target.name)
    derived = tuple(d for d in spec.derived_signals() if d.name in needed)
    return FeaturePlan(tuple(measured), derived, tuple(features)), features


def _read_rows(dataset: Dataset, plan: FeaturePlan) -> _Rows:
    """Every row of the training file through the model's assembly; values outside their
    valid range count as missing and are carried forward, like a historian's gaps."""
    spec = dataset.spec
    frame = read_table(Path(dataset.source), spec)
    columns = []
    for name in plan.signals:
        low, high = spec.describe(name).range
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, copy=True)
        values[~((values >= low) & (values <= high))] = np.nan
        columns.append(values)
    raw = np.column_stack(columns)
    filled = pd.DataFrame(raw).ffill().to_numpy()
    x = plan.assemble(filled)
    row = np.arange(plan.history, plan.history + len(x), dtype=np.intp)
    ok = np.isfinite(x).all(axis=1)
    return _Rows(x[ok], row[ok], raw, plan.signals)


def _pca_columns(features: Sequence[LagFeature]) -> list[int]:
    """One column per input signal: its feature at the smallest lag."""
    best: dict[str, int] = {}
    for i, f in enumerate(features):
        if f.signal not in best or f.lag < features[best[f.signal]].lag:
            best[f.signal] = i
    return sorted(best.values())


def _spans(dataset: Dataset, rows: _Rows) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Full-resolution rows of the training and of the validation split's time spans."""
    start_val, start_test = int(dataset.validation.index[0]), int(dataset.test.index[0])
    return rows.row < start_val, (rows.row >= start_val) & (rows.row < start_test)


def _pca(
    x: FloatArray,
    train: NDArray[np.bool_],
    val: NDArray[np.bool_],
    names: list[str],
    signals: list[str],
) -> tuple[InputPCA, FloatArray]:
    """The PCA, its limits, and the validation rows' standardized residuals."""
    mean = x[train].mean(axis=0)
    scale = x[train].std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x[train] - mean) / scale
    _, sv, vt = np.linalg.svd(z, full_matrices=False)
    variances = sv**2 / max(len(z) - 1, 1)
    share = np.cumsum(variances) / variances.sum()
    m = x.shape[1]
    k = min(int(np.searchsorted(share, EXPLAINED)) + 1, max(m - 1, 1))
    loadings = vt[:k]
    zv = (x[val] - mean) / scale
    scores = zv @ loadings.T
    t2 = np.sum(scores**2 / variances[:k], axis=1)
    residual = (zv - scores @ loadings) * scale
    spe = np.sum((residual / scale) ** 2, axis=1)
    residual_sd = residual.std(axis=0)
    residual_sd = np.where(residual_sd > 0, residual_sd, 1e-9 * scale)
    pca = InputPCA(
        features=names,
        signals=signals,
        mean=mean.tolist(),
        scale=scale.tolist(),
        components=loadings.tolist(),
        variances=variances[:k].tolist(),
        explained=float(min(share[k - 1], 1.0)),
        limit_quantile=LIMIT_QUANTILE,
        t2_limit=float(np.quantile(t2, LIMIT_QUANTILE)),
        spe_limit=float(np.quantile(spe, LIMIT_QUANTILE)),
        residual_sd=residual_sd.tolist(),
    )
    return pca, residual / residual_sd


def _longest_run(flags: NDArray[np.bool_]) -> int:
    """The longest stretch of consecutive True values."""
    if not flags.any():
        return 0
    edges = np.flatnonzero(np.diff(np.r_[0, flags.astype(np.int8), 0]))
    return int((edges[1::2] - edges[::2]).max())


def _frozen_normal(raw: FloatArray, signals: Sequence[str]) -> dict[str, int]:
    """Per signal, the sample intervals a value normally stays exactly the same: the 99.9th
    percentile over its runs of equal values (NaN skipped). A percentile, not the maximum:
    a training file may hold a few stuck periods, and they must not become normal."""
    out = {}
    for j, name in enumerate(signals):
        v = raw[:, j][np.isfinite(raw[:, j])]
        if len(v) < 2:
            out[name] = 0
            continue
        changed = np.abs(np.diff(v)) > CHANGE_TOLERANCE * np.maximum(1.0, np.abs(v[1:]))
        starts = np.flatnonzero(np.r_[True, changed])  # first sample of each run
        runs = np.diff(np.r_[starts, len(v)]) - 1  # unchanged intervals within each run
        out[name] = int(np.quantile(runs, FROZEN_QUANTILE, method="higher"))
    return out


def _residual_alarm(
    innovation: FloatArray, bias: FloatArray, scale: FloatArray, top: float, span: float
) -> tuple[float, float, float]:
    """(innovation sd, bias alarm, bias clip): the largest scaled correction held-out
    operation needed, twice; the clip lets the bias reach it at the level ``top``."""
    sd = max(float(np.std(innovation)), 1e-9 * span)
    alarm = max(ALARM_MARGIN * float(np.max(np.abs(bias) / scale)), BIAS_ALARM_FLOOR_SD * sd)
    return sd, alarm, BIAS_CLIP_HEADROOM * alarm * top


def _lab_silent_after(dataset: Dataset, delay: int) -> float | None:
    interval = dataset.spec.source.sample_interval_s
    if interval is None:
        return None
    index = np.sort(
        np.concatenate([p.index for p in (dataset.train, dataset.validation, dataset.test)])
    )
    gaps = np.diff(index)
    return float((delay + max(2 * gaps.max(), 3 * np.median(gaps))) * interval)


def _drift_limit(standardized: FloatArray) -> list[float] | None:
    """Per PCA column, the sensor-drift limit; None with too little held-out data."""
    if len(standardized) < DRIFT_SLOW_SAMPLES:
        return None
    fast = ewma_columns(standardized, DRIFT_FAST_SAMPLES)
    slow = ewma_columns(standardized, DRIFT_SLOW_SAMPLES)
    drift = np.abs(fast - slow).max(axis=0)
    return list(np.maximum(ALARM_MARGIN * drift, DRIFT_LIMIT_FLOOR).tolist())


def _outside_samples(rows: _Rows, train: NDArray[np.bool_], val: NDArray[np.bool_]) -> int:
    """How long rows may stay outside the training range: the validation span judged on the
    training span's range, its longest stretch outside, twice (at least 30 rows)."""
    low, high = rows.x[train].min(axis=0), rows.x[train].max(axis=0)
    span = high - low
    x = rows.x[val]
    outside = ((x < low - RANGE_MARGIN * span) | (x > high + RANGE_MARGIN * span)).any(axis=1)
    return max(OUTSIDE_MIN_SAMPLES, round(ALARM_MARGIN * _longest_run(outside)))


def _bias_alarm(
    dataset: Dataset, est: FloatArray, delay: int, interval: IntervalCalibration
) -> tuple[float, float, float]:
    """(innovation sd, bias alarm, bias clip) from the bias filter replayed on validation."""
    corrected, innovation, bias_path = replay_bias(
        dataset.validation.index, dataset.validation.y, est, delay, BIAS_GAIN
    )
    power, floor = interval.scale_power, interval.scale_floor
    top = float(
        level_scale(np.array([np.quantile(np.abs(dataset.train.y), 0.99)]), floor, power)[0]
    )
    low, high = dataset.spec.target.range
    return _residual_alarm(
        innovation, bias_path, level_scale(corrected, floor, power), top, high - low
    )


def _redundancy(dataset: Dataset, rows: _Rows) -> SensorRedundancy | None:
    """The sensor-redundancy block (``training.redundancy``) over the measured inputs (the
    analyzer, when it is an input, is no sensor of the column's state)."""
    measured = [j for j, s in enumerate(rows.signals) if s != dataset.spec.target.name]
    index = np.arange(len(rows.raw))
    start_val, start_test = int(dataset.validation.index[0]), int(dataset.test.index[0])
    return calibrate_redundancy(
        rows.raw[:, measured],
        [rows.signals[j] for j in measured],
        index < start_val,
        (index >= start_val) & (index < start_test),
        dataset.spec.source.sample_interval_s,
    )


def calibrate(
    dataset: Dataset, exported: ExportedModel, validation_estimate: FloatArray | None = None
) -> Calibration:
    """The calibration block of the card for ``exported``, trained on ``dataset``.

    ``validation_estimate``: estimates of the validation rows by models that did not learn
    from them, when the exported one did (a refit on train + validation): the interval and
    the bias alarms must be judged on held-out errors, not in-sample ones.
    """
    kept = list(exported.inputs_kept)
    plan, features = _plan(dataset, kept)
    est = {
        part: run_onnx(exported.onnx_bytes, getattr(dataset, part).x[:, kept])
        for part in ("train", "validation")
    }
    if validation_estimate is not None:
        est["validation"] = np.asarray(validation_estimate, dtype=np.float64)
    delay = dataset.spec.target.analyzer_delay
    rows = _read_rows(dataset, plan)
    train, val = _spans(dataset, rows)
    columns = _pca_columns(features)
    pca, standardized = _pca(
        rows.x[:, columns],
        train,
        val,
        [features[i].name for i in columns],
        [features[i].signal for i in columns],
    )
    interval = calibrate_interval(dataset, est, delay)
    sd, bias_alarm, bias_clip = _bias_alarm(dataset, est["validation"], delay, interval)
    alarms = AlarmCalibration(
        margin=ALARM_MARGIN,
        frozen_normal_samples=_frozen_normal(rows.raw, rows.signals),
        sensor_drift_fast_samples=DRIFT_FAST_SAMPLES,
        sensor_drift_slow_samples=DRIFT_SLOW_SAMPLES,
        sensor_drift_limit=_drift_limit(standardized),
        outside_training_samples=_outside_samples(rows, train, val),
        innovation_sd=sd,
        bias_alarm=bias_alarm,
        bias_clip=bias_clip,
        lab_silent_after_s=_lab_silent_after(dataset, delay),
    )
    low, high = rows.x.min(axis=0), rows.x.max(axis=0)
    margin = RANGE_MARGIN * (high - low)
    return Calibration(
        redundancy=_redundancy(dataset, rows),
        interval=interval,
        inputs=pca,
        training_range=TrainingRange(
            margin=RANGE_MARGIN, low=(low - margin).tolist(), high=(high + margin).tolist()
        ),
        alarms=alarms,
    )
