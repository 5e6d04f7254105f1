"""One training run end to end: pick the pruner, train, clean up, measure.

The CLI and the benchmarks both call ``run_experiment`` so every published figure comes from
the same code path as a plant's training run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from training.appraisal import CAPruner
from training.config import METHODS, CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset
from training.evaluation import score
from training.network import count_dense_parameters, match_widths
from training.pruning import DensePruner, GMPPruner, MagnitudePruner, Pruner, RandomPruner
from training.shrink import ShrunkNetwork, shrink
from training.trainer import TrainResult, train


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; recorded whole in ``metrics.json``."""

    method: str = "ca"
    seed: int = 0
    noise: float = 0.0
    # Final sparsity for the baselines: one number, or one per layer (use what CA reached).
    target_sparsity: float | Sequence[float] | None = None
    network: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ca: CAConfig = field(default_factory=CAConfig)
    # Best validation loss of a dense run on the same data and seed: defines the
    # learning-speed target (epochs to reach 1.1x of it).
    dense_best_val_loss: float | None = None
    # Method "small-dense": the parameter count (weights + biases) to size the dense network
    # to, normally what CA kept on the same data and seed.
    target_params: int | None = None


# A dense network narrowed to a pruned network's parameter count: a baseline, not a pruner,
# so it is not among the CLI's training methods.
SMALL_DENSE = "small-dense"


def make_pruner(cfg: RunConfig) -> Pruner:
    """The pruner a method name stands for, with the run's knobs."""
    if cfg.method not in (*METHODS, SMALL_DENSE):
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {cfg.method!r}")
    if cfg.method == "ca":
        return CAPruner(cfg.ca)
    if cfg.method in ("dense", SMALL_DENSE):
        return DensePruner()
    if cfg.method == "magnitude":
        return MagnitudePruner(cfg.target_sparsity)
    if cfg.target_sparsity is None:
        raise ValueError(
            f"method {cfg.method!r} needs a target sparsity (use the sparsity CA reached)"
        )
    if cfg.method == "gmp":
        return GMPPruner(cfg.target_sparsity)
    return RandomPruner(cfg.target_sparsity, seed=cfg.seed)


def resolve_network(cfg: RunConfig, n_inputs: int, n_outputs: int) -> NetworkConfig:
    """The network a run trains: the configured one, or for small-dense the same shape
    narrowed to ``cfg.target_params`` parameters."""
    if cfg.method != SMALL_DENSE:
        return cfg.network
    if cfg.target_params is None:
        raise ValueError("method 'small-dense' needs target_params (use what CA kept)")
    widths = match_widths(n_inputs, cfg.network.hidden, n_outputs, cfg.target_params)
    return replace(cfg.network, hidden=widths)


@dataclass
class RunReport:
    """A finished run: the trained network, its shrunk form and the figures."""

    config: RunConfig
    result: TrainResult
    shrunk: ShrunkNetwork
    metrics: dict[str, Any]


def epochs_to_target(val_losses: Sequence[float], reference: float | None) -> int | None:
    """Epochs (counted from 1) until validation loss first reaches 1.1x the dense best."""
    if reference is None:
        return None
    hits = np.flatnonzero(np.asarray(val_losses) <= 1.1 * reference)
    return int(hits[0]) + 1 if hits.size else None


def run_experiment(dataset: Dataset, cfg: RunConfig) -> RunReport:
    """Train one method on one dataset and measure it; the test split is only scored here."""
    pruner = make_pruner(cfg)
    network = resolve_network(cfg, len(dataset.feature_names), 1)
    train_cfg = replace(cfg.train, seed=cfg.seed)  # the run's seed governs init and order
    result = train(
        dataset.train.x,
        dataset.train.y,
        dataset.validation.x,
        dataset.validation.y,
        network,
        pruner,
        train_cfg,
    )
    model = result.model
    rate = model.pruning_rate()
    per_layer = model.pruning_rate_per_layer()
    shrunk = shrink(model)
    sizes = [len(dataset.feature_names), *network.hidden, 1]
    nonzero, _ = shrunk.count_parameters()
    val_losses = [h.val_loss for h in result.history]
    reference = cfg.dense_best_val_loss
    if reference is None and cfg.method == "dense":
        reference = val_losses[result.best_epoch]  # dense is its own reference
    test = score(dataset.test.y, result.predict(dataset.test.x))
    val = score(dataset.validation.y, result.predict(dataset.validation.x))
    train_scores = score(dataset.train.y, result.predict(dataset.train.x))
    metrics: dict[str, Any] = {
        "method": cfg.method,
        "seed": cfg.seed,
        "noise": cfg.noise,
        "dataset": dataset.spec.name,
        "test_rmse": test.rmse,
        "test_mae": test.mae,
        "test_r2": test.r2,
        "val_rmse": val.rmse,
        "val_mae": val.mae,
        "val_r2": val.r2,
        "train_rmse": train_scores.rmse,
        "pruning_rate": rate,
        "pruning_rate_per_layer": per_layer,
        "neurons_removed": [
            width - len(kept)
            for width, kept in zip(network.hidden, shrunk.hidden_kept, strict=True)
        ],
        "inputs_removed": [
            name for i, name in enumerate(dataset.feature_names) if i not in shrunk.inputs_kept
        ],
        "params_before": count_dense_parameters(sizes),
        "params_after": nonzero,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch + 1,
        "best_val_loss": val_losses[result.best_epoch],
        "val_loss_auc": float(np.mean(val_losses)),
        "epochs_to_target": epochs_to_target(val_losses, reference),
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.train_seconds / max(1, result.epochs_run),
        "pruner": result.pruner_config,
        "network": {"hidden": list(network.hidden), "activation": network.activation},
        "training": asdict(train_cfg),
        "feature_names": dataset.feature_names,
        "rows": {
            "train": len(dataset.train),
            "validation": len(dataset.validation),
            "test": len(dataset.test),
        },
        "cleanup": asdict(result.cleanup),
    }
    truth = dataset.spec.target.truth
    if truth is not None:
        # Simulated data: also score against the true quality, not only the noisy analyzer.
        for part_name, part in (("val", dataset.validation), ("test", dataset.test)):
            s = score(part.truth[truth], result.predict(part.x))
            metrics |= {f"{part_name}_truth_rmse": s.rmse, f"{part_name}_truth_r2": s.r2}
    return RunReport(cfg, result, shrunk, metrics)
