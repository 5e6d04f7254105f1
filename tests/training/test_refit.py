"""Refit on train + validation with the choices validation made."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tests.conftest import TINY_SPEC, write_tiny_csv
from training.appraisal import CAPruner
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.evaluation import fit_ridge
from training.experiment import RunConfig, run_experiment
from training.network import MaskedMLP
from training.spec import load_spec

FAST = TrainConfig(epochs=20, batch_size=8, lr=3e-3, progress=False)


def _tiny(tmp_path: Path, n: int = 80) -> Dataset:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    return load_dataset(load_spec(spec), write_tiny_csv(tmp_path / "tiny.csv", n=n))


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def test_a_refit_learns_from_train_and_validation_with_the_selecting_runs_choices(
    tmp_path: Path,
) -> None:
    """Scalers and data are train + validation; alpha and length come from the run that was
    judged on validation, which the result keeps."""
    ds = _tiny(tmp_path)
    cfg = RunConfig(network=NetworkConfig(hidden=(8,)), train=replace(FAST, refit=True), members=1)
    member = run_experiment(ds, cfg).result
    chosen = member.selected
    assert member.refit and chosen is not None and not chosen.refit
    both = np.vstack([ds.train.x, ds.validation.x])
    np.testing.assert_allclose(member.x_scaler.mean_, both.mean(axis=0))
    np.testing.assert_allclose(chosen.x_scaler.mean_, ds.train.x.mean(axis=0))
    assert member.ridge_alpha == chosen.ridge_alpha
    assert member.ended_linear == chosen.ended_linear
    if not chosen.ended_linear:
        assert member.epochs_run == chosen.best_epoch + 1


def test_the_refit_of_a_run_that_ended_linear_is_ridge_on_train_and_validation(
    tmp_path: Path,
) -> None:
    """Validation rejected the network: the refit is ridge with the selected alpha, fitted
    on the training and validation rows together."""
    ds = _tiny(tmp_path)
    wreck = TrainConfig(epochs=10, batch_size=8, lr=5.0, progress=False, refit=True)
    report = run_experiment(
        ds, RunConfig(network=NetworkConfig(hidden=(8,)), train=wreck, members=1)
    )
    member = report.result
    assert member.ended_linear and member.selected is not None and member.epochs_run == 0
    both_x = np.vstack([ds.train.x, ds.validation.x])
    both_y = np.concatenate([ds.train.y, ds.validation.y])
    assert member.ridge_alpha is not None
    ridge = fit_ridge(both_x, both_y, ds.validation.x, ds.validation.y, (member.ridge_alpha,))
    np.testing.assert_allclose(report.predict(ds.test.x), ridge.predict(ds.test.x), atol=1e-4)
    assert report.metrics["member_runs"][0]["refit"]


def test_ca_in_a_refit_stops_appraising_where_the_selecting_run_stopped() -> None:
    """The refit has no held-out rows for the validation-rise guard: it replays the stop."""
    torch.manual_seed(0)
    model = MaskedMLP(4, 1, NetworkConfig(hidden=(6,)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pruner = CAPruner(CAConfig(), stop_at=14)
    pruner.start(model, opt, 100)
    for epoch in range(30):
        pruner.end_epoch(epoch, model, opt, val_loss=1.0 / (epoch + 1))  # never rising
    assert pruner.stopped_at_ == 14 and pruner.final_epoch == 15
