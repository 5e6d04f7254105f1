"""One training run end to end: pick the pruner, train, clean up, measure.

The CLI and the benchmarks both call ``run_experiment`` so every published figure comes from
the same code path as a plant's training run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from service.contracts.arrays import FloatArray
from training.appraisal import CAPruner
from training.baseline import Baseline, baseline_block, fit_baselines
from training.config import ENSEMBLE_MEMBERS, METHODS, CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset
from training.ensemble import Ensemble, member_seeds, merge
from training.evaluation import score
from training.network import match_widths
from training.pruning import DensePruner, GMPPruner, MagnitudePruner, Pruner, RandomPruner
from training.refit import refit
from training.shrink import ShrunkNetwork, dense_architecture, shrink
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
    # to, normally what CA kept on the same data and seed (for the whole ensemble).
    target_params: int | None = None
    # Networks trained from different seeds and averaged (one ONNX graph); 1 = a single one.
    members: int = ENSEMBLE_MEMBERS


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
    narrowed to ``cfg.target_params`` parameters (shared among the members)."""
    if cfg.method != SMALL_DENSE:
        return cfg.network
    if cfg.target_params is None:
        raise ValueError("method 'small-dense' needs target_params (use what CA kept)")
    linear = (n_inputs + 1) * n_outputs if cfg.network.linear_path else 0
    per_member = max(1, round(cfg.target_params / cfg.members) - linear)
    widths = match_widths(n_inputs, cfg.network.hidden, n_outputs, per_member)
    return replace(cfg.network, hidden=widths)


@dataclass
class RunReport:
    """A finished run: the trained members, their merged shrunk form and the figures."""

    config: RunConfig
    members: list[TrainResult]
    shrunk: ShrunkNetwork  # every member's surviving structure merged: what is exported
    dense: ShrunkNetwork  # the same members unpruned, for sizing
    metrics: dict[str, Any]
    baselines: list[Baseline] = field(default_factory=list)

    @property
    def result(self) -> TrainResult:
        """The first member (trained with the run's own seed): its history and model."""
        return self.members[0]

    @property
    def ensemble(self) -> Ensemble:
        return Ensemble(self.members)

    def predict(self, x: FloatArray) -> FloatArray:
        """The run's estimate in the target's unit (the members' mean)."""
        return self.ensemble.predict(x)

    def predict_held_out(self, x: FloatArray) -> FloatArray:
        """The estimate of the members validation judged: for refitted members, the runs
        fitted on the training rows only, whose validation errors are out of sample."""
        return Ensemble([m.selected or m for m in self.members]).predict(x)


def epochs_to_target(val_losses: Sequence[float], reference: float | None) -> int | None:
    """Epochs (counted from 1) until validation loss first reaches 1.1x the dense best."""
    if reference is None:
        return None
    hits = np.flatnonzero(np.asarray(val_losses) <= 1.1 * reference)
    return int(hits[0]) + 1 if hits.size else None


def train_members(dataset: Dataset, cfg: RunConfig, network: NetworkConfig) -> list[TrainResult]:
    """Train the run's members, each with its own seed (member 0 with the run's)."""
    members = []
    transform = dataset.spec.target.target_transform()
    for i, seed in enumerate(member_seeds(cfg.seed, cfg.members)):
        label = cfg.method if cfg.members == 1 else f"{cfg.method} {i + 1}/{cfg.members}"
        pruner = make_pruner(replace(cfg, seed=seed))
        train_cfg = replace(cfg.train, seed=seed)  # the member's seed governs init and order
        selected = train(
            dataset.train.x,
            dataset.train.y,
            dataset.validation.x,
            dataset.validation.y,
            network,
            pruner,
            train_cfg,
            transform,
            unit=dataset.spec.target.unit,
            desc=label,
        )
        if cfg.train.refit:
            selected = refit(dataset, network, pruner, train_cfg, selected, transform)
        members.append(selected)
    return members


def _member_figures(
    result: TrainResult, shrunk: ShrunkNetwork, hidden: Sequence[int]
) -> dict[str, Any]:
    model = result.model
    chosen = result.selected or result  # a refit's history figures are its selecting run's
    val = [h.val_rmse for h in chosen.history]
    return {
        "seed": result.seed,
        "pruning_rate": model.pruning_rate(),
        "pruning_rate_per_layer": model.pruning_rate_per_layer(),
        "neurons_removed": [
            width - len(kept) for width, kept in zip(hidden, shrunk.hidden_kept, strict=True)
        ],
        "inputs_kept": len(shrunk.inputs_kept),
        "params_after": shrunk.count_parameters()[0],
        "epochs": chosen.epochs_run,
        "planned_epochs": chosen.planned_epochs,
        "best_epoch": chosen.best_epoch + 1,
        "best_val_rmse": None if chosen.best_epoch < 0 else val[chosen.best_epoch],
        "refit": result.refit,
        "ended_linear": result.ended_linear,
    }


