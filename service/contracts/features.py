"""Feature assembly: the one place where lagged feature rows are built from time series.

Training builds its matrices with these functions and the service builds the rows it scores
with them too, so the two cannot disagree about what ``u5_lag2`` means. Everything goes
through ``FeaturePlan``: derived signals as one matrix product, lags as one gather.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray

# A step between two samples longer than this many sample intervals is a gap in time: lags
# are taken by sample, so no row's lags may span one. Training leaves such rows out
# (``training.gaps``) and the service starts a stream's lag history afresh after one.
GAP_INTERVALS = 1.5


def gap_seconds(interval_s: float | None) -> float | None:
    """The longest step that is not a gap, for a sample interval (None: rows are samples)."""
    return None if interval_s is None else GAP_INTERVALS * interval_s


def gap_breaks(times_s: FloatArray, gap_s: float | None) -> NDArray[np.intp]:
    """The rows of a series (times in seconds) that come after a gap: a step over ``gap_s``
    (none when ``gap_s`` is None)."""
    if gap_s is None or len(times_s) < 2:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.diff(times_s) > gap_s) + 1


@dataclass(frozen=True)
class LagFeature:
    """One model input: ``signal`` as it was ``lag`` samples before the row's time."""

    signal: str
    lag: int = 0

    @property
    def name(self) -> str:
        """Stable column name: the signal itself at lag 0, ``<signal>_lag<k>`` otherwise."""
        return self.signal if self.lag == 0 else f"{self.signal}_lag{self.lag}"


@dataclass(frozen=True)
class DerivedSignal:
    """A signal computed from measured ones as ``offset + sum(weight * signal)``.

    Linear combinations cover what soft-sensor feature sets use (averages of redundant
    thermocouples, differences across a section) without evaluating expressions.
    """

    name: str
    weights: Mapping[str, float] = field(default_factory=dict)
    offset: float = 0.0


def max_lag(features: Sequence[LagFeature]) -> int:
    """History a row needs: the largest lag over ``features`` (0 for none)."""
    return max((f.lag for f in features), default=0)


BULK_VALUES = 4096  # feature values per call above which assembly copies slices


