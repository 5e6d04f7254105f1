"""Loading a historian export through its spec into chronological train/validation/test sets.

Every check happens here, before any training, and fails with the file, column and row so
the person holding the export can find the bad value. Rows are 1-based data rows (the header
line, if any, and blank lines are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.features import assemble_rows, derive_signals, max_lag
from training.errors import DataError
from training.gaps import leave_out_gaps
from training.spec import DatasetSpec, MissingSpec, SignalSpec, TargetSpec
from training.split import split_bounds
from training.table import (
    check_columns,
    data_lines,
    file_sha256,
    format_number,
    oldest_first,
    parse_timestamps,
    read_table,
    to_numeric,
)

__all__ = ["Dataset", "Part", "load_dataset", "read_table"]  # read_table: from training.table

BoolArray = NDArray[np.bool_]


@dataclass
class Part:
    """One chronological part of the data: inputs, labels and where each row sits in time."""

    x: FloatArray
    y: FloatArray
    index: NDArray[np.int64]  # 0-based data row of each assembled row's time t
    truth: dict[str, FloatArray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    """Train/validation/test matrices plus what the model card needs to describe them."""

    spec: DatasetSpec
    source: str
    sha256: str
    feature_names: list[str]
    train: Part
    validation: Part
    test: Part
    rows_read: int
    values_out_of_range: int
    values_filled: int
    noise_sigma: float
    timestamps: list[str] | None = None  # ISO time of each assembled row when known
    # Analyzer values outside the target's declared range (or where its transform is
    # undefined): left out as labels, counted here and warned about.
    target_out_of_range: int = 0
    rows_across_gaps: int = 0  # usable rows left out: their lags or label span a time gap
    lab_results_used: int = 0  # rows labelled by a lab result (lab_results)
    lab_results_unmatched: int = 0  # lab results near no row of the file
    warnings: list[str] = field(default_factory=list)  # for the person running the job

    @property
    def rows_used(self) -> int:
        return len(self.train) + len(self.validation) + len(self.test)


def _apply_missing_policy(
    path: Path, column: str, values: FloatArray, bad: BoolArray, policy: MissingSpec, why: str
) -> tuple[FloatArray, int]:
    """Return values with bad samples NaN (drop) or filled (ffill); fail on policy error."""
    if not bad.any():
        return values, 0
    first = int(np.flatnonzero(bad)[0])
    if policy.policy == "error":
        raise DataError(
            path,
            f"{why} {format_number(values[first])} (missing-value policy is 'error'; declare "
            "'drop' or 'ffill' in the spec to accept such rows)",
            column=column,
            row=first + 1,
        )
    out = values.copy()
    out[bad] = np.nan
    if policy.policy == "drop":
        return out, 0
    filled = 0
    run = 0
    for i in range(len(out)):
        if not bad[i]:
            run = 0
            continue
        run += 1
        if i == 0 or run > policy.max_fill or np.isnan(out[i - 1]):
            raise DataError(
                path,
                f"{why} {format_number(values[i])} cannot be forward-filled (gap of {run} samples, "
                f"max_fill is {policy.max_fill})",
                column=column,
                row=i + 1,
            )
        out[i] = out[i - 1]
        filled += 1
    return out, filled


def _check_not_constant(path: Path, name: str, values: FloatArray, where: str) -> None:
    finite = values[np.isfinite(values)]
    if finite.size and float(np.ptp(finite)) == 0.0:
        raise DataError(
            path,
            f"is constant ({finite[0]:g}) over {where}: it carries no information",
            column=name,
        )


def add_input_noise(
    signals: dict[str, FloatArray], names: list[str], sigma: float, seed: int
) -> dict[str, FloatArray]:
    """Add Gaussian noise (data units) to the measured inputs, before lags are taken.

    Noise goes on the sensors, not on lagged copies independently: u5 and u5_lag1 share one
    noisy history, as they would in a plant. The analyzer value is left alone.
    """
    if sigma <= 0:
        return signals
    rng = np.random.default_rng([seed, 0x5EED])
    out = dict(signals)
    for name in names:
        out[name] = signals[name] + rng.normal(0.0, sigma, size=signals[name].shape)
    return out


def labels_at_sample_time(reported: FloatArray, spec: DatasetSpec) -> FloatArray:
    """Analyzer values aligned to the time their sample was drawn.

    For a file stamped at report time, row t's label is the value reported analyzer_delay rows
    later; the last rows have no label yet (NaN) and are left out like any unlabelled row.
    """
    delay = spec.target.analyzer_delay
    if spec.target.stamped_at == "sample" or delay == 0:
        return reported
    out = np.full_like(reported, np.nan)
    out[:-delay] = reported[delay:]
    return out


@dataclass(frozen=True)
class LabLabels:
    """Lab results as labels: row index -> value, and the results no row was near."""

    values: dict[int, float]
    unmatched: int
    tolerance_s: float
    outside: int = 0  # results outside the target's valid range: not used, as the analyzer's


def lab_labels(
    path: Path,
    stamps: pd.DatetimeIndex | None,
    lab: pd.DataFrame | None,
    spec: DatasetSpec,
) -> LabLabels:
    """Each lab result on the row nearest its sample time, within half a sample interval.

    Lab results (from a LIMS export or stored by the service) are more accurate than the
    analyzer and stamped at their sample time, so they override the analyzer's label on
    that row. A lab takes its sample when it does, not on the historian's grid (08:13:27
    against rows each minute): a result is matched as the service matches it to an
    estimate, to the nearest row. Half the spec's sample interval (else the file's median
    step) bounds the distance: every result inside the file's span and outside its gaps
    finds a row; the others are counted.
    """
    if lab is None or lab.empty:
        return LabLabels({}, 0, 0.0)
    if stamps is None:
        raise DataError(path, "lab results need a timestamp column in the spec to be matched")
    at = pd.DatetimeIndex(pd.to_datetime(lab["timestamp"], utc=True, format="mixed"))
    interval = spec.source.sample_interval_s
    steps = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)  # pandas may hold us
    step = interval if interval is not None or len(steps) < 2 else np.median(np.diff(steps)) / 1e9
    tolerance = float(step or 0.0) / 2.0
    rows = stamps.get_indexer(at, method="nearest", tolerance=pd.Timedelta(seconds=tolerance))
    value = lab["value"].to_numpy(dtype=np.float64)
    low, high = spec.target.range
    valid = (value >= low) & (value <= high)
    values = {int(r): float(v) for r, v in zip(rows[valid], value[valid], strict=True) if r >= 0}
    return LabLabels(values, int(np.sum(rows < 0)), tolerance, int(np.sum(~valid)))


def _labelled(
    p: Path,
    target: FloatArray,
    spec: DatasetSpec,
    stamps: pd.DatetimeIndex | None,
    lab_results: pd.DataFrame | None,
) -> tuple[FloatArray, LabLabels]:
    """Every row's label: the analyzer's at its sample time, a lab result's where one was
    taken near the row's time."""
    labels = labels_at_sample_time(target, spec).copy()
    lab = lab_labels(p, stamps, lab_results, spec)
    for row, value in lab.values.items():
        labels[row] = value
    return labels, lab


