"""Is a row like the rows the model was built from? Training range, Hotelling T2 and SPE.

Built once per model version from its card's calibration block, then applied to every
scored batch as a handful of matrix operations, whatever the number of rows: the request
path of a one-row historian poll pays a few microseconds for it.

- **training range**: each feature against the range of the training file (widened by the
  card's margin); what counts for the row status is the number of *signals* outside (a
  sensor out of range puts its lagged copies out too, one fault not four);
- **T2** (Hotelling): the row's distance from the training mean inside the PCA subspace,
  in units of each component's spread: an unusual operating point;
- **SPE** (squared prediction error, Q): what the PCA cannot reconstruct: a broken
  correlation between sensors, the signature of one sensor going wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.card import Calibration, ModelCard

Flags = NDArray[np.bool_]


@dataclass(frozen=True)
class Assessment:
    """What the validity model says about each of ``n`` rows."""

    outside: Flags  # [n, G]: some feature of signal group g outside its training range
    t2: FloatArray  # [n]
    spe: FloatArray  # [n]
    residual: FloatArray | None  # [n, m]: each PCA column's residual over its validation spread


class InputValidity:
    """The card's training range and input PCA, ready to score rows [n, F] in card order."""

    def __init__(self, card: ModelCard, calibration: Calibration) -> None:
        names = [f.name for f in card.features]
        signals = list(dict.fromkeys(f.signal for f in card.features))
        self.groups = tuple(signals)  # signal names, in first-feature order
        group = np.array([signals.index(f.signal) for f in card.features])
        # [F, G] 0/1: a matrix product turns per-feature flags into per-signal counts.
        self._member = (group[:, None] == np.arange(len(signals))[None, :]).astype(np.float64)
        r = calibration.training_range
        self.low = np.array(r.low, dtype=np.float64)
        self.high = np.array(r.high, dtype=np.float64)
        pca = calibration.inputs
        self.columns = np.array([names.index(f) for f in pca.features], dtype=np.intp)
        self.pca_signals = tuple(pca.signals)
        self.mean = np.array(pca.mean)
        self.scale = np.array(pca.scale)
        self.loadings = np.array(pca.components).T  # [m, k]
        self.inverse_variance = 1.0 / np.array(pca.variances)
        self.residual_sd = np.array(pca.residual_sd)
        self.t2_limit = pca.t2_limit
        self.spe_limit = pca.spe_limit

    def assess(self, x: FloatArray, residual: bool = True) -> Assessment:
        """T2, SPE, signals outside the training range of rows ``x`` [n, F], and the PCA
        residuals when asked for (a stream's drift detector needs them)."""
        outside_feature = (x < self.low) | (x > self.high)
        outside = (
            (outside_feature @ self._member) > 0
            if outside_feature.any()
            else np.zeros((len(x), len(self.groups)), dtype=bool)
        )
        # A historian's 1e300 "bad value" overflows here: its T2 and SPE are inf (flagged),
        # the row is refused downstream; numpy's warning would only add log noise.
        with np.errstate(over="ignore", invalid="ignore"):
            z = (x[:, self.columns] - self.mean) / self.scale
            scores = z @ self.loadings
            squares = scores * scores
            t2 = squares @ self.inverse_variance
            # |z|^2 - |scores|^2: the loadings are orthonormal, so this is |z - z P P'|^2
            spe = np.maximum(np.einsum("ij,ij->i", z, z) - squares.sum(axis=1), 0.0)
            back = None
            if residual:
                back = (z - scores @ self.loadings.T) * (self.scale / self.residual_sd)
        return Assessment(outside, t2, spe, back)

    def clamp(self, x: FloatArray) -> FloatArray:
        """``x`` with every feature clipped into its training range (DeltaV's input limiting)."""
        return np.clip(x, self.low, self.high)


def input_validity(card: ModelCard) -> InputValidity | None:
    """The validity model of a card, or None for a card calibrated before it existed."""
    return None if card.calibration is None else InputValidity(card, card.calibration)
