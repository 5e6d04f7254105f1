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
        mean, scale = np.array(pca.mean), np.array(pca.scale)
        loadings = np.array(pca.components).T  # [m, k]
        self._k = loadings.shape[1]
        # A row's PCA scores and residual are one affine map of the row, z = (x - mean) / scale
        # of the PCA's columns, then [z P | z (I - P P')]: one matrix product per batch, the
        # gather and standardization folded into the weights (zero for features not in it).
        maps = np.hstack([loadings, np.eye(len(mean)) - loadings @ loadings.T])  # [m, k + m]
        self._weights = np.zeros((len(names), maps.shape[1]))
        np.add.at(self._weights, self.columns, maps / scale[:, None])
        self._offset = -(mean / scale) @ maps
        self.inverse_variance = 1.0 / np.array(pca.variances)
        self._back = scale / np.array(pca.residual_sd)  # a residual in validation spreads
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
            mapped = x @ self._weights + self._offset
            scores, rest = mapped[:, : self._k], mapped[:, self._k :]
            t2 = (scores * scores) @ self.inverse_variance
            spe = np.einsum("ij,ij->i", rest, rest)  # |z - z P P'|^2, as training computes it
            back = rest * self._back if residual else None
        return Assessment(outside, t2, spe, back)

    def clamp(self, x: FloatArray) -> FloatArray:
        """``x`` with every feature clipped into its training range (DeltaV's input limiting)."""
        return np.clip(x, self.low, self.high)


def input_validity(card: ModelCard) -> InputValidity | None:
    """The validity model of a card, or None for a card calibrated before it existed."""
    return None if card.calibration is None else InputValidity(card, card.calibration)
