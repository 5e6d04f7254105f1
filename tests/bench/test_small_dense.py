"""The small dense baseline: widths solved to a pruned network's parameter count."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import NetworkConfig, TrainConfig
from training.data import load_dataset
from training.experiment import SMALL_DENSE, RunConfig, run_experiment
from training.network import count_dense_parameters, match_widths
from training.spec import load_spec


@pytest.mark.parametrize(
    ("n_in", "hidden", "n_out"),
    [(10, (64, 64), 1), (33, (64, 64), 1), (784, (300, 100), 10), (5, (8,), 2)],
)
@pytest.mark.parametrize("share", [0.15, 0.3, 0.47, 0.6, 0.9, 1.0])
def test_widths_match_the_parameter_count(
    n_in: int, hidden: tuple[int, ...], n_out: int, share: float
) -> None:
    """The count lands within one hidden neuron's parameters of the target (2% typically)."""
    full = count_dense_parameters([n_in, *hidden, n_out])
    target = round(share * full)
    widths = match_widths(n_in, hidden, n_out, target)
    got = count_dense_parameters([n_in, *widths, n_out])
    one_neuron = n_in + 1 + max(hidden) + n_out
    assert abs(got - target) <= one_neuron
    assert all(1 <= w <= h for w, h in zip(widths, hidden, strict=True))


def test_widths_keep_the_proportions_and_hit_exact_shapes() -> None:
    """A target that a proportional shape reaches exactly gives that shape back."""
    assert match_widths(10, (64, 64), 1, count_dense_parameters([10, 32, 32, 1])) == (32, 32)
    assert match_widths(784, (300, 100), 10, count_dense_parameters([784, 150, 50, 10])) == (
        150,
        50,
    )
    assert match_widths(10, (64, 64), 1, 10**6)[0] > 64  # larger targets grow the network


@pytest.mark.parametrize("bad", [0, -5])
def test_widths_reject_a_non_positive_target(bad: int) -> None:
    """A parameter count must be positive."""
    with pytest.raises(ValueError, match="positive"):
        match_widths(10, (64, 64), 1, bad)


def test_small_dense_run_is_sized_to_the_target(tiny: tuple[Path, Path]) -> None:
    """run_experiment trains the narrowed network and reports its size."""
    spec, data = tiny
    ds = load_dataset(load_spec(spec), data)
    target = 150
    cfg = RunConfig(
        method=SMALL_DENSE,
        network=NetworkConfig(hidden=(16, 8)),
        train=TrainConfig(epochs=5, batch_size=8, progress=False),
        target_params=target,
    )
    metrics = run_experiment(ds, cfg).metrics
    assert metrics["network"]["hidden"] != [16, 8]
    assert abs(metrics["params_before"] - target) <= 4 + 1 + 16 + 1
    assert metrics["pruning_rate"] == 0.0
    with pytest.raises(ValueError, match="target_params"):
        run_experiment(ds, RunConfig(method=SMALL_DENSE, train=cfg.train))
