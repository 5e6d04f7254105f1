"""Drift statistics: is the plant still the plant the model was trained on?

A soft sensor fails quietly: its inputs wander out of the training distribution, a
thermocouple freezes, or the process shifts so the estimate carries a growing offset. This
module computes the signals that reveal each of these (see the drift section of DESIGN.md):

- per feature, the population stability index (PSI) of a sliding window against the
  card's reference bins, and the number of values outside the valid range;
- the same PSI for the predictions.

PSI is a diagnostic, not an alarm: a window of a few hours of a slowly moving process covers
a narrow part of the training distribution, so on normal data it reaches values near its
maximum (about 8 for ten bins); the calibrated alarms are in ``service.monitoring.alarms``. Frozen
sensors are tracked per stream on raw signals (``service.monitoring.changes``).

Only numpy, the stdlib and the card schema are used: the service calls this from worker
threads on the request path, so it is plain in-memory arithmetic with one lock per monitor.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.contracts.arrays import FloatArray
from service.contracts.card import ModelCard, ReferenceStats

IntArray = NDArray[np.int64]

DEFAULT_WINDOW = 500  # values per feature: ~50 per decile bin, enough for a stable PSI
PSI_FLOOR = 1e-4  # proportion used for an empty bin, so ln(p_w / p_r) stays finite

# The customary reading of PSI (credit-scoring folklore, used as-is for process data).
PSI_STABLE = 0.1
PSI_SIGNIFICANT = 0.25


# --------------------------------------------------------------------------- statistics


def bin_counts(values: ArrayLike, edges: Sequence[float]) -> IntArray:
    """Count ``values`` per reference bin, with the outer bins open-ended.

    Interior bins are half-open ``[e_i, e_{i+1})`` and the last is closed, as in
    ``np.histogram`` (which training used for the reference counts), so a training value
    lands in the same bin here as it did there. Values below ``edges[0]`` count in the
    first bin and values above ``edges[-1]`` in the last: the reference's outer edges are
    the training min and max, and a value beyond them is exactly what drift should see
    rather than drop. NaN values are ignored (a missing value is no evidence of drift).
    """
    bounds = np.asarray(edges, dtype=np.float64)
    if bounds.ndim != 1 or len(bounds) < 2:
        raise ValueError(f"edges: need at least 2 bin edges, got {len(bounds)}")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    index = np.searchsorted(bounds[1:-1], v, side="right")
    return np.bincount(index, minlength=len(bounds) - 1).astype(np.int64)


def psi(reference_counts: ArrayLike, window_counts: ArrayLike, floor: float = PSI_FLOOR) -> float:
    """Population stability index of a window against a reference, over the same bins.

    ``PSI = sum_i (p_w,i - p_r,i) * ln(p_w,i / p_r,i)`` with both proportions floored at
    ``floor`` so an empty bin does not make it infinite (the floored proportions are not
    renormalized: the floor only matters for empty bins and keeps the formula plain).

    Usual reading: below 0.1 the distribution is stable, 0.1 to 0.25 a moderate shift
    worth watching, above 0.25 a significant shift (the model extrapolates). An empty
    window gives 0.0: no data is no evidence of drift.
    """
    ref = np.asarray(reference_counts, dtype=np.float64).ravel()
    win = np.asarray(window_counts, dtype=np.float64).ravel()
    if ref.shape != win.shape:
        raise ValueError(f"window_counts: {len(win)} bins, reference has {len(ref)}")
    if not floor > 0:
        raise ValueError(f"floor must be positive, got {floor}")
    if (ref < 0).any() or (win < 0).any():
        raise ValueError("counts must not be negative")
    ref_total, win_total = ref.sum(), win.sum()
    if ref_total <= 0:
        raise ValueError("reference_counts: the reference holds no values")
    if win_total <= 0:
        return 0.0
    p_r = np.maximum(ref / ref_total, floor)
    p_w = np.maximum(win / win_total, floor)
    return float(np.sum((p_w - p_r) * np.log(p_w / p_r)))


# --------------------------------------------------------------------------- window


class RollingWindow:
    """The last ``capacity`` values (or rows of ``width`` values) in a ring buffer.

    A preallocated ring keeps the request path free of allocation and of the O(n) shifts
    a list or ``np.roll`` would cost per batch. With ``width`` set it holds rows, so one
    window serves every column of a model at once.
    """

    def __init__(self, capacity: int = DEFAULT_WINDOW, width: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if width is not None and width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        shape = (capacity,) if width is None else (capacity, width)
        self._buffer: FloatArray = np.empty(shape, dtype=np.float64)
        self._next = 0  # where the next value goes
        self._size = 0

    @property
    def capacity(self) -> int:
        """How many values (rows) the window holds at most."""
        return len(self._buffer)

    def __len__(self) -> int:
        return self._size

    def extend(self, values: ArrayLike) -> None:
        """Append values (rows) in order; the oldest fall out once the window is full."""
        v = np.asarray(values, dtype=np.float64)
        v = v.ravel() if self._buffer.ndim == 1 else v.reshape(-1, self._buffer.shape[1])
        cap, n = self.capacity, len(v)
        if n >= cap:  # only the newest ``cap`` survive
            self._buffer[:] = v[n - cap :]
            self._next, self._size = 0, cap
            return
        first = min(n, cap - self._next)
        self._buffer[self._next : self._next + first] = v[:first]
        self._buffer[: n - first] = v[first:]
        self._next = (self._next + n) % cap
        self._size = min(cap, self._size + n)

    def values(self) -> FloatArray:
        """A copy of the window's values (rows), oldest first."""
        if self._size < self.capacity:
            return self._buffer[: self._size].copy()
        return np.concatenate((self._buffer[self._next :], self._buffer[: self._next]))

    def clear(self) -> None:
        """Forget every value (e.g. after a model switch changes the reference)."""
        self._next = self._size = 0


