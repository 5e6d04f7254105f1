"""Drift statistics: is the plant still the plant the model was trained on?

A soft sensor fails quietly: its inputs wander out of the training distribution, a
thermocouple freezes, or the process shifts so the estimate carries a growing offset. This
module computes the signals that reveal each of these (see the drift section of DESIGN.md):

- per feature, the population stability index (PSI) of a sliding window against the
  card's reference bins, the number of values outside the valid range, and how long the
  value has not changed (a frozen sensor);
- the same PSI for the predictions;
- a two-sided Page-Hinkley test on the lab residual (lab - estimate), for a shift of the
  model's error that bias correction would otherwise hide.

Only numpy, the stdlib and the card schema are used: the service calls this from worker
threads on the request path, so it is plain in-memory arithmetic with one lock per monitor.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.card import ModelCard, ReferenceStats

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DEFAULT_WINDOW = 500  # values per feature: ~50 per decile bin, enough for a stable PSI
PSI_FLOOR = 1e-4  # proportion used for an empty bin, so ln(p_w / p_r) stays finite
CHANGE_TOLERANCE = 1e-9  # relative: a step smaller than this is float noise, not a change

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
    """The last ``capacity`` floats seen, in a preallocated ring buffer.

    A ring keeps the request path free of allocation and of the O(n) shifts a list or
    ``np.roll`` would cost per batch.
    """

    def __init__(self, capacity: int = DEFAULT_WINDOW) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._buffer: FloatArray = np.empty(capacity, dtype=np.float64)
        self._next = 0  # where the next value goes
        self._size = 0

    @property
    def capacity(self) -> int:
        """How many values the window holds at most."""
        return len(self._buffer)

    def __len__(self) -> int:
        return self._size

    def extend(self, values: ArrayLike) -> None:
        """Append values in order; the oldest fall out once the window is full."""
        v = np.asarray(values, dtype=np.float64).ravel()
        cap = self.capacity
        if len(v) >= cap:  # only the newest ``cap`` survive
            self._buffer[:] = v[-cap:]
            self._next, self._size = 0, cap
            return
        first = min(len(v), cap - self._next)
        self._buffer[self._next : self._next + first] = v[:first]
        self._buffer[: len(v) - first] = v[first:]
        self._next = (self._next + len(v)) % cap
        self._size = min(cap, self._size + len(v))

    def values(self) -> FloatArray:
        """A copy of the window's values, oldest first."""
        if self._size < self.capacity:
            return self._buffer[: self._size].copy()
        return np.concatenate((self._buffer[self._next :], self._buffer[: self._next]))

    def clear(self) -> None:
        """Forget every value (e.g. after a model switch changes the reference)."""
        self._next = self._size = 0


# --------------------------------------------------------------------------- monitors


