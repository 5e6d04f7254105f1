"""Structural clean-up removes dead and constant neurons without changing the function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import DEBUTANIZER_SPEC
from training.config import NetworkConfig, TrainConfig
from training.data import load_dataset
from training.experiment import RunConfig, run_experiment
from training.network import MaskedMLP
from training.pruning import prune_connections
from training.shrink import clean_up, shrink
from training.spec import load_spec


def _out(model: MaskedMLP, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out: np.ndarray = model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    return out


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "elu", "gelu"])
def test_clean_up_and_shrink_keep_the_function(activation: str) -> None:
    """Dead neurons go, constant ones are folded into the next bias, unused inputs are listed."""
    torch.manual_seed(0)
    model = MaskedMLP(6, 1, NetworkConfig(hidden=(8, 5), activation=activation, linear_path=False))
    with torch.no_grad():
        for layer in model.masked_layers():
            layer.bias.uniform_(-1, 1)
    first, second, last = model.masked_layers()
    drop0 = torch.zeros_like(first.mask, dtype=torch.bool)
    drop0[:, 4] = True  # input 4 unused
    drop0[2, :] = True  # hidden-1 neuron 2 has no inputs: constant
    drop1 = torch.zeros_like(second.mask, dtype=torch.bool)
    drop1[:, 5] = True  # hidden-1 neuron 5 has no outputs: dead
    drop1[3, :] = True  # hidden-2 neuron 3 constant
    drop2 = torch.zeros_like(last.mask, dtype=torch.bool)
    drop2[0, 1] = True  # hidden-2 neuron 1 dead
    for layer, drop in zip(model.masked_layers(), (drop0, drop1, drop2), strict=True):
        prune_connections(layer, drop, None)
    x = np.random.default_rng(1).normal(size=(200, 6))
    before = _out(model, x)
    stats = clean_up(model)
    assert stats.dead_neurons == 2 and stats.folded_neurons == 2
    assert np.max(np.abs(_out(model, x) - before)) < 1e-6
    net = shrink(model)
    assert net.inputs_kept == [0, 1, 2, 3, 5]
    assert [len(k) for k in net.hidden_kept] == [6, 3]
    assert [w.shape for w in net.weights] == [(6, 5), (3, 6), (1, 3)]
    assert np.max(np.abs(net.predict(x) - before)) < 1e-6


def test_clean_up_cascades_through_layers() -> None:
    """Removing a neuron can make one in the layer before dead; clean-up follows the chain."""
    torch.manual_seed(0)
    model = MaskedMLP(3, 1, NetworkConfig(hidden=(2, 2), linear_path=False))
    first, second, last = model.masked_layers()
    drop_last = torch.tensor([[True, False]])
    prune_connections(last, drop_last, None)  # hidden-2 neuron 0 dead
    drop_second = torch.tensor([[False, True], [True, False]])
    prune_connections(second, drop_second, None)  # hidden-1 neuron 0 then only feeds dead
    clean_up(model)
    assert first.mask[0].sum() == 0 and second.mask.sum() == 1


@pytest.mark.slow
def test_clean_up_exact_on_pruned_debutanizer_network(debutanizer_path: Path) -> None:
    """After CA training, the shrunk network gives the same test estimates (< 1e-6)."""
    ds = load_dataset(load_spec(DEBUTANIZER_SPEC), debutanizer_path)
    cfg = RunConfig(method="ca", train=TrainConfig(epochs=40, progress=False))
    report = run_experiment(ds, cfg)
    z = report.result.x_scaler.transform(ds.test.x)
    torch_out = _out(report.result.model, z)
    assert report.metrics["pruning_rate"] > 0.2
    assert np.max(np.abs(report.shrunk.predict(z) - torch_out)) < 1e-6
