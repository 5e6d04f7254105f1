"""The product families of ``bench.model_families``: ridge plus the one product that
validation prefers must find a real interaction and leave the splits as they were."""

from __future__ import annotations

import numpy as np

from bench.model_families import Splits, product_families


def test_the_single_product_is_the_true_interaction() -> None:
    rng = np.random.default_rng(0)
    x = {
        k: rng.standard_normal((n, 4))
        for k, n in (("train", 400), ("validation", 200), ("test", 200))
    }
    y = {
        k: v[:, 0] - 0.5 * v[:, 3] + 0.8 * v[:, 1] * v[:, 2] + 0.05 * rng.standard_normal(len(v))
        for k, v in x.items()
    }
    splits = Splits(x, y, ["a", "b", "c", "d"])
    before = {k: v.copy() for k, v in x.items()}
    out = product_families(splits, np.logspace(-3, 1, 5))
    best = out["ridge + best single product"]
    assert best["setting"].startswith("b * c,"), best
    assert best["test_rmse"] < 0.1  # the noise is 0.05; ridge alone leaves the 0.8 b c term
    assert out["ridge + all pairwise products"]["test_rmse"] < 0.1
    assert all(np.array_equal(splits.x[k], before[k]) for k in before)