def _lab_warnings(lab: LabLabels, total: int, spec: DatasetSpec) -> list[str]:
    out = []
    if lab.unmatched:
        out.append(
            f"{lab.unmatched} of {total} lab results lie more than {lab.tolerance_s:g} s (half "
            "a sample interval) from every row of the file: outside its time span or in a "
            "gap, they are not used"
        )
    if lab.outside:
        out.append(
            f"{lab.outside} of {total} lab results lie outside the target's range "
            f"[{spec.target.range[0]:g}, {spec.target.range[1]:g}]: not used"
        )
    return out


def load_dataset(
    spec: DatasetSpec,
    path: Path | str,
    *,
    noise_sigma: float = 0.0,
    seed: int = 0,
    lab_results: pd.DataFrame | None = None,
) -> Dataset:
    """Validate the file against the spec and build the chronological parts.

    ``lab_results`` (columns ``timestamp``, ``value``) add or override labels at their
    sample times; they are never used as inputs.

    >>> # ds = load_dataset(load_spec("training/specs/debutanizer.yaml"), "debutanizer_data.txt")
    """
    p = Path(path)
    frame = read_table(p, spec)
    if lab_results is not None and spec.target.name not in frame.columns:
        frame = frame.assign(**{spec.target.name: ""})  # labelled by the lab results alone
    frame, lines, flipped = oldest_first(p, frame, data_lines(p, spec), spec.source)
    try:
        dataset = _build(p, frame, spec, noise_sigma, seed, lab_results)
    except DataError as exc:
        raise exc.at_line(lines) from exc
    if flipped is not None:
        dataset.warnings.insert(0, flipped)
    return dataset


