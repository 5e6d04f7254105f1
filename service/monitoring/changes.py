"""When did each sensor of a stream last change? Frozen-sensor detection on the data's clock.

A stuck transmitter, or a historian tag that holds its last value, feeds the model a
constant: the estimate looks fine and is not. Each stream tracks, per raw signal, the data
time of the last change of its value, so a stream's own samples decide (one unit's rows never
make another's look frozen, and a replay or backfill behaves like live operation).

A value counts as changed when ``|new - previous| > 1e-9 * max(1, |new|)``: exact repeats are
what a frozen transmitter or a hold-last-value historian sends. NaN is no value (neither a
change nor a repeat); a signal's first value starts its clock.
"""

from __future__ import annotations

import numpy as np

from service.contracts.arrays import FloatArray

CHANGE_TOLERANCE = 1e-9  # relative: a smaller step is float noise, not a change


class ChangeTracker:
    """Per signal, the value and the data time of its last change. Not thread-safe (the
    stream it belongs to serializes its rows)."""

    def __init__(self, width: int) -> None:
        self.last_value = np.full(width, np.nan)
        self.last_change = np.full(width, -np.inf)  # -inf: never seen
        self.last_time = -np.inf

    def observe(self, values: FloatArray, times: FloatArray) -> FloatArray:
        """Take rows [n, S] at ``times`` [n] (ascending); return, per row and signal, how long
        the value had been unchanged at that row (seconds; NaN before its first value).

        Rows not newer than the last one taken are skipped (a late batch cannot make a frozen
        sensor look alive) and get NaN.
        """
        if len(values) == 1:  # the request path's usual case, in fewer numpy calls
            return self._observe_one(values[0], float(times[0]))
        keep = times > self.last_time
        if not keep.all():
            out = np.full(values.shape, np.nan)
            if keep.any():
                out[keep] = self.observe(values[keep], times[keep])
            return out
        present = ~np.isnan(values)
        previous = _carried(np.vstack([self.last_value, values]))[:-1]
        with np.errstate(invalid="ignore"):
            moved = np.abs(values - previous) > CHANGE_TOLERANCE * np.maximum(1.0, np.abs(values))
        changed = present & (moved | np.isnan(previous))
        stamps = np.where(changed, times[:, None], -np.inf)
        since = np.maximum(np.maximum.accumulate(stamps, axis=0), self.last_change[None, :])
        self.last_change = since[-1].copy()
        seen = present.any(axis=0)
        if seen.any():
            self.last_value[seen] = _carried(values)[-1][seen]
        self.last_time = float(times[-1])
        with np.errstate(invalid="ignore"):
            unchanged: FloatArray = times[:, None] - since
        unchanged[np.isinf(since)] = np.nan
        return unchanged

    def _observe_one(self, v: FloatArray, t: float) -> FloatArray:
        if not t > self.last_time:
            return np.full((1, len(v)), np.nan)
        prev = self.last_value
        with np.errstate(invalid="ignore"):
            same = (np.abs(v - prev) <= CHANGE_TOLERANCE * np.maximum(1.0, np.abs(v))) | (v == prev)
        present = v == v
        self.last_change = np.where(present & ~same, t, self.last_change)
        self.last_value = np.where(present, v, prev)
        self.last_time = t
        seen = self.last_change > -np.inf
        return np.where(seen, t - self.last_change, np.nan)[None, :]

    def seconds_since_change(self, now: float) -> FloatArray:
        """Per signal, ``now`` minus its last change (never negative; NaN if never seen)."""
        with np.errstate(invalid="ignore"):
            since = np.maximum(now - self.last_change, 0.0)
        since[np.isinf(self.last_change)] = np.nan
        return since


def _carried(values: FloatArray) -> FloatArray:
    """Each NaN replaced by the last value above it in its column (NaN when none)."""
    valid = ~np.isnan(values)
    if valid.all():
        return values
    rows = np.arange(len(values))[:, None]
    source = np.maximum.accumulate(np.where(valid, rows, -1), axis=0)
    filled = np.take_along_axis(values, np.maximum(source, 0), axis=0)
    return np.where(source >= 0, filled, np.nan)
