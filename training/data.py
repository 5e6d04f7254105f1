"""Loading a historian export through its spec into chronological train/validation/test sets.

Every check happens here, before any training, and fails with the file, column and row so
the person holding the export can find the bad value. Rows are 1-based data rows (the header
line, if any, and blank lines are not counted).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.features import assemble_rows, derive_signals, max_lag
from training.errors import DataError
from training.spec import DatasetSpec, MissingSpec, SignalSpec, TargetSpec, TestWindow

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
    warnings: list[str] = field(default_factory=list)  # for the person running the job

    @property
    def rows_used(self) -> int:
        return len(self.train) + len(self.validation) + len(self.test)


def file_sha256(path: Path) -> str:
    """Hash in chunks: exports can be larger than memory wants to hold twice."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_table(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Read the file as text cells (so non-numeric values can be reported, not coerced)."""
    src = spec.source
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        if src.format == "parquet":
            frame = pd.read_parquet(path)
        elif src.format == "csv":
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=True,
                skiprows=src.skip_rows,
            )
        else:
            frame = pd.read_csv(
                path,
                sep=r"\s+",
                header=None,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=True,
                engine="python",
                skiprows=src.skip_rows,
            )
    except pd.errors.ParserError as exc:
        raise DataError(path, _explain_parse_error(path, src.format, src.skip_rows, exc)) from exc
    except (ValueError, OSError) as exc:
        raise DataError(path, f"cannot be parsed as {src.format}: {exc}") from exc
    if src.columns is not None:
        if frame.shape[1] != len(src.columns) and src.format == "whitespace":
            raise DataError(
                path,
                f"has {frame.shape[1]} columns but the spec names {len(src.columns)}: "
                f"{', '.join(src.columns)}"
                + (
                    "; if the file starts with title or comment lines, skip them with "
                    "source.skip_rows"
                    if src.skip_rows == 0
                    else ""
                ),
            )
        if src.format == "whitespace":
            frame.columns = pd.Index(src.columns)
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    return frame.reset_index(drop=True)


def _explain_parse_error(path: Path, fmt: str, skip_rows: int, exc: Exception) -> str:
    """pandas' "Expected 3 fields in line 4, saw 4" blames the data line; the cause is
    usually a title line above it that set the field count. Say so, with the file's lines."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if found is None:
        return f"cannot be parsed as {fmt}: {exc}"
    expected, line, saw = (int(g) for g in found.groups())
    first = _first_content_line(path, skip_rows)
    hint = (
        "; if the file starts with title or comment lines, skip them with source.skip_rows"
        f" (here {line - 1} would skip everything above line {line})"
        if first is not None and first < line
        else ""
    )
    where = f"line {first}" if first is not None else "the first line read"
    return (
        f"cannot be parsed as {fmt}: line {line} has {saw} fields but {where} has {expected}" + hint
    )


def _first_content_line(path: Path, skip_rows: int) -> int | None:
    """1-based number of the first non-blank line after ``skip_rows``."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, text in enumerate(fh, start=1):
            if number > skip_rows and text.strip():
                return number
    return None


def data_lines(path: Path, spec: DatasetSpec) -> list[int] | None:
    """The file's line number (1-based, as an editor shows it) of each data row, for text
    formats: skipped lines, blank lines and the CSV header are not data rows."""
    if spec.source.format == "parquet":
        return None
    lines: list[int] = []
    header = spec.source.format == "csv"
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, text in enumerate(fh, start=1):
            if number <= spec.source.skip_rows or not text.strip():
                continue
            if header:
                header = False
                continue
            lines.append(number)
    return lines


def _check_columns(path: Path, frame: pd.DataFrame, spec: DatasetSpec) -> None:
    needed = [s.name for s in spec.signals] + [spec.target.name] + list(spec.truth)
    if spec.source.timestamp:
        needed.append(spec.source.timestamp)
    present = list(frame.columns)
    for col in needed:
        if col not in present:
            raise DataError(path, "missing: the spec needs this column", column=col)
    for col in present:
        if col not in needed and col not in spec.source.ignore:
            raise DataError(
                path, "is not in the spec (list it under source.ignore to skip it)", column=col
            )
    dupes = sorted({c for c in present if present.count(c) > 1})
    if dupes:
        raise DataError(path, "appears more than once", column=dupes[0])


def _parse_timestamps(path: Path, frame: pd.DataFrame, column: str) -> pd.DatetimeIndex:
    raw = frame[column]
    stamps = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        r = int(bad[0])
        raise DataError(path, f"not a timestamp: {raw.iloc[r]!r}", column=column, row=r + 1)
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    steps = np.diff(ns)
    for r in np.flatnonzero(steps <= 0)[:1]:
        what = "duplicated" if steps[r] == 0 else "out of order (earlier than the row before)"
        raise DataError(
            path, f"timestamp {raw.iloc[r + 1]!r} is {what}", column=column, row=int(r) + 2
        )
    return pd.DatetimeIndex(stamps)


