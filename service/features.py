"""Feature assembly: the one place where lagged feature rows are built from time series.

Training builds its matrices with these functions and the service builds the rows it scores
with them too, so the two cannot disagree about what ``u5_lag2`` means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


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


def derive_signals(
    values: Mapping[str, FloatArray], derived: Sequence[DerivedSignal]
) -> dict[str, FloatArray]:
    """Return ``values`` plus every derived signal, computed in declaration order.

    A derived signal may use an earlier derived one. NaN in a source propagates, so a
    missing sensor makes the derived value missing rather than silently biased.

    >>> out = derive_signals({"a": np.array([1.0]), "b": np.array([3.0])},
    ...                      [DerivedSignal("m", {"a": 0.5, "b": 0.5})])
    >>> float(out["m"][0])
    2.0
    """
    out = dict(values)
    for d in derived:
        missing = [s for s in d.weights if s not in out]
        if missing:
            raise KeyError(f"derived signal {d.name!r} needs {missing}, which are not given")
        acc = np.full_like(next(iter(out.values())), d.offset, dtype=np.float64)
        for source, weight in d.weights.items():
            acc = acc + weight * np.asarray(out[source], dtype=np.float64)
        out[d.name] = acc
    return out


def assemble_rows(signals: Mapping[str, FloatArray], features: Sequence[LagFeature]) -> FloatArray:
    """Build one feature row per time step that has full history.

    ``signals`` holds equally long, time-ordered series (index 0 is the oldest sample).
    Row ``k`` of the result describes time index ``max_lag(features) + k``; its column ``j``
    is ``signals[features[j].signal][t - features[j].lag]``. A series shorter than the
    history needed gives zero rows, not an error: the caller decides whether that is one.

    >>> x = assemble_rows({"u": np.arange(5.0)}, [LagFeature("u"), LagFeature("u", 2)])
    >>> x.tolist()
    [[2.0, 0.0], [3.0, 1.0], [4.0, 2.0]]
    """
    if not features:
        raise ValueError("at least one feature is needed")
    lengths = {len(signals[f.signal]) for f in features}
    if len(lengths) != 1:
        raise ValueError(f"signals differ in length: {sorted(lengths)}")
    (length,) = lengths
    history = max_lag(features)
    n_rows = max(length - history, 0)
    out = np.empty((n_rows, len(features)), dtype=np.float64)
    for j, f in enumerate(features):
        start = history - f.lag
        out[:, j] = np.asarray(signals[f.signal], dtype=np.float64)[start : start + n_rows]
    return out
