"""Gaps in a historian export's time axis: rows whose lags or label would span one are left
out.

Lags are taken by row, so a row after an outage of the historian (two hours of rows
missing, say) would read "20 minutes ago" from before the outage and learn a relation that
never held; an analyzer value stamped at report time would be moved onto the wrong sample.
With the spec's sample interval declared, a step between two rows longer than
``GAP_INTERVALS`` intervals is a gap. The service applies the same rule to a stream
(``service.scoring.scorer``): a row after such a gap starts its lag history afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from service.contracts.features import GAP_INTERVALS, gap_breaks, gap_seconds


@dataclass(frozen=True)
class Gaps:
    """Per data row, how many gaps precede it; and the longest gap, for the warning."""

    segment: NDArray[np.int64]
    longest_s: float
    longest_after_row: int  # 0-based data row before the longest gap

    @property
    def count(self) -> int:
        return int(self.segment[-1])

    def spanned(self, rows: NDArray[np.int64], back: int, ahead: int) -> NDArray[np.bool_]:
        """Per data row in ``rows``: whether the rows from ``back`` before it to ``ahead``
        after it (its lags, its label's report) cross a gap, or run off the file's end."""
        last = len(self.segment) - 1
        start, end = rows - back, rows + ahead
        inside = (start >= 0) & (end <= last)
        seg = self.segment
        crossed = seg[np.clip(start, 0, last)] != seg[np.clip(end, 0, last)]
        return np.asarray(~inside | crossed, dtype=np.bool_)


def find_gaps(stamps: pd.DatetimeIndex | None, interval_s: float | None) -> Gaps | None:
    """The gaps of a time axis in order (None without timestamps, a declared interval or
    any gap)."""
    if stamps is None:
        return None
    seconds = (stamps - stamps[0]).to_numpy() / np.timedelta64(1, "s")  # whatever the unit
    breaks = gap_breaks(seconds, gap_seconds(interval_s))
    if not len(breaks):
        return None
    segment = np.zeros(len(seconds), dtype=np.int64)
    segment[breaks] = 1
    steps = np.diff(seconds)
    widest = int(np.argmax(steps))
    return Gaps(np.cumsum(segment), float(steps[widest]), widest)


def gap_warning(gaps: Gaps, left_out: int, interval_s: float, stamps: pd.DatetimeIndex) -> str:
    """What the person running the job reads about the gaps and the rows they cost."""
    after = stamps[gaps.longest_after_row].isoformat()
    plural = "s" if gaps.count != 1 else ""
    return (
        f"the timestamps have {gaps.count} gap{plural} (steps over {GAP_INTERVALS:g} x the "
        f"{interval_s:g} s sample interval; the longest {gaps.longest_s:g} s, after {after}); "
        + (
            f"{left_out} rows whose lags or label span one are left out of training and scoring"
            if left_out
            else "no row's lags or label span one"
        )
    )


def leave_out_gaps(
    keep: NDArray[np.bool_],
    index: NDArray[np.int64],
    back: int,
    ahead: int,
    stamps: pd.DatetimeIndex | None,
    interval_s: float | None,
) -> tuple[NDArray[np.bool_], int, str | None]:
    """``keep`` without the rows (data rows ``index``) whose lags (``back`` rows) or label
    (``ahead`` rows on) span a gap; how many usable rows that left out, and the warning."""
    gaps = find_gaps(stamps, interval_s)
    if gaps is None or stamps is None or interval_s is None:
        return keep, 0, None
    spans = gaps.spanned(index, back, ahead)
    left_out = int((keep & spans).sum())
    return keep & ~spans, left_out, gap_warning(gaps, left_out, interval_s, stamps)