def _to_numeric(
    path: Path, frame: pd.DataFrame, column: str, *, hint_skip: bool = False
) -> FloatArray:
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    text = raw.astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    blank = text.str.lower().isin(["", "nan", "na", "null", "none"]).to_numpy()
    bad = np.flatnonzero(np.isnan(values) & ~blank)
    if bad.size:
        r = int(bad[0])
        hint = (
            " (a title or comment line above the data? skip it with source.skip_rows)"
            if hint_skip and r == 0
            else ""
        )
        raise DataError(path, f"non-numeric value {text.iloc[r]!r}{hint}", column=column, row=r + 1)
    return values


def _number(value: float) -> str:
    """A value as people write it (999, 0.25, nan), never numpy's repr np.float64(999.0)."""
    return f"{float(value):g}"


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
            f"{why} {_number(values[first])} (missing-value policy is 'error'; declare 'drop' or "
            "'ffill' in the spec to accept such rows)",
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
                f"{why} {_number(values[i])} cannot be forward-filled (gap of {run} samples, "
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


def lab_labels(
    path: Path, stamps: pd.DatetimeIndex | None, lab: pd.DataFrame | None
) -> dict[int, float]:
    """Row index -> lab value, for lab results whose sample time matches a row's timestamp.

    Lab results (stored by the service) are more accurate than the analyzer and are stamped
    at sample time, so they override the analyzer's label on that row.
    """
    if lab is None or lab.empty:
        return {}
    if stamps is None:
        raise DataError(path, "lab results need a timestamp column in the spec to be matched")
    at = pd.DatetimeIndex(pd.to_datetime(lab["timestamp"], utc=True, format="mixed"))
    rows = stamps.get_indexer(at)
    return {int(r): float(v) for r, v in zip(rows, lab["value"], strict=True) if r >= 0}


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
    lines = data_lines(p, spec)
    try:
        return _build(p, frame, spec, noise_sigma, seed, lab_results)
    except DataError as exc:
        raise exc.at_line(lines) from exc


def _build(
    p: Path,
    frame: pd.DataFrame,
    spec: DatasetSpec,
    noise_sigma: float,
    seed: int,
    lab_results: pd.DataFrame | None,
) -> Dataset:
    _check_columns(p, frame, spec)
    if frame.empty:
        raise DataError(p, "has no data rows")
    stamps = _parse_timestamps(p, frame, spec.source.timestamp) if spec.source.timestamp else None

    signals: dict[str, FloatArray] = {}
    out_of_range = filled = target_outside = 0
    warnings: list[str] = []
    columns: list[SignalSpec | TargetSpec] = [*spec.signals, spec.target]
    for s in columns:
        values = _to_numeric(p, frame, s.name, hint_skip=spec.source.skip_rows == 0)
        lo, hi = s.range
        nonfinite = ~np.isfinite(values)
        outside = ~nonfinite & ((values < lo) | (values > hi))
        out_of_range += int(outside.sum())
        policy = spec.missing_for(s.name)
        if s.name == spec.target.name:
            outside |= spec.target.target_transform().outside_domain(values)
            target_outside = int(outside.sum())
            if spec.target.missing is None:
                # An analyzer reports now and then: NaN between samples just means "no label".
                policy = MissingSpec(policy="drop")
        if nonfinite.any():
            values, n = _apply_missing_policy(p, s.name, values, nonfinite, policy, "NaN/inf")
            filled += n
        if outside.any():
            values, n = _apply_missing_policy(
                p,
                s.name,
                values,
                outside,
                policy,
                f"value outside the valid range [{_number(lo)}, {_number(hi)}]:",
            )
            filled += n
        if s.name != spec.target.name:
            _check_not_constant(p, s.name, values, f"all {len(values)} rows")
        signals[s.name] = values
    if target_outside:
        warnings.append(_target_warning(spec, target_outside))
    truth = {c: _to_numeric(p, frame, c) for c in spec.truth}

    measured = [s.name for s in spec.signals]
    signals = add_input_noise(signals, measured, noise_sigma, seed)
    signals = derive_signals(signals, spec.derived_signals())
    features = spec.lag_features()
    x = assemble_rows(signals, features)
    history = max_lag(features)
    index = np.arange(history, history + len(x), dtype=np.int64)
    labels = labels_at_sample_time(signals[spec.target.name], spec).copy()
    for row, value in lab_labels(p, stamps, lab_results).items():
        labels[row] = value
    y = labels[history:]
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    x, y, index = x[keep], y[keep], index[keep]

    bounds = _split_bounds(p, spec, index, stamps, len(features), history)
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
        values_out_of_range=out_of_range,
        values_filled=filled,
        noise_sigma=noise_sigma,
        timestamps=[t.isoformat() for t in stamps[used]] if stamps is not None else None,
        target_out_of_range=target_outside,
        warnings=warnings,
    )


