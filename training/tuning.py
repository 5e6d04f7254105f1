"""``softsensor train --tune``: the recipe's knobs chosen on the validation split by Optuna.

Each trial trains one network (not the ensemble) with a candidate recipe and is scored by its
validation RMSE in the target's unit; the test split is never read. The search is seeded
(TPE sampler) and bounded by a wall-clock budget and a trial count, whichever ends first, so
a plant's job finishes in a known time. The best recipe then trains the full ensemble.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from training.data import Dataset
from training.experiment import RunConfig, run_experiment

# Width and depth of the hidden chain the search may pick from.
HIDDEN_CHOICES: dict[str, tuple[int, ...]] = {
    "16": (16,),
    "32": (32,),
    "64": (64,),
    "32-32": (32, 32),
    "64-64": (64, 64),
}


@dataclass
class TuneResult:
    """The recipe chosen, and every trial that led to it (for the metrics file)."""

    config: RunConfig
    best_val_rmse: float
    params: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "trials"


def suggest(trial: Any, base: RunConfig) -> RunConfig:
    """One candidate recipe: the regularization and pruning knobs that matter most."""
    hidden = HIDDEN_CHOICES[trial.suggest_categorical("hidden", list(HIDDEN_CHOICES))]
    train = replace(
        base.train,
        lr=trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-4, 1e-1, log=True),
        linear_weight_decay=trial.suggest_float("linear_weight_decay", 1e-5, 1e-1, log=True),
        input_noise=trial.suggest_float("input_noise", 0.0, 0.5),
        progress=False,
        refit=False,  # trials are judged on validation, which a refit would have learnt from
    )
    ca = replace(base.ca, tau=trial.suggest_float("tau", 0.3, 0.7))
    network = replace(base.network, hidden=hidden)
    return replace(base, network=network, train=train, ca=ca, members=1)


def tune(
    dataset: Dataset,
    base: RunConfig,
    *,
    seconds: float,
    trials: int,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Search on validation; returns ``base`` with the best knobs and its own member count.

    The first trial is the default recipe itself, so the result is never worse on
    validation than what an untuned run would have used.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=base.seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(_params_of(base))
    records: list[dict[str, Any]] = []
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        cfg = suggest(trial, base)
        metrics = run_experiment(dataset, cfg).metrics
        value = float(metrics["val_rmse"])
        records.append(
            {
                "number": trial.number,
                "params": dict(trial.params),
                "val_rmse": value,
                "pruning_rate": metrics["pruning_rate"],
                "ended_linear": bool(metrics["ended_linear"]),
                "seconds": metrics["train_seconds"],
            }
        )
        if log is not None:
            log(
                f"trial {trial.number}: validation RMSE {value:.4g} {dataset.spec.target.unit}"
                f" (best {min(r['val_rmse'] for r in records):.4g})"
            )
        return value

    study.optimize(objective, n_trials=trials, timeout=seconds)
    elapsed = time.perf_counter() - started
    best = study.best_trial
    chosen = replace(suggest(optuna.trial.FixedTrial(best.params), base), members=base.members)
    chosen = replace(
        chosen,
        train=replace(chosen.train, progress=base.train.progress, refit=base.train.refit),
    )
    return TuneResult(
        config=chosen,
        best_val_rmse=float(best.value) if best.value is not None else float("nan"),
        params=dict(best.params),
        trials=records,
        seconds=elapsed,
        stopped_by="trials" if len(study.trials) >= trials else "time budget",
    )


def _params_of(cfg: RunConfig) -> dict[str, Any]:
    """The search-space point of a recipe (the default's hidden shape if it is a choice)."""
    hidden = next((k for k, v in HIDDEN_CHOICES.items() if v == tuple(cfg.network.hidden)), "64-64")
    return {
        "hidden": hidden,
        "lr": min(max(cfg.train.lr, 3e-4), 3e-3),
        "weight_decay": min(max(cfg.train.weight_decay, 1e-4), 1e-1),
        "linear_weight_decay": min(max(cfg.train.linear_weight_decay, 1e-5), 1e-1),
        "input_noise": min(max(cfg.train.input_noise, 0.0), 0.5),
        "tau": min(max(cfg.ca.tau, 0.3), 0.7),
    }