# --------------------------------------------------------------------------- monitors


class _Columns:
    """Drift state of K columns, updated in one vectorized pass per batch.

    The service observes every feature and the prediction of each scored batch; doing
    that column by column would cost tens of numpy calls per feature on the request path.
    Here a batch costs a fixed number of calls whatever K is. Not thread-safe.
    """

    def __init__(
        self,
        references: Sequence[ReferenceStats],
        lows: Sequence[float],
        highs: Sequence[float],
        window: int,
    ) -> None:
        self.low = np.asarray(lows, dtype=np.float64)
        self.high = np.asarray(highs, dtype=np.float64)
        if not (self.low < self.high).all():
            bad = int(np.flatnonzero(~(self.low < self.high))[0])
            raise ValueError(
                f"valid range of {references[bad].name!r}: low ({lows[bad]}) must be below "
                f"high ({highs[bad]})"
            )
        self.edges = [list(r.bin_edges) for r in references]
        self.reference_counts = [np.asarray(r.counts, dtype=np.int64) for r in references]
        self.window = RollingWindow(window, width=len(references))
        k = len(references)
        self.out_of_range = np.zeros(k, dtype=np.int64)
        self.missing = np.zeros(k, dtype=np.int64)
        self.observed = np.zeros(k, dtype=np.int64)

    def observe(self, x: FloatArray) -> None:
        """Take rows ``x`` [N, K] (already validated)."""
        if len(x) == 0:
            return
        present = ~np.isnan(x)
        counted = present.sum(axis=0)
        self.missing += len(x) - counted
        self.observed += counted
        self.out_of_range += ((x < self.low) | (x > self.high)).sum(axis=0)
        self.window.extend(x)

    def psi(self) -> list[float]:
        """PSI of each column's window against its reference (0.0 for an empty one)."""
        rows = self.window.values()
        return [
            psi(ref, bin_counts(rows[:, j], edges))
            for j, (ref, edges) in enumerate(zip(self.reference_counts, self.edges, strict=True))
        ]

    def reset(self) -> None:
        """Forget the window and counters; keep references and ranges."""
        self.window.clear()
        for counter in (self.out_of_range, self.missing, self.observed):
            counter[:] = 0


class DriftMonitor:
    """Drift signals of one served model: every feature, and its predictions.

    Built from the model card (reference bins and valid ranges; the prediction is checked
    against the target's range); the service feeds it the rows it scored and reads it
    when Prometheus scrapes. The window holds the last ``window`` rows. One lock guards
    all state, since requests run in worker threads; a batch costs a fixed number of
    numpy calls whatever the number of features.
    """

    def __init__(self, card: ModelCard, *, window: int = DEFAULT_WINDOW) -> None:
        self.model = card.name
        self.version = card.version
        self.names = [f.name for f in card.features]
        target = card.target.valid_range
        self._lock = threading.Lock()
        self._columns = _Columns(
            [*card.reference, card.prediction_reference],  # the prediction is the last column
            [*(f.valid_range.low for f in card.features), target.low],
            [*(f.valid_range.high for f in card.features), target.high],
            window,
        )

    def observe(self, rows: ArrayLike, predictions: ArrayLike) -> None:
        """Take a scored batch: ``rows`` [N, F] in the card's feature order, ``predictions``
        [N]. Shapes are checked before anything changes, so a bad call leaves the monitor as
        it was.
        """
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.names):
            raise ValueError(f"rows: expected shape (N, {len(self.names)}), got {x.shape}")
        y = np.asarray(predictions, dtype=np.float64).ravel()
        if len(y) != len(x):
            raise ValueError(f"predictions: expected {len(x)} values, got {len(y)}")
        # Column-major: every statistic below runs down columns, and a bulk-assembled
        # batch arrives column-major already.
        both = np.empty((len(x), x.shape[1] + 1), order="F")
        both[:, :-1], both[:, -1] = x, y
        with self._lock:
            self._columns.observe(both)

    @property
    def rows_in_window(self) -> int:
        """Rows the PSI is currently computed over (PSI of a few rows is noise)."""
        with self._lock:
            return len(self._columns.window)

    def feature_psi(self) -> dict[str, float]:
        """PSI per feature, by feature name."""
        with self._lock:
            values = self._columns.psi()
        return dict(zip(self.names, values[:-1], strict=True))

    def prediction_psi(self) -> float:
        """PSI of the recent predictions against the predictions on the training split."""
        with self._lock:
            rows = self._columns.window.values()
            return psi(
                self._columns.reference_counts[-1], bin_counts(rows[:, -1], self._columns.edges[-1])
            )

    def out_of_range_totals(self) -> dict[str, int]:
        """Values seen outside each feature's valid range, since start (a counter)."""
        with self._lock:
            return dict(zip(self.names, self._columns.out_of_range[:-1].tolist(), strict=True))

    def prediction_out_of_range_total(self) -> int:
        """Predictions outside the target's valid range, since start (a counter)."""
        with self._lock:
            return int(self._columns.out_of_range[-1])

    def missing_totals(self) -> dict[str, int]:
        """NaN values seen per feature, since start (a counter)."""
        with self._lock:
            return dict(zip(self.names, self._columns.missing[:-1].tolist(), strict=True))

    def observed_totals(self) -> dict[str, int]:
        """Non-NaN values seen per feature, since start (a counter)."""
        with self._lock:
            return dict(zip(self.names, self._columns.observed[:-1].tolist(), strict=True))

    def reset(self) -> None:
        """Forget every window and counter."""
        with self._lock:
            self._columns.reset()