def _target_warning(spec: DatasetSpec, count: int) -> str:
    t = spec.target
    lo, hi = (_number(v) for v in t.range)
    domain = {
        "log": f" (the log transform also needs values above {lo})",
        "logit": (f" (the logit transform also needs values strictly between {lo} and {hi})"),
    }.get(t.transform, "")
    return (
        f"{count} values of target {t.name!r} lie outside its declared range [{lo}, {hi}] "
        f"{t.unit}{domain}; those rows have no label and are left out of training and scoring. "
        "If they are real, widen target.range in the spec"
    )


def _split_bounds(
    p: Path,
    spec: DatasetSpec,
    index: NDArray[np.int64],
    stamps: pd.DatetimeIndex | None,
    n_features: int,
    history: int,
) -> list[tuple[int, int]]:
    """[start, stop) of train, validation and test among the usable rows (in time order)."""
    n_rows = len(index)
    window = spec.split.test
    if isinstance(window, TestWindow):
        first, stop = _window_positions(p, window, index, stamps)
        n_train, n_val = spec.split.before_window(first)
        n_test = stop - first
        needed_before = n_train + n_val
        if needed_before != first:
            raise DataError(
                p,
                f"split counts train {n_train} + validation {n_val} = {needed_before} rows, but "
                f"{first} usable rows lie before the test window; give counts that add up, or "
                "fractions",
            )
        bounds = [(0, n_train), (n_train, first), (first, stop)]
    else:
        n_train, n_val, n_test = spec.split.counts(n_rows)
        needed = n_train + n_val + n_test
        if n_rows > needed:
            raise DataError(
                p,
                f"split counts add up to {needed} rows but {n_rows} are usable; give counts "
                "that add up, or fractions",
            )
        bounds = [(0, n_train), (n_train, n_train + n_val), (n_train + n_val, needed)]
        if n_rows < needed:
            n_test = -1  # reported below as too few rows
    sizes = [b - a for a, b in bounds]
    if min(sizes) < 2 or sizes[0] <= n_features or n_test < 0:
        raise DataError(
            p,
            f"too few rows: {n_rows} usable rows after lags (max lag {history}) and missing "
            f"values, but the split needs train {n_train} (more than {n_features} features), "
            f"validation {n_val} and test {max(n_test, 0) if n_test >= 0 else spec.split.test}"
            + (_sparse_target_hint(spec) if n_rows == 0 else ""),
        )
    return bounds


def _sparse_target_hint(spec: DatasetSpec) -> str:
    lags = [lag for f in spec.features if f.signal == spec.target.name for lag in f.lags]
    if not lags:
        return ""
    return (
        f"; the target's own lags ({', '.join(map(str, lags))}) read the analyzer series, "
        "which has values only on the rows where a result was reported: a lag with no result "
        "at the same phase as the labels leaves no usable row"
    )


def _window_positions(
    p: Path,
    window: TestWindow,
    index: NDArray[np.int64],
    stamps: pd.DatetimeIndex | None,
) -> tuple[int, int]:
    """Positions [first, stop) of the usable rows inside the test window."""
    if window.by_time:
        if stamps is None:
            raise DataError(p, "a test window in timestamps needs source.timestamp in the spec")
        times = stamps[index]
        inside = np.ones(len(index), dtype=bool)
        if window.start is not None:
            inside &= np.asarray(times >= _utc(window.start))
        if window.end is not None:
            inside &= np.asarray(times <= _utc(window.end))
    else:
        rows = index + 1  # 1-based data rows, as in every error message
        start = window.start if isinstance(window.start, int) else 1
        end = window.end if isinstance(window.end, int) else int(rows.max(initial=0))
        inside = (rows >= start) & (rows <= end)
    hits = np.flatnonzero(inside)
    if hits.size == 0:
        raise DataError(p, f"no usable row lies in the test window {_describe(window)}")
    return int(hits[0]), int(hits[-1]) + 1


def _utc(value: int | datetime) -> pd.Timestamp:
    """A window bound as a UTC time; one given without a zone is taken as UTC, as the
    timestamps of a file without zones are."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _describe(window: TestWindow) -> str:
    kind = "times" if window.by_time else "rows"
    start = "the first row" if window.start is None else str(window.start)
    end = "the last row" if window.end is None else str(window.end)
    return f"({kind} {start} .. {end})"
