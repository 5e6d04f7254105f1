"""Trainer: reproducible, records its history, keeps a checkpoint with final masks."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.experiment import RunConfig, epochs_to_target, run_experiment
from training.spec import load_spec

FAST = TrainConfig(epochs=30, batch_size=8, lr=3e-3, progress=False)
SMALL = NetworkConfig(hidden=(16, 8))


@pytest.fixture
def tiny_ds(tiny: tuple[Path, Path]) -> Dataset:
    spec, data = tiny
    return load_dataset(load_spec(spec), data)


def _run(ds: Dataset, **kw: Any) -> dict[str, Any]:
    cfg = RunConfig(network=SMALL, train=FAST, ca=CAConfig(tau=0.6), members=1, **kw)
    return run_experiment(ds, cfg).metrics


def test_same_seed_same_result_different_seed_differs(tiny_ds: Dataset) -> None:
    """Fixed seeds make a run repeatable to the last bit; another seed gives another run."""
    a, b = _run(tiny_ds, seed=3), _run(tiny_ds, seed=3)
    c = _run(tiny_ds, seed=4)
    assert a["test_rmse"] == b["test_rmse"]
    assert a["pruning_rate_per_layer"] == b["pruning_rate_per_layer"]
    assert a["test_rmse"] != c["test_rmse"]


def test_history_records_losses_sparsity_and_pruning(tiny_ds: Dataset) -> None:
    """One record per epoch; sparsity never decreases; the prunes add up to the final rate."""
    cfg = RunConfig(network=SMALL, train=FAST, ca=CAConfig(tau=0.8), members=1)
    report = run_experiment(tiny_ds, cfg)
    hist = report.result.history
    assert [h.epoch for h in hist] == list(range(len(hist)))
    sparsity = [h.sparsity for h in hist]
    assert all(b >= a for a, b in itertools.pairwise(sparsity))
    removed = sum(h.pruned + h.cleaned for h in hist)
    total = 4 * 16 + 16 * 8 + 8 + 4  # the chain's weights and the linear path's
    assert removed == round(report.metrics["pruning_rate"] * total)
    assert all(np.isfinite(h.train_loss) and np.isfinite(h.val_loss) for h in hist)
    assert all(len(h.sparsity_per_layer) == 4 for h in hist)  # 3 chain layers, linear path


def test_checkpoint_is_chosen_after_masks_are_final(tiny_ds: Dataset) -> None:
    """No connection is pruned after the best epoch, and its masks are the reported ones."""
    cfg = RunConfig(network=SMALL, train=FAST, ca=CAConfig(tau=0.8), members=1)
    report = run_experiment(tiny_ds, cfg)
    hist, best = report.result.history, report.result.best_epoch
    assert hist[best].pruned > 0 or any(h.pruned for h in hist[:best])  # pruning did happen
    assert all(h.pruned == 0 and h.cleaned == 0 for h in hist[best + 1 :])
    assert report.metrics["pruning_rate"] == pytest.approx(hist[-1].sparsity)


def test_early_stopping_ends_dense_training(tiny_ds: Dataset) -> None:
    """Dense training stops once validation loss has not improved for the patience."""
    cfg = RunConfig(
        method="dense",
        network=SMALL,
        train=TrainConfig(
            epochs=400, batch_size=8, lr=1e-2, early_stopping=5, progress=False, refit=False
        ),
    )
    report = run_experiment(tiny_ds, cfg)
    assert report.result.epochs_run < 400
    assert report.result.epochs_run - 1 - report.result.best_epoch == 5


def test_metrics_have_every_field_the_cli_promises(tiny_ds: Dataset) -> None:
    m = _run(tiny_ds, method="gmp", target_sparsity=0.5, dense_best_val_loss=10.0)
    for key in (
        "method",
        "seed",
        "noise",
        "test_rmse",
        "test_mae",
        "test_r2",
        "val_rmse",
        "pruning_rate",
        "pruning_rate_per_layer",
        "neurons_removed",
        "inputs_removed",
        "params_before",
        "params_after",
        "epochs",
        "epochs_to_target",
        "train_seconds",
    ):
        assert key in m
    assert m["params_before"] == 4 * 16 + 16 + 16 * 8 + 8 + 8 + 1 + 4 + 1  # chain, linear path
    assert m["params_after"] < m["params_before"]
    assert m["epochs_to_target"] == 1


def test_epochs_to_target() -> None:
    assert epochs_to_target([5.0, 3.0, 1.05, 0.9], 1.0) == 3
    assert epochs_to_target([5.0, 3.0], 1.0) is None
    assert epochs_to_target([5.0], None) is None


def _curved(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, np.sin(2 * x[:, 0]) * x[:, 1] + x[:, 2] ** 2 + 0.02 * rng.normal(size=n)


def test_a_run_still_improving_at_the_end_of_its_plan_trains_on_with_final_masks() -> None:
    """With the default length, a small data set is not cut off while validation improves:
    past the planned epochs the masks stay final and early stopping decides, up to the step
    budget. Given ``epochs``, the run is exactly that long."""
    from training.appraisal import CAPruner
    from training.trainer import train

    (xt, yt), (xv, yv) = _curved(200, 0), _curved(100, 1)
    auto = TrainConfig(plan_epochs=10, step_budget=1500, batch_size=16, lr=3e-3, progress=False)
    assert auto.epochs is None and auto.most_epochs(len(xt)) == 116  # 13 steps per epoch
    result = train(xt, yt, xv, yv, SMALL, CAPruner(CAConfig()), auto)
    hist = result.history
    assert result.planned_epochs == 10
    assert 10 < len(hist) <= 116
    assert result.best_epoch >= 10  # chosen past the plan
    assert {h.sparsity for h in hist[9:]} == {hist[9].sparsity}  # no prune past the plan
    best, plan_end = hist[result.best_epoch].val_rmse, hist[9].val_rmse
    assert best is not None and plan_end is not None
    assert best < 0.8 * plan_end  # than at the plan's end
    exact = train(xt, yt, xv, yv, SMALL, CAPruner(CAConfig()), replace(auto, epochs=10))
    assert len(exact.history) == 10
