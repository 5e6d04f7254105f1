"""The additive network family: one subnetwork per input, summed, beside the linear path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from service.contracts.registry import Registry
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.experiment import RunConfig, RunReport, run_experiment
from training.export import run_onnx
from training.network import MaskedMLP
from training.publish import export_run, publish
from training.retrain import run_config_from_card
from training.spec import load_spec

ADDITIVE = NetworkConfig(hidden=(4, 3), additive=True)


def _perturbed(model: MaskedMLP) -> MaskedMLP:
    """Random weights on every allowed connection (a trained-looking chain)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in model.masked_layers():
            layer.weight.normal_()
            layer.bias.normal_()
        model.apply_masks()
    return model


def test_each_chain_neuron_reads_one_input_only() -> None:
    """First-layer neuron k reads input k // width; deeper layers stay within their group."""
    model = MaskedMLP(3, 1, ADDITIVE)
    first, second, out = model.chain_layers()
    assert first.weight.shape == (12, 3) and second.weight.shape == (9, 12)
    assert torch.equal(first.mask.sum(dim=1), torch.ones(12))
    assert first.mask.nonzero()[:, 1].tolist() == [k // 4 for k in range(12)]
    groups = [set((second.mask[r].nonzero().flatten() // 4).tolist()) for r in range(9)]
    assert groups == [{r // 3} for r in range(9)]
    assert bool(out.mask.all())


def test_chain_has_no_interactions_between_inputs() -> None:
    """f(x) = sum_i g_i(x_i) + linear: every mixed difference is zero."""
    model = _perturbed(MaskedMLP(3, 1, ADDITIVE)).eval()
    x = torch.randn(50, 3)
    shift_0 = torch.tensor([1.3, 0.0, 0.0])
    shift_2 = torch.tensor([0.0, 0.0, -0.7])
    with torch.no_grad():
        mixed = model(x + shift_0 + shift_2) - model(x + shift_0) - model(x + shift_2) + model(x)
        plain = model(x + shift_0) - model(x)
    assert float(mixed.abs().max()) < 1e-5
    assert float(plain.abs().max()) > 1e-2  # the chain does depend on the input


def test_contains_the_linear_model_exactly_at_the_start() -> None:
    """Started at a linear model, the additive network computes exactly that model."""
    model = _perturbed(MaskedMLP(3, 1, ADDITIVE)).eval()
    weight, bias = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([0.25])
    model.start_at_linear(weight, bias)
    x = torch.randn(40, 3)
    with torch.no_grad():
        assert torch.equal(model(x), x @ weight.T + bias)


def test_pruning_rate_counts_only_the_family_connections() -> None:
    """The block structure is not pruning: an untouched additive network is 0% pruned."""
    model = MaskedMLP(3, 1, ADDITIVE)
    active, total = model.count_weights()
    assert active == total == 12 + 9 * 4 + 9 + 3
    assert model.pruning_rate() == 0.0
    assert model.pruning_rate_per_layer() == [0.0, 0.0, 0.0, 0.0]
    assert model.count_unpruned_parameters() == total + 12 + 9 + 1 + 1


@pytest.fixture
def additive_run(tiny: tuple[Path, Path]) -> tuple[Dataset, RunReport]:
    spec, data = tiny
    ds = load_dataset(load_spec(spec), data)
    cfg = RunConfig(
        network=NetworkConfig(hidden=(6,), additive=True),
        train=TrainConfig(epochs=30, batch_size=8, lr=3e-3, progress=False, start_at_linear=False),
        ca=CAConfig(tau=0.8, stop_after_val_rises=0),
        members=2,
    )
    return ds, run_experiment(ds, cfg)


def test_pruned_additive_ensemble_exports_and_matches_torch(
    additive_run: tuple[Dataset, RunReport],
) -> None:
    """CA prunes the additive family; the merged ONNX graph passes the checker and agrees
    with torch; the report records the family and its unpruned size."""
    ds, report = additive_run
    metrics = report.metrics
    assert metrics["network"]["additive"] is True
    n_in = len(ds.feature_names)
    per_member = (n_in * 6) + (n_in * 6) + n_in + (n_in * 6 + 1) + 1  # weights and biases
    assert metrics["params_before"] == 2 * per_member
    assert 0.0 < metrics["pruning_rate"] < 1.0
    exported = export_run(ds, report)
    onnx.checker.check_model(onnx.load_from_string(exported.onnx_bytes), full_check=True)
    rows = np.vstack([ds.validation.x, ds.test.x])
    torch_out = report.predict(rows)
    onnx_out = run_onnx(exported.onnx_bytes, rows[:, exported.inputs_kept])
    y = np.concatenate([ds.train.y, ds.validation.y, ds.test.y])
    assert np.max(np.abs(onnx_out - torch_out)) <= 1e-5 * np.ptp(y)


def test_card_records_the_family_and_retraining_reuses_it(
    additive_run: tuple[Dataset, RunReport], tmp_path: Path
) -> None:
    """The model card says the chain is additive, so a retraining job trains the same family."""
    ds, report = additive_run
    registry = Registry(tmp_path / "models")
    publish(ds, report, registry, "tiny", version="v1")
    card = registry.verify("tiny", "v1")
    assert card.training["network"]["additive"] is True
    cfg = run_config_from_card(card, seed=3)
    assert cfg.network.additive and tuple(cfg.network.hidden) == (6,)