@dataclass(frozen=True)
class FeaturePlan:
    """How to turn a matrix of measured signals [T, S] into feature rows [T - history, F].

    Built once per model (or dataset); applying it is two numpy operations, cheap enough for
    one row per HTTP request.
    """

    signals: tuple[str, ...]  # measured signals: the columns of the input matrix, in order
    derived: tuple[DerivedSignal, ...]
    features: tuple[LagFeature, ...]
    _mix: tuple[tuple[NDArray[np.intp], FloatArray, float], ...] = field(init=False, repr=False)
    _cols: NDArray[np.intp] = field(init=False, repr=False)
    _lags: NDArray[np.intp] = field(init=False, repr=False)
    history: int = field(init=False)

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("at least one feature is needed")
        names = list(self.signals)
        # Derived signals may use earlier derived ones: expand them into measured weights.
        expanded: dict[str, FloatArray] = {
            s: np.eye(len(self.signals))[i] for i, s in enumerate(self.signals)
        }
        offsets: dict[str, float] = dict.fromkeys(self.signals, 0.0)
        for d in self.derived:
            missing = [s for s in d.weights if s not in expanded]
            if missing:
                raise KeyError(f"derived signal {d.name!r} needs {missing}, which are not given")
            w = np.zeros(len(self.signals))
            off = d.offset
            for source, weight in d.weights.items():
                w = w + weight * expanded[source]
                off += weight * offsets[source]
            expanded[d.name], offsets[d.name] = w, off
            names.append(d.name)
        unknown = [f.signal for f in self.features if f.signal not in expanded]
        if unknown:
            raise KeyError(f"features use unknown signals {sorted(set(unknown))}")
        # Only the sources a derived signal really uses: a NaN elsewhere must not leak in.
        mix = tuple(
            (np.flatnonzero(w), w[np.flatnonzero(w)], offsets[d.name])
            for d in self.derived
            for w in (expanded[d.name],)
        )
        object.__setattr__(self, "_mix", mix)
        object.__setattr__(
            self, "_cols", np.array([names.index(f.signal) for f in self.features], dtype=np.intp)
        )
        object.__setattr__(self, "_lags", np.array([f.lag for f in self.features], dtype=np.intp))
        object.__setattr__(self, "history", max_lag(self.features))

    def derive(self, values: FloatArray) -> FloatArray:
        """[T, S] measured -> [T, S + D] with the derived signals appended (NaN propagates)."""
        v = np.asarray(values, dtype=np.float64)
        if not self._mix:
            return v
        extra = [v[:, idx] @ w + off for idx, w, off in self._mix]
        return np.hstack([v, np.column_stack(extra)])

    def assemble(self, values: FloatArray) -> FloatArray:
        """One feature row per time step with full history.

        Row ``k`` describes time index ``history + k``; column ``j`` is
        ``signal_j[t - lag_j]``. Fewer samples than the history needs give zero rows.
        """
        full = self.derive(values)
        n_rows = max(len(full) - self.history, 0)
        if n_rows * len(self._cols) <= BULK_VALUES:  # a request's few rows: one gather
            t = np.arange(self.history, self.history + n_rows)[:, None]
            return np.asarray(full[t - self._lags[None, :], self._cols[None, :]])
        # A long series: one contiguous slice copy per feature beats a gather through a
        # [rows, features] index (about 3x for 100k rows), and the rows come out F-ordered.
        by_signal = np.ascontiguousarray(full.T)
        out = np.empty((len(self._cols), n_rows))
        starts = self.history - self._lags
        for j, (col, start) in enumerate(zip(self._cols.tolist(), starts.tolist(), strict=True)):
            out[j] = by_signal[col, start : start + n_rows]
        return out.T

    def assemble_at(
        self, values: FloatArray, rows: NDArray[np.intp], first: NDArray[np.intp]
    ) -> FloatArray:
        """Feature rows for the time steps ``rows`` of ``values``; row ``k`` reads nothing
        before ``first[k]``: a lag that reaches further takes the value at ``first[k]``.

        That is ``assemble`` of a series padded in front with copies of its first row,
        for several short series stacked in one matrix, in one gather: the requests that
        arrive together, each with its own window.
        """
        full = self.derive(values)
        t = np.maximum(rows[:, None] - self._lags[None, :], first[:, None])
        return np.asarray(full[t, self._cols[None, :]])


def derive_signals(
    values: Mapping[str, FloatArray], derived: Sequence[DerivedSignal]
) -> dict[str, FloatArray]:
    """Return ``values`` plus every derived signal (declaration order; NaN propagates).

    >>> out = derive_signals({"a": np.array([1.0]), "b": np.array([3.0])},
    ...                      [DerivedSignal("m", {"a": 0.5, "b": 0.5})])
    >>> float(out["m"][0])
    2.0
    """
    if not derived:
        return dict(values)
    names = tuple(values)
    plan = FeaturePlan(names, tuple(derived), (LagFeature(names[0]),))
    matrix = np.column_stack([np.asarray(values[n], dtype=np.float64) for n in names])
    full = plan.derive(matrix)
    return dict(values) | {d.name: full[:, len(names) + i] for i, d in enumerate(derived)}


def assemble_rows(signals: Mapping[str, FloatArray], features: Sequence[LagFeature]) -> FloatArray:
    """Dictionary form of ``FeaturePlan.assemble`` for already derived signals.

    >>> x = assemble_rows({"u": np.arange(5.0)}, [LagFeature("u"), LagFeature("u", 2)])
    >>> x.tolist()
    [[2.0, 0.0], [3.0, 1.0], [4.0, 2.0]]
    """
    if not features:
        raise ValueError("at least one feature is needed")
    names = tuple(dict.fromkeys(f.signal for f in features))
    lengths = {len(signals[n]) for n in names}
    if len(lengths) != 1:
        raise ValueError(f"signals differ in length: {sorted(lengths)}")
    matrix = np.column_stack([np.asarray(signals[n], dtype=np.float64) for n in names])
    return FeaturePlan(names, (), tuple(features)).assemble(matrix)
