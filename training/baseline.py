"""The simple alternatives a soft sensor must beat to be worth deploying, fitted in every run.

A plant engineer who sees ridge regression (or PLS) in a spreadsheet beat the network picks
the spreadsheet; persistence of the latest analyzer value is what operators use when there
is no soft sensor at all. Both are scored on the same features and split as the network;
the test split is only ever scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.contracts.arrays import FloatArray
from training.data import Dataset, Part
from training.evaluation import RidgeModel, Scores, fit_ridge, score


@dataclass
class Baseline:
    """One fitted baseline: how it predicts, and a line describing it."""

    name: str
    description: str
    ridge: RidgeModel | None = None
    column: int | None = None  # persistence: the feature holding the latest analyzer value
    transformed: bool = False  # ridge fitted on the spec's transformed target

    def predict(self, ds: Dataset, x: FloatArray) -> FloatArray:
        if self.column is not None:
            return np.asarray(x[:, self.column], dtype=np.float64)
        assert self.ridge is not None
        out = self.ridge.predict(x)
        return ds.spec.target.target_transform().inverse(out) if self.transformed else out


def persistence_column(ds: Dataset) -> int | None:
    """The feature holding the latest analyzer value known online, if the spec has one."""
    lags = [
        (int(name.rsplit("_lag", 1)[1]), i)
        for i, name in enumerate(ds.feature_names)
        if name.startswith(f"{ds.spec.target.name}_lag")
    ]
    return min(lags)[1] if lags else None


def fit_baselines(ds: Dataset) -> list[Baseline]:
    """Ridge (alpha by validation) on the target as recorded; ridge on the transformed target
    when the spec declares one (the linear model of the network's own family); persistence
    when the inputs hold a lagged analyzer value."""
    ridge = fit_ridge(ds.train.x, ds.train.y, ds.validation.x, ds.validation.y)
    out = [Baseline("ridge", f"ridge regression, alpha {ridge.alpha:g} by validation", ridge)]
    transform = ds.spec.target.target_transform()
    if transform.kind != "none":
        t_ridge = fit_ridge(
            ds.train.x,
            transform.forward(ds.train.y),
            ds.validation.x,
            ds.validation.y,
            inverse=transform.inverse,
        )
        out.append(
            Baseline(
                "ridge_transformed",
                f"ridge on {transform.kind}(target), alpha {t_ridge.alpha:g} by validation",
                t_ridge,
                transformed=True,
            )
        )
    column = persistence_column(ds)
    if column is not None:
        name = ds.feature_names[column]
        out.append(Baseline("persistence", f"latest analyzer value ({name})", column=column))
    return out


def _scores(s: Scores) -> dict[str, Any]:
    return {"rmse": s.rmse, "mae": s.mae, "r2": s.r2, "rows": s.rows}


def score_part(ds: Dataset, part: Part, pred: FloatArray) -> dict[str, Any]:
    """Scores against the analyzer and, on simulated data, against the true quality."""
    out = {"analyzer": _scores(score(part.y, pred))}
    truth = ds.spec.target.truth
    if truth is not None:
        out["truth"] = _scores(score(part.truth[truth], pred))
    return out


def baseline_block(ds: Dataset, baselines: list[Baseline]) -> dict[str, Any]:
    """The ``baseline`` block of metrics.json: every baseline on validation and test."""
    block: dict[str, Any] = {}
    for b in baselines:
        entry: dict[str, Any] = {"description": b.description}
        if b.ridge is not None:
            entry["alpha"] = b.ridge.alpha
        if b.column is not None:
            entry["feature"] = ds.feature_names[b.column]
        for name, part in (("validation", ds.validation), ("test", ds.test)):
            entry[name] = score_part(ds, part, b.predict(ds, part.x))
        block[b.name] = entry
    return block
