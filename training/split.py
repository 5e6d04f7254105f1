"""The chronological split of a dataset's rows into train, validation and test.

Counts or fractions, or a test window in data rows or timestamps; every part must keep
enough labelled rows, and the message says which part fell short and why.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from training.errors import DataError
from training.spec import DatasetSpec, TestWindow


def split_bounds(
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
