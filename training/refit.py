"""Refit on train + validation with the choices the validation split made.

Process data drift: the validation rows are the most recent the plant has, and the test
period (or the plant, once served) follows them. A model fitted on the training rows only
never sees them. The refit keeps every choice the selecting run made on validation (the
ridge alpha of the linear start, the number of epochs, the epoch where the validation-rise
guard stopped appraisal, whether the network beat its linear start at all) and trains again,
same seed, on the training and validation rows together, ending at the same epoch.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from training.appraisal import CAPruner
from training.config import NetworkConfig, TrainConfig
from training.data import Dataset
from training.pruning import Pruner
from training.target import TargetTransform
from training.trainer import Trainer, TrainResult


def replay_pruner(pruner: Pruner) -> Pruner:
    """The same pruner for the refit: CA stops appraising where the selecting run stopped
    (the refit has no held-out rows to watch); the other pruners depend on no validation."""
    if isinstance(pruner, CAPruner):
        stop = pruner.stopped_at_
        return CAPruner(pruner.cfg, stop_at=pruner.schedule.total_epochs if stop is None else stop)
    return pruner


def refit(
    dataset: Dataset,
    network: NetworkConfig,
    pruner: Pruner,
    config: TrainConfig,
    selected: TrainResult,
    transform: TargetTransform | None = None,
) -> TrainResult:
    """Train ``selected``'s recipe again on train + validation, to its best epoch.

    ``pruner`` is the selecting run's (after its training), so that CA's stop is replayed.
    The validation rows are passed as the trainer's validation too: they only fill the
    history (in-sample figures) and pick nothing, since the alpha is given.
    """
    x = np.vstack([dataset.train.x, dataset.validation.x])
    y = np.concatenate([dataset.train.y, dataset.validation.y])
    trainer = Trainer(
        x,
        y,
        dataset.validation.x,
        dataset.validation.y,
        network,
        replay_pruner(pruner),
        replace(config, epochs=selected.planned_epochs, early_stopping=selected.planned_epochs),
        transform,
        ridge_alpha=selected.ridge_alpha,
    )
    epochs = 0 if selected.ended_linear else selected.best_epoch + 1
    while len(trainer.history) < epochs:
        trainer.run_epoch()
    result = trainer.finish(end_linear=selected.ended_linear)
    return replace(result, refit=True, selected=selected)
