"""Error measures and the linear baselines a soft sensor must beat to be worth deploying."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from service.contracts.arrays import FloatArray


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


RIDGE_ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-4, 4.5, 0.5))


@dataclass
class RidgeModel:
    """Ridge on standardized inputs (scikit-learn), alpha chosen on the validation split.

    ``coef_`` and ``intercept_`` are in standardized input units, so the network's linear
    path can start exactly here.
    """

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
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
    inverse: Callable[[FloatArray], FloatArray] | None = None,
) -> RidgeModel:
    """Ridge regression with the alpha of lowest validation RMSE; the test split is never
    seen here. Inputs are standardized on the training split (population spread, as the
    network's own scaler), so one alpha grid suits every unit. With ``inverse``, ``y_train``
    is a transformed target and each alpha is judged on ``inverse(prediction)`` against
    ``y_val`` in the target's own unit."""
    from sklearn.linear_model import Ridge

    mean = np.asarray(x_train, dtype=np.float64).mean(axis=0)
    std = np.asarray(x_train, dtype=np.float64).std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    z = (x_train - mean) / scale
    best: RidgeModel | None = None
    best_rmse = np.inf
    for alpha in alphas:
        fitted = Ridge(alpha=alpha).fit(z, y_train)
        model = RidgeModel(
            float(alpha), mean, scale, np.asarray(fitted.coef_), float(fitted.intercept_)
        )
        pred = model.predict(x_val)
        rmse = score(y_val, pred if inverse is None else inverse(pred)).rmse
        if rmse < best_rmse:
            best, best_rmse = model, rmse
    assert best is not None
    return best