def run_experiment(dataset: Dataset, cfg: RunConfig) -> RunReport:
    """Train one method on one dataset and measure it; the test split is only scored here."""
    make_pruner(cfg)  # refuse inconsistent settings before any training
    network = resolve_network(cfg, len(dataset.feature_names), 1)
    members = train_members(dataset, cfg, network)
    # A member's dense shape is taken before shrink's clean-up touches its masks.
    dense = merge([dense_architecture(m.model) for m in members])
    shrunk_each = [shrink(m.model) for m in members]
    shrunk = merge(shrunk_each)
    first = members[0]
    widths = first.model.hidden_widths  # the additive family widens each layer per input
    figures = [_member_figures(m, sh, widths) for m, sh in zip(members, shrunk_each, strict=True)]
    metrics: dict[str, Any] = {
        "method": cfg.method,
        "seed": cfg.seed,
        "noise": cfg.noise,
        "dataset": dataset.spec.name,
        "unit": dataset.spec.target.unit,
        **_scores(dataset, members),
        "refit": bool(cfg.train.refit and first.refit),
        **_structure(dataset, members, shrunk, figures, widths),
        "members": cfg.members,
        "member_runs": figures,
        "ended_linear": sum(f["ended_linear"] for f in figures),
        **_learning(cfg, members),
        "pruner": first.pruner_config,
        "network": {
            "hidden": list(network.hidden),
            "activation": network.activation,
            "linear_path": network.linear_path,
            "additive": network.additive,
        },
        "training": asdict(replace(cfg.train, seed=cfg.seed)),
        "target_transform": dataset.spec.target.transform,
        "feature_names": dataset.feature_names,
        "rows": {
            "train": len(dataset.train),
            "validation": len(dataset.validation),
            "test": len(dataset.test),
        },
        "cleanup": {
            key: sum(getattr(m.cleanup, key) for m in members)
            for key in ("dead_neurons", "folded_neurons", "connections_removed")
        },
    }
    baselines = fit_baselines(dataset)
    metrics["baseline"] = baseline_block(dataset, baselines)
    return RunReport(cfg, members, shrunk, dense, metrics, baselines)


def _scores(dataset: Dataset, members: list[TrainResult]) -> dict[str, Any]:
    """Errors on each split; validation on the members it judged (a refit has learnt from
    those rows); on simulated data also against the true quality, not only the analyzer."""
    ensemble = Ensemble(members)
    test = score(dataset.test.y, ensemble.predict(dataset.test.x))
    held_out = Ensemble([m.selected or m for m in members])
    val = score(dataset.validation.y, held_out.predict(dataset.validation.x))
    train_scores = score(dataset.train.y, ensemble.predict(dataset.train.x))
    out: dict[str, Any] = {
        "test_rmse": test.rmse,
        "test_mae": test.mae,
        "test_r2": test.r2,
        "val_rmse": val.rmse,
        "val_mae": val.mae,
        "val_r2": val.r2,
        "train_rmse": train_scores.rmse,
    }
    truth = dataset.spec.target.truth
    if truth is not None:
        for part_name, part in (("val", dataset.validation), ("test", dataset.test)):
            s = score(part.truth[truth], ensemble.predict(part.x))
            out |= {f"{part_name}_truth_rmse": s.rmse, f"{part_name}_truth_r2": s.r2}
    return out


def _structure(
    dataset: Dataset,
    members: list[TrainResult],
    shrunk: ShrunkNetwork,
    figures: list[dict[str, Any]],
    widths: Sequence[int],
) -> dict[str, Any]:
    """What pruning left: rates, neurons and inputs removed, parameters before and after."""
    nonzero, _ = shrunk.count_parameters()
    per_layer = np.mean([m.model.pruning_rate_per_layer() for m in members], axis=0).tolist()
    return {
        "pruning_rate": float(np.mean([m.model.pruning_rate() for m in members])),
        "pruning_rate_per_layer": per_layer,
        "neurons_removed": [
            int(sum(f["neurons_removed"][i] for f in figures)) for i in range(len(widths))
        ],
        "inputs_removed": [
            name for i, name in enumerate(dataset.feature_names) if i not in shrunk.inputs_kept
        ],
        "inputs_kept": [dataset.feature_names[i] for i in shrunk.inputs_kept],
        "params_before": sum(m.model.count_unpruned_parameters() for m in members),
        "params_after": nonzero,
    }


def _learning(cfg: RunConfig, members: list[TrainResult]) -> dict[str, Any]:
    """Learning-speed figures, from the run that selected (a refit's own history is empty),
    and the time every fit took (refits included)."""
    chosen = members[0].selected or members[0]
    val_losses = [h.val_loss for h in chosen.history]
    reference = cfg.dense_best_val_loss
    if reference is None and cfg.method == "dense":
        reference = val_losses[chosen.best_epoch]  # dense is its own reference
    fits = [*members, *(m.selected for m in members if m.selected is not None)]
    train_seconds = sum(m.train_seconds for m in fits)
    return {
        "epochs": chosen.epochs_run,
        "best_epoch": chosen.best_epoch + 1,
        "best_val_loss": val_losses[chosen.best_epoch],
        "val_loss_auc": float(np.mean(val_losses)),
        "epochs_to_target": epochs_to_target(val_losses, reference),
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(1, sum(m.epochs_run for m in fits)),
    }
