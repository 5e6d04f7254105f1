"""Standardization fitted on the training split only, later folded into the ONNX graph."""

from __future__ import annotations

import numpy as np

from service.contracts.arrays import FloatArray


class Standardizer:
    """z = (x - mean_) / scale_ per column. A zero spread maps to scale 1 (column unchanged)."""

    mean_: FloatArray
    scale_: FloatArray

    def fit(self, x: FloatArray) -> Standardizer:
        """Learn mean and spread per column: sensors come in different units."""
        arr = np.asarray(x, dtype=np.float64)
        arr = arr.reshape(len(arr), -1)
        mean, std = arr.mean(axis=0), arr.std(axis=0)
        self.mean_ = mean
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, x: FloatArray) -> FloatArray:
        arr = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return np.asarray((arr - self.mean_) / self.scale_)

    def inverse_transform(self, z: FloatArray) -> FloatArray:
        arr = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
        return np.asarray(arr * self.scale_ + self.mean_)