def _build(
    p: Path,
    frame: pd.DataFrame,
    spec: DatasetSpec,
    noise_sigma: float,
    seed: int,
    lab_results: pd.DataFrame | None,
) -> Dataset:
    check_columns(p, frame, spec)
    if frame.empty:
        raise DataError(p, "has no data rows")
    stamps = parse_timestamps(p, frame, spec.source)
    cleaned = _clean_signals(p, frame, spec)
    warnings = [_target_warning(spec, cleaned.target_outside)] if cleaned.target_outside else []
    truth = {c: to_numeric(p, frame, c) for c in spec.truth}
    measured = [s.name for s in spec.signals]
    signals = add_input_noise(cleaned.signals, measured, noise_sigma, seed)
    signals = derive_signals(signals, spec.derived_signals())
    features = spec.lag_features()
    x = assemble_rows(signals, features)
    history = max_lag(features)
    index = np.arange(history, history + len(x), dtype=np.int64)
    labels, lab = _labelled(p, signals[spec.target.name], spec, stamps, lab_results)
    warnings += _lab_warnings(lab, 0 if lab_results is None else len(lab_results), spec)
    y = labels[history:]
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    ahead = spec.target.analyzer_delay if spec.target.stamped_at == "report" else 0
    interval = spec.source.sample_interval_s
    keep, across_gaps, gap_note = leave_out_gaps(keep, index, history, ahead, stamps, interval)
    warnings += [gap_note] if gap_note else []
    x, y, index = x[keep], y[keep], index[keep]

    bounds = split_bounds(p, spec, index, stamps, len(features), history)
    parts = [
        Part(x[a:b], y[a:b], index[a:b], {c: v[index[a:b]] for c, v in truth.items()})
        for a, b in bounds
    ]
    n_train = len(parts[0])
    for j, f in enumerate(features):
        _check_not_constant(p, f.name, parts[0].x[:, j], f"the {n_train} training rows")
    used = np.concatenate([part.index for part in parts])
    return Dataset(
        spec=spec,
        source=str(p),
        sha256=file_sha256(p),
        feature_names=[f.name for f in features],
        train=parts[0],
        validation=parts[1],
        test=parts[2],
        rows_read=len(frame),
        values_out_of_range=cleaned.out_of_range,
        values_filled=cleaned.filled,
        noise_sigma=noise_sigma,
        timestamps=[t.isoformat() for t in stamps[used]] if stamps is not None else None,
        target_out_of_range=cleaned.target_outside,
        rows_across_gaps=across_gaps,
        lab_results_used=len(lab.values),
        lab_results_unmatched=lab.unmatched,
        warnings=warnings,
    )


@dataclass
class _Cleaned:
    """The spec's signals and target as numbers, bad samples handled by the missing policy."""

    signals: dict[str, FloatArray] = field(default_factory=dict)
    out_of_range: int = 0  # values outside their signal's valid range
    filled: int = 0  # values forward-filled
    target_outside: int = 0  # target values left without a label (range or transform domain)


def _clean_signals(p: Path, frame: pd.DataFrame, spec: DatasetSpec) -> _Cleaned:
    cleaned = _Cleaned()
    columns: list[SignalSpec | TargetSpec] = [*spec.signals, spec.target]
    for s in columns:
        cleaned.signals[s.name] = _clean_column(p, frame, spec, s, cleaned)
    return cleaned


def _clean_column(
    p: Path, frame: pd.DataFrame, spec: DatasetSpec, s: SignalSpec | TargetSpec, counts: _Cleaned
) -> FloatArray:
    """One column: non-finite and out-of-range values through its policy, counted."""
    values = to_numeric(p, frame, s.name, hint_skip=spec.source.skip_rows == 0)
    lo, hi = s.range
    nonfinite = ~np.isfinite(values)
    outside = ~nonfinite & ((values < lo) | (values > hi))
    counts.out_of_range += int(outside.sum())
    policy = spec.missing_for(s.name)
    if s.name == spec.target.name:
        outside |= spec.target.target_transform().outside_domain(values)
        counts.target_outside = int(outside.sum())
        if spec.target.missing is None:
            # An analyzer reports now and then: NaN between samples just means "no label".
            policy = MissingSpec(policy="drop")
    if nonfinite.any():
        values, n = _apply_missing_policy(p, s.name, values, nonfinite, policy, "NaN/inf")
        counts.filled += n
    if outside.any():
        why = f"value outside the valid range [{format_number(lo)}, {format_number(hi)}]:"
        values, n = _apply_missing_policy(p, s.name, values, outside, policy, why)
        counts.filled += n
    if s.name != spec.target.name:
        _check_not_constant(p, s.name, values, f"all {len(values)} rows")
    return values


def _target_warning(spec: DatasetSpec, count: int) -> str:
    t = spec.target
    lo, hi = (format_number(v) for v in t.range)
    domain = {
        "log": f" (the log transform also needs values above {lo})",
        "logit": (f" (the logit transform also needs values strictly between {lo} and {hi})"),
    }.get(t.transform, "")
    return (
        f"{count} values of target {t.name!r} lie outside its declared range [{lo}, {hi}] "
        f"{t.unit}{domain}; those rows have no label and are left out of training and scoring. "
        "If they are real, widen target.range in the spec"
    )