def _as_times(times: ArrayLike | None, n: int, field: str) -> FloatArray:
    """The POSIX time of each of ``n`` values; ``None`` means they were all seen now."""
    if times is None:
        return np.full(n, time.time(), dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"{field}: expected shape ({n},), got {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError(f"{field}: times must be finite POSIX seconds")
    return t


class FeatureMonitor:
    """Drift signals of one signal: window PSI, out-of-range count, time since change.

    Not thread-safe by itself; :class:`DriftMonitor` serializes access. Usable alone for
    one signal in tests and tools.
    """

    def __init__(
        self,
        reference: ReferenceStats,
        low: float,
        high: float,
        *,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if not low < high:
            raise ValueError(f"valid range: low ({low}) must be below high ({high})")
        self.name = reference.name
        self.low, self.high = float(low), float(high)
        self._edges = list(reference.bin_edges)
        self._reference_counts = np.asarray(reference.counts, dtype=np.int64)
        self._window = RollingWindow(window)
        self.out_of_range_total = 0  # values outside [low, high] (inf included)
        self.missing_total = 0  # NaN values: not drift, but worth a counter of their own
        self.observed_total = 0  # non-NaN values seen
        self._last_value: float | None = None  # newest value in time order
        self._last_time = -math.inf  # its time
        self._last_change: float | None = None  # time the value last moved

    def __len__(self) -> int:
        """Values currently in the PSI window."""
        return len(self._window)

    def observe(self, values: ArrayLike, times: ArrayLike | None = None) -> None:
        """Take new values (one per time in ``times``, POSIX s; ``None`` = all now).

        NaN values only count as missing. Change tracking moves forward in time only:
        values older than the newest one already seen (a backfill) still feed the PSI
        window and the range count, but cannot make a frozen sensor look alive.
        """
        v = np.asarray(values, dtype=np.float64).ravel()
        t = _as_times(times, len(v), "times")
        present = ~np.isnan(v)
        self.missing_total += int(len(v) - present.sum())
        v, t = v[present], t[present]
        if len(v) == 0:
            return
        self.observed_total += len(v)
        self._window.extend(v)
        self.out_of_range_total += int(np.count_nonzero((v < self.low) | (v > self.high)))
        self._track_changes(v, t)

    def _track_changes(self, v: FloatArray, t: FloatArray) -> None:
        """Move the last-change time to the newest value that differs from its predecessor.

        A value counts as changed when ``|new - previous| > 1e-9 * max(1, |new|)``: exact
        repeats are what a frozen transmitter or a historian's hold-last-value sends.
        """
        order = np.argsort(t, kind="stable")
        v, t = v[order], t[order]
        fresh = t >= self._last_time
        v, t = v[fresh], t[fresh]
        if len(v) == 0:
            return
        previous = np.concatenate(([v[0] if self._last_value is None else self._last_value], v))
        with np.errstate(invalid="ignore"):  # inf - inf: no change between two infinities
            step = np.abs(v - previous[:-1])
        changed = step > CHANGE_TOLERANCE * np.maximum(1.0, np.abs(v))
        if self._last_change is None:
            self._last_change = float(t[0])  # nothing known before the first value
        if changed.any():
            self._last_change = float(t[np.flatnonzero(changed)[-1]])
        self._last_value, self._last_time = float(v[-1]), float(t[-1])

    def psi(self) -> float:
        """PSI of the current window against the card's reference bins (0.0 when empty)."""
        return psi(self._reference_counts, bin_counts(self._window.values(), self._edges))

    def seconds_since_change(self, now: float) -> float:
        """Seconds from the last change of the value to ``now``; NaN before any value.

        NaN (not 0 or inf) because "never seen" is neither fresh nor frozen; Prometheus
        exports it as NaN and alert rules ignore it.
        """
        if self._last_change is None:
            return math.nan
        return max(0.0, now - self._last_change)

    def is_frozen(self, now: float, limit_s: float) -> bool:
        """Whether the value has not changed for more than ``limit_s`` seconds."""
        since = self.seconds_since_change(now)
        return not math.isnan(since) and since > limit_s

    def reset(self) -> None:
        """Forget the window and counters (keeps the reference and the range)."""
        self._window.clear()
        self.out_of_range_total = self.missing_total = self.observed_total = 0
        self._last_value, self._last_time, self._last_change = None, -math.inf, None


class DriftMonitor:
    """Drift signals of one served model: every feature, and its predictions.

    Built from the model card (reference bins and valid ranges); the service feeds it the
    rows it scored and reads it when Prometheus scrapes. One lock guards all state, since
    requests run in worker threads; every call holds it only for numpy work on at most
    ``window`` values per feature.
    """

    def __init__(self, card: ModelCard, *, window: int = DEFAULT_WINDOW) -> None:
        self.model = card.name
        self.version = card.version
        self._lock = threading.Lock()
        self.features: list[FeatureMonitor] = [
            FeatureMonitor(ref, f.valid_range.low, f.valid_range.high, window=window)
            for f, ref in zip(card.features, card.reference, strict=True)
        ]
        target = card.target.valid_range
        self.prediction = FeatureMonitor(
            card.prediction_reference, target.low, target.high, window=window
        )
        self.names = [f.name for f in card.features]

    def observe(
        self,
        rows: ArrayLike,
        predictions: ArrayLike,
        times: ArrayLike | None = None,
    ) -> None:
        """Take a scored batch: ``rows`` [N, F] in the card's feature order, ``predictions``
        [N], ``times`` [N] POSIX seconds (``None``: all now). Shapes are checked before
        anything changes, so a bad call leaves the monitor as it was.
        """
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"rows: expected shape (N, {len(self.features)}), got {x.shape}")
        y = np.asarray(predictions, dtype=np.float64).ravel()
        if len(y) != len(x):
            raise ValueError(f"predictions: expected {len(x)} values, got {len(y)}")
        t = _as_times(times, len(x), "times")
        with self._lock:
            for j, monitor in enumerate(self.features):
                monitor.observe(x[:, j], t)
            self.prediction.observe(y, t)

    def feature_psi(self) -> dict[str, float]:
        """PSI per feature, by feature name."""
        with self._lock:
            return {m.name: m.psi() for m in self.features}

    def prediction_psi(self) -> float:
        """PSI of the recent predictions against the predictions on the training split."""
        with self._lock:
            return self.prediction.psi()

    def out_of_range_totals(self) -> dict[str, int]:
        """Values seen outside each feature's valid range, since start (a counter)."""
        with self._lock:
            return {m.name: m.out_of_range_total for m in self.features}

    def prediction_out_of_range_total(self) -> int:
        """Predictions outside the target's valid range, since start (a counter)."""
        with self._lock:
            return self.prediction.out_of_range_total

    def missing_totals(self) -> dict[str, int]:
        """NaN values seen per feature, since start (a counter)."""
        with self._lock:
            return {m.name: m.missing_total for m in self.features}

    def seconds_since_change(self, now: float) -> dict[str, float]:
        """Seconds since each feature's value last changed (NaN before its first value)."""
        with self._lock:
            return {m.name: m.seconds_since_change(now) for m in self.features}

    def frozen(self, now: float, limit_s: float) -> list[str]:
        """Names of the features whose value has not changed for more than ``limit_s``."""
        with self._lock:
            return [m.name for m in self.features if m.is_frozen(now, limit_s)]


# --------------------------------------------------------------------------- residual test


class PageHinkley:
    """Two-sided Page-Hinkley test for a shift of a stream's mean (here: lab residuals).

    Page, E. S. (1954) "Continuous inspection schemes", Biometrika 41, 100-115;
    Hinkley, D. V. (1971) "Inference about the change-point from cumulative sum tests",
    Biometrika 58, 509-523. The form below is the one common in drift detection
    (e.g. Gama et al. 2014, "A survey on concept drift adaptation"):

        m_up   += x - mean - delta;   PH_up   = m_up - min(m_up)     (upward shift)
        m_down += x - mean + delta;   PH_down = max(m_down) - m_down (downward shift)

    and the alarm goes on when either exceeds ``threshold`` (lambda). ``delta`` is the
    shift magnitude tolerated without alarm (half the smallest shift worth detecting is
    the textbook choice); both are in the stream's units, so :meth:`from_spread` scales
    them by the residual's standard deviation.

    ``mean`` is the in-control mean. ``None`` (default) uses the running mean of the stream
    so far, the classic self-calibrating form; it needs many in-control samples before a
    shift, since the running mean follows the shift afterwards. A number (e.g. 0.0, or the
    validation residual median) makes it Page's CUSUM against a known mean, which detects
    a shift right from the start: the better choice for sparse lab results.

    No alarm before ``min_samples`` values. The alarm latches until :meth:`reset`: an
    operator (or a model switch) acknowledges a drifted model, it does not heal by itself.
    """

    def __init__(
        self,
        delta: float,
        threshold: float,
        *,
        min_samples: int = 30,
        mean: float | None = None,
    ) -> None:
        if not (math.isfinite(delta) and delta >= 0):
            raise ValueError(f"delta must be finite and >= 0, got {delta}")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold must be finite and > 0, got {threshold}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {min_samples}")
        if mean is not None and not math.isfinite(mean):
            raise ValueError(f"mean must be finite or None, got {mean}")
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.min_samples = min_samples
        self.known_mean = mean
        self.reset()

    @classmethod
    def from_spread(
        cls,
        sigma: float,
        *,
        delta_sigmas: float = 0.5,
        threshold_sigmas: float = 10.0,
        min_samples: int = 30,
        mean: float | None = None,
    ) -> PageHinkley:
        """Parameters relative to the residual's standard deviation ``sigma``.

        With ``delta = 0.5 sigma`` and ``threshold = 10 sigma`` (CUSUM k = 0.5, h = 10),
        simulated on Gaussian noise: about 0.5 % of runs raise a false alarm within 1000
        in-control samples (h = 8 gave 12 %, too many for lab data that arrives for
        years), and a shift of 1 sigma is detected after a median of 18 samples (95 %:
        within 36), one of 2 sigma after 7 (95 %: within 10). The tests check these
        orders of magnitude.
        """
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be finite and > 0, got {sigma}")
        return cls(
            delta_sigmas * sigma,
            threshold_sigmas * sigma,
            min_samples=min_samples,
            mean=mean,
        )

    def reset(self) -> None:
        """Start over: no samples, statistics zero, alarm off."""
        self.count = 0
        self._mean = 0.0
        self._up = self._up_min = 0.0
        self._down = self._down_max = 0.0
        self._alarm = False

    def update(self, x: float) -> bool:
        """Take one value; return whether the alarm is on (it latches until reset)."""
        if not math.isfinite(x):
            raise ValueError(f"residual must be finite, got {x}")
        self.count += 1
        self._mean += (x - self._mean) / self.count
        centre = self._mean if self.known_mean is None else self.known_mean
        self._up += x - centre - self.delta
        self._up_min = min(self._up_min, self._up)
        self._down += x - centre + self.delta
        self._down_max = max(self._down_max, self._down)
        if self.count >= self.min_samples and self.statistic > self.threshold:
            self._alarm = True
        return self._alarm

    @property
    def alarm(self) -> bool:
        """Whether a shift was detected since the last reset."""
        return self._alarm

    @property
    def statistic_up(self) -> float:
        """Evidence of an upward shift (alarm when above ``threshold``)."""
        return self._up - self._up_min

    @property
    def statistic_down(self) -> float:
        """Evidence of a downward shift (alarm when above ``threshold``)."""
        return self._down_max - self._down

    @property
    def statistic(self) -> float:
        """The larger of the two one-sided statistics: what is compared to ``threshold``."""
        return max(self.statistic_up, self.statistic_down)

    @property
    def direction(self) -> int:
        """+1 if the upward statistic is the larger, -1 if the downward one, 0 if equal."""
        up, down = self.statistic_up, self.statistic_down
        return (up > down) - (up < down)

    @property
    def mean(self) -> float:
        """Running mean of the values since the last reset."""
        return self._mean
