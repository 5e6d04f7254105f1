"""Training loop: Adam, a pruner's hooks, early stopping on validation loss, fixed seeds.

The checkpoint kept is the best validation epoch among those whose masks are final, so the
model returned is the pruned one, not a denser snapshot from before the last prune.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from service.features import FloatArray
from training.network import MaskedMLP, NetworkConfig
from training.pruning import Pruner
from training.scaling import Standardizer
from training.shrink import CleanupStats, clean_up


@dataclass(frozen=True)
class TrainConfig:
    """Optimization knobs; choose them on the validation split, never on test."""

    # Defaults chosen on the debutanizer's validation split (docs/tuning.md), never on test.
    epochs: int = 100  # planned length; the pruning schedule is laid out over it
    batch_size: int = 32
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.03  # L2 penalty added to the gradient (Adam's weight_decay)
    early_stopping: int = 30  # stop after this many epochs without improvement (masks final)
    seed: int = 0
    threads: int = 1  # tiny networks run faster, and reproducibly, on one thread
    progress: bool = True  # show a progress bar


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

    def history_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.history]


def _mse(model: MaskedMLP, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(torch.mean((model(x) - y) ** 2))


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
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    x_scaler = Standardizer().fit(x_train)
    y_scaler = Standardizer().fit(y_train)
    xt = torch.as_tensor(x_scaler.transform(x_train), dtype=torch.float32)
    yt = torch.as_tensor(y_scaler.transform(y_train), dtype=torch.float32)
    xv = torch.as_tensor(x_scaler.transform(x_val), dtype=torch.float32)
    yv = torch.as_tensor(y_scaler.transform(y_val), dtype=torch.float32)

    model = MaskedMLP(xt.shape[1], 1, network)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
    )
    pruner.start(model, optimizer, config.epochs)
    order_gen = torch.Generator().manual_seed(config.seed)
    n = len(xt)
    history: list[EpochRecord] = []
    totals = CleanupStats()
    best_loss, best_epoch, best_state = np.inf, -1, copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=pruner.name, disable=not config.progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=order_gen)
        loss_sum = 0.0
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = torch.mean((model(xt[idx]) - yt[idx]) ** 2)
            loss.backward()  # type: ignore[no-untyped-call]
            pruner.after_backward(model)
            optimizer.step()
            model.apply_masks()
            pruner.after_step(model)
            loss_sum += float(loss.detach()) * len(idx)
        val_loss = _mse(model, xv, yv)
        pruned = pruner.end_epoch(epoch, model, optimizer, val_loss)
        cleaned = CleanupStats()
        if pruned:
            cleaned = clean_up(model, optimizer)
            totals.dead_neurons += cleaned.dead_neurons
            totals.folded_neurons += cleaned.folded_neurons
            totals.connections_removed += cleaned.connections_removed
            val_loss = _mse(model, xv, yv)
        history.append(
            EpochRecord(
                epoch=epoch,
                train_loss=loss_sum / n,
                val_loss=val_loss,
                sparsity=model.pruning_rate(),
                sparsity_per_layer=model.pruning_rate_per_layer(),
                pruned=pruned,
                cleaned=cleaned.connections_removed,
                seconds=time.perf_counter() - t0,
            )
        )
        bar.set_postfix(val=f"{val_loss:.4f}", pruned=f"{model.pruning_rate():.0%}")
        if epoch >= pruner.final_epoch - 1:  # masks can no longer change after this epoch
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= config.early_stopping:
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        x_scaler=x_scaler,
        y_scaler=y_scaler,
        history=history,
        best_epoch=best_epoch,
        train_seconds=time.perf_counter() - started,
        pruner_config=pruner.config(),
        cleanup=totals,
    )
