"""Training loop: Adam, a pruner's hooks, early stopping on validation loss, fixed seeds.

The checkpoint kept is the best validation epoch among those whose masks are final, so the
model returned is the pruned one, not a denser snapshot from before the last prune.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F  # noqa: N812
from tqdm.auto import tqdm

from service.features import FloatArray
from training.config import NetworkConfig, TrainConfig
from training.network import MaskedMLP
from training.pruning import Pruner
from training.scaling import Standardizer
from training.shrink import CleanupStats, clean_up


@dataclass
class EpochRecord:
    """One line of the training history."""

    epoch: int
    train_loss: float
    val_loss: float
    sparsity: float
    sparsity_per_layer: list[float]
    pruned: int  # connections removed by the pruner this epoch
    cleaned: int  # connections removed by structural clean-up this epoch
    seconds: float


@dataclass
class TrainResult:
    """The trained (and pruned) network with what is needed to use and describe it."""

    model: MaskedMLP
    x_scaler: Standardizer
    y_scaler: Standardizer
    history: list[EpochRecord]
    best_epoch: int
    train_seconds: float
    pruner_config: dict[str, Any]
    cleanup: CleanupStats = field(default_factory=CleanupStats)

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def predict(self, x: FloatArray) -> FloatArray:
        """Estimate in the target's unit for raw (unscaled) feature rows."""
        z = torch.as_tensor(self.x_scaler.transform(x), dtype=torch.float32)
        self.model.eval()
        with torch.no_grad():
            out = self.model(z).double().numpy()
        return self.y_scaler.inverse_transform(out).ravel()

    def predict_classes(self, x: FloatArray) -> NDArray[np.int64]:
        """Most likely class per raw feature row (classification runs)."""
        z = torch.as_tensor(self.x_scaler.transform(x), dtype=torch.float32)
        self.model.eval()
        with torch.no_grad():
            classes = self.model(z).argmax(dim=1).numpy()
        return np.asarray(classes, dtype=np.int64)

    def history_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.history]


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.mean((out - y) ** 2)


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


def _evaluate(model: MaskedMLP, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(x), y))


class Trainer:
    """The training loop one epoch at a time.

    ``train`` runs it to the end; a benchmark can interleave two trainers epoch by epoch so
    both see the same machine state when their costs are compared.
    """

    def __init__(
        self,
        x_train: FloatArray,
        y_train: FloatArray,
        x_val: FloatArray,
        y_val: FloatArray,
        network: NetworkConfig,
        pruner: Pruner,
        config: TrainConfig,
    ) -> None:
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.config, self.pruner = config, pruner
        self.x_scaler = Standardizer().fit(x_train, pooled=config.input_scaling == "pooled")
        self.xt = torch.as_tensor(self.x_scaler.transform(x_train), dtype=torch.float32)
        self.xv = torch.as_tensor(self.x_scaler.transform(x_val), dtype=torch.float32)
        self.loss_fn: LossFn
        if config.task == "classification":
            # Integer labels 0..K-1, one output (logit) per class; nothing to scale.
            self.y_scaler = Standardizer.identity(1)
            self.yt = torch.as_tensor(np.asarray(y_train).ravel(), dtype=torch.long)
            self.yv = torch.as_tensor(np.asarray(y_val).ravel(), dtype=torch.long)
            n_outputs = int(max(self.yt.max(), self.yv.max())) + 1
            self.loss_fn = _cross_entropy
        else:
            self.y_scaler = Standardizer().fit(y_train)
            self.yt = torch.as_tensor(self.y_scaler.transform(y_train), dtype=torch.float32)
            self.yv = torch.as_tensor(self.y_scaler.transform(y_val), dtype=torch.float32)
            n_outputs = 1
            self.loss_fn = _squared_error
        self.model = MaskedMLP(self.xt.shape[1], n_outputs, network)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
        )
        pruner.start(self.model, self.optimizer, config.epochs)
        self.order_gen = torch.Generator().manual_seed(config.seed)
        self.history: list[EpochRecord] = []
        self.totals = CleanupStats()
        self.best_loss = np.inf
        self.best_epoch = -1
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.stopped = False
        self.seconds = 0.0

    @property
    def done(self) -> bool:
        return self.stopped or len(self.history) >= self.config.epochs

    def _fit_one_epoch(self) -> float:
        model, optimizer, pruner = self.model, self.optimizer, self.pruner
        n, batch = len(self.xt), self.config.batch_size
        model.train()
        perm = torch.randperm(n, generator=self.order_gen)
        loss_sum = 0.0
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(model(self.xt[idx]), self.yt[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            pruner.after_backward(model)
            optimizer.step()
            model.apply_masks()
            pruner.after_step(model)
            loss_sum += float(loss.detach()) * len(idx)
        return loss_sum / n

    def run_epoch(self) -> EpochRecord:
        """Train one epoch, let the pruner appraise, clean up, and track the best checkpoint."""
        t0 = time.perf_counter()
        epoch = len(self.history)
        model = self.model
        train_loss = self._fit_one_epoch()
        val_loss = _evaluate(model, self.xv, self.yv, self.loss_fn)
        pruned = self.pruner.end_epoch(epoch, model, self.optimizer, val_loss)
        cleaned = CleanupStats()
        if pruned:
            cleaned = clean_up(model, self.optimizer)
            self.totals.dead_neurons += cleaned.dead_neurons
            self.totals.folded_neurons += cleaned.folded_neurons
            self.totals.connections_removed += cleaned.connections_removed
            val_loss = _evaluate(model, self.xv, self.yv, self.loss_fn)
        if epoch >= self.pruner.final_epoch - 1:  # masks can no longer change after this epoch
            if val_loss < self.best_loss:
                self.best_loss, self.best_epoch = val_loss, epoch
                self.best_state = copy.deepcopy(model.state_dict())
            elif epoch - self.best_epoch >= self.config.early_stopping:
                self.stopped = True
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            sparsity=model.pruning_rate(),
            sparsity_per_layer=model.pruning_rate_per_layer(),
            pruned=pruned,
            cleaned=cleaned.connections_removed,
            seconds=time.perf_counter() - t0,
        )
        self.history.append(record)
        self.seconds += record.seconds
        return record

    def finish(self) -> TrainResult:
        """Restore the best final-mask checkpoint and package the result."""
        self.model.load_state_dict(self.best_state)
        self.model.eval()
        return TrainResult(
            model=self.model,
            x_scaler=self.x_scaler,
            y_scaler=self.y_scaler,
            history=self.history,
            best_epoch=self.best_epoch,
            train_seconds=self.seconds,
            pruner_config=self.pruner.config(),
            cleanup=self.totals,
        )


def train(
    x_train: FloatArray,
    y_train: FloatArray,
    x_val: FloatArray,
    y_val: FloatArray,
    network: NetworkConfig,
    pruner: Pruner,
    config: TrainConfig,
) -> TrainResult:
    """Fit the network while ``pruner`` shapes it; returns the best final-mask checkpoint.

    Same data, config and seed give the same result (single-threaded, seeded init and order).
    """
    trainer = Trainer(x_train, y_train, x_val, y_val, network, pruner, config)
    bar = tqdm(total=config.epochs, desc=pruner.name, disable=not config.progress, leave=False)
    while not trainer.done:
        record = trainer.run_epoch()
        bar.update()
        bar.set_postfix(val=f"{record.val_loss:.4f}", pruned=f"{record.sparsity:.0%}")
    bar.close()
    return trainer.finish()
