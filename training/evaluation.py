"""Error measures and the linear baselines a soft sensor must beat to be worth deploying."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from service.features import FloatArray


@dataclass(frozen=True)
class Scores:
    """RMSE, MAE and R2 of an estimate against the analyzer, in the target's unit."""

    rmse: float
    mae: float
    r2: float
    rows: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def score(y_true: FloatArray, y_pred: FloatArray) -> Scores:
    """Score a 1-D estimate; R2 is 1 - SSE / SST around the true mean."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"shapes differ: {t.shape} vs {p.shape}")
    err = p - t
    sst = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / sst if sst > 0 else float("nan")
    return Scores(float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err))), r2, int(t.size))


@dataclass
class RidgeModel:
    """Closed-form ridge on standardized inputs, alpha chosen on the validation split."""

    alpha: float
    mean_: FloatArray
    scale_: FloatArray
    coef_: FloatArray
    intercept_: float

    def predict(self, x: FloatArray) -> FloatArray:
        return np.asarray(((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_)


def fit_ridge(
    x_train: FloatArray,
    y_train: FloatArray,
    x_val: FloatArray,
    y_val: FloatArray,
    alphas: tuple[float, ...] = tuple(10.0 ** np.arange(-4, 4.5, 0.5)),
) -> RidgeModel:
    """Ridge regression; the test split is never seen here."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    z = (x_train - mean) / scale
    y_mean = float(y_train.mean())
    best: RidgeModel | None = None
    best_rmse = np.inf
    for alpha in alphas:
        coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y_train - y_mean))
        model = RidgeModel(float(alpha), mean, scale, coef, y_mean)
        rmse = score(y_val, model.predict(x_val)).rmse
        if rmse < best_rmse:
            best, best_rmse = model, rmse
    assert best is not None
    return best
