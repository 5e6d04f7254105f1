"""Target transforms declared in the dataset spec, and their inverses.

A composition near purity is far from linear in tray temperatures, while the log of the
impurity is close to linear (Mejdell & Skogestad 1991, Ind. Eng. Chem. Res. 30:2543, used the
logarithm of the impurities in their temperature estimators). The network is fitted in the
transformed space; the inverse is built into the exported ONNX graph, so the service still
reads and returns engineering units. Both transforms are defined on the target's declared
physical range ``[low, high]``, and their inverses can never leave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray

TransformKind = Literal["none", "log", "logit"]
TRANSFORMS: tuple[TransformKind, ...] = ("none", "log", "logit")


@dataclass(frozen=True)
class TargetTransform:
    """``log``: z = ln(y - low) (an impurity above its bound); ``logit``: z = ln((y - low) /
    (high - y)) (a fraction of the range, e.g. mol % in [0, 100], linear near either end).

    >>> t = TargetTransform("log", 0.0, 100.0)
    >>> float(t.inverse(t.forward(np.array([2.5])))[0])
    2.5
    """

    kind: TransformKind = "none"
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in TRANSFORMS:
            raise ValueError(f"target transform must be one of {TRANSFORMS}, not {self.kind!r}")
        if not self.low < self.high:
            raise ValueError(f"target range must have low < high, got [{self.low}, {self.high}]")

    def outside_domain(self, y: FloatArray) -> NDArray[np.bool_]:
        """Boolean per value: finite but where the transform is undefined (at or beyond the
        bound it divides by, or takes the log of)."""
        v = np.asarray(y, dtype=np.float64)
        finite = np.isfinite(v)
        if self.kind == "log":
            return np.asarray(finite & (v <= self.low))
        if self.kind == "logit":
            return np.asarray(finite & ((v <= self.low) | (v >= self.high)))
        return np.zeros(v.shape, dtype=bool)

    def forward(self, y: FloatArray) -> FloatArray:
        v = np.asarray(y, dtype=np.float64)
        if self.kind == "log":
            return np.asarray(np.log(v - self.low))
        if self.kind == "logit":
            return np.asarray(np.log((v - self.low) / (self.high - v)))
        return v

    def inverse(self, z: FloatArray) -> FloatArray:
        v = np.asarray(z, dtype=np.float64)
        if self.kind == "log":
            return np.asarray(np.exp(v) + self.low)
        if self.kind == "logit":
            return np.asarray(self.low + (self.high - self.low) / (1.0 + np.exp(-v)))
        return v
