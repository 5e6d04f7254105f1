"""Training loop: Adam, a pruner's hooks, early stopping on validation loss, fixed seeds.

The checkpoint kept is the best validation epoch among those whose masks are final, so the
model returned is the pruned one, not a denser snapshot from before the last prune.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from service.contracts.arrays import FloatArray
from training.config import NetworkConfig, TrainConfig
from training.evaluation import fit_ridge
from training.network import MaskedMLP
from training.pruning import Pruner, prune_connections
from training.scaling import Standardizer
from training.shrink import CleanupStats, clean_up
from training.target import TargetTransform


@dataclass
class EpochRecord:
    """One line of the training history."""

    epoch: int
    train_loss: float
    val_loss: float  # the training loss on validation (standardized, transformed target)
    val_rmse: float | None  # validation RMSE in the target's unit (regression only)
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
    transform: TargetTransform = field(default_factory=TargetTransform)
    # The run started at the ridge solution and nothing it reached once its masks were final
    # was better on validation: it ended at that linear model (hidden chain removed).
    ended_linear: bool = False
    start_val_rmse: float | None = None  # validation RMSE of the starting linear model
    seed: int = 0
    ridge_alpha: float | None = None  # alpha of the ridge start (by validation)
    planned_epochs: int = 0  # the length the pruning schedule was laid out over
    # Refitted on train + validation with the choices made on validation (their validation
    # figures are then in-sample); ``selected`` is the run those choices came from.
    refit: bool = False
    selected: TrainResult | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def predict_transformed(self, x: FloatArray) -> FloatArray:
        """Estimate in the transformed target's space (before the inverse transform)."""
        z = torch.as_tensor(self.x_scaler.transform(x), dtype=torch.float32)
        self.model.eval()
        with torch.no_grad():
            out = self.model(z).double().numpy()
        return self.y_scaler.inverse_transform(out).ravel()

    def predict(self, x: FloatArray) -> FloatArray:
        """Estimate in the target's unit for raw (unscaled) feature rows."""
        return self.transform.inverse(self.predict_transformed(x))

    def history_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.history]


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.mean((out - y) ** 2)


def _evaluate(model: MaskedMLP, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(x), y))


class Trainer:
    """The training loop one epoch at a time.

    ``train`` runs it to the end; a benchmark can interleave two trainers epoch by epoch so
    both see the same machine state when their costs are compared. The inputs' scaling and
    the target's encoding and loss are two hooks (``_fit_input_scaler``,
    ``_prepare_targets``), so another task (the MNIST benchmark's classification, in
    ``bench/``) reuses the loop without knobs in the product's config.
    """

    # Judged by RMSE in the target's unit, started at ridge; False for a task with no unit.
    regression: ClassVar[bool] = True

    def __init__(
        self,
        x_train: FloatArray,
        y_train: FloatArray,
        x_val: FloatArray,
        y_val: FloatArray,
        network: NetworkConfig,
        pruner: Pruner,
        config: TrainConfig,
        transform: TargetTransform | None = None,
        ridge_alpha: float | None = None,
    ) -> None:
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.config, self.pruner = config, pruner
        self.epochs = config.planned_epochs()
        self.most_epochs = config.most_epochs(len(x_train))
        self.transform = transform or TargetTransform()
        self.x_scaler = self._fit_input_scaler(x_train)
        self.xt = torch.as_tensor(self.x_scaler.transform(x_train), dtype=torch.float32)
        self.xv = torch.as_tensor(self.x_scaler.transform(x_val), dtype=torch.float32)
        self.y_val = np.asarray(y_val, dtype=np.float64).ravel()  # engineering units
        self.loss_fn: LossFn = _squared_error
        n_outputs = self._prepare_targets(y_train, y_val)
        self.model = MaskedMLP(self.xt.shape[1], n_outputs, network)
        self.start_val_rmse: float | None = None
        self.ridge_alpha: float | None = None
        if self.model.linear is not None and config.start_at_linear and self.regression:
            self._start_at_ridge(ridge_alpha)
            self.start_state = copy.deepcopy(self.model.state_dict())
            self.start_val_rmse = self._val_rmse()
        groups: list[dict[str, Any]] = [
            {
                "params": [p for layer in self.model.chain_layers() for p in layer.parameters()],
                "weight_decay": config.weight_decay,
            }
        ]
        if self.model.linear is not None:
            groups.append(
                {
                    "params": list(self.model.linear.parameters()),
                    "weight_decay": config.linear_weight_decay,
                }
            )
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, foreach=True)
        pruner.start(self.model, self.optimizer, self.epochs)
        self.order_gen = torch.Generator().manual_seed(config.seed)
        self.noise_gen = torch.Generator().manual_seed(config.seed + 7919)
        self.history: list[EpochRecord] = []
        self.totals = CleanupStats()
        self.best_loss = np.inf
        self.best_epoch = -1
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.stopped = False
        self.seconds = 0.0

    def _fit_input_scaler(self, x_train: FloatArray) -> Standardizer:
        """Each input standardized on its own: sensors come in different units."""
        return Standardizer().fit(x_train)

    def _prepare_targets(self, y_train: FloatArray, y_val: FloatArray) -> int:
        """Set ``y_scaler``, ``yt``, ``yv`` and ``loss_fn``; return the number of outputs.

        Regression: one output, mean squared error on the standardized (transformed) target.
        """
        t_train = self.transform.forward(y_train)
        self.y_scaler = Standardizer().fit(t_train)
        self.yt = torch.as_tensor(self.y_scaler.transform(t_train), dtype=torch.float32)
        self.yv = torch.as_tensor(
            self.y_scaler.transform(self.transform.forward(y_val)), dtype=torch.float32
        )
        self.loss_fn = _squared_error
        return 1

    def _start_at_ridge(self, alpha: float | None) -> None:
        """Linear path at the ridge solution (alpha by validation unless given, in the
        standardized and transformed space the network is fitted in), the hidden chain's
        output at zero."""
        x_train, y_train = self.xt.double().numpy(), self.yt.double().numpy().ravel()
        x_val = self.xv.double().numpy()
        alphas = {} if alpha is None else {"alphas": (alpha,)}
        ridge = fit_ridge(x_train, y_train, x_val, self.y_val, inverse=self._to_unit, **alphas)
        weight = ridge.coef_ / ridge.scale_
        bias = ridge.intercept_ - float(weight @ ridge.mean_)
        self.model.start_at_linear(
            torch.as_tensor(weight, dtype=torch.float32), torch.tensor([bias], dtype=torch.float32)
        )
        self.ridge_alpha = ridge.alpha

    @property
    def done(self) -> bool:
        return self.stopped or len(self.history) >= self.most_epochs

    def _to_unit(self, z: FloatArray) -> FloatArray:
        """Network output (standardized, transformed) -> the target's unit."""
        return self.transform.inverse(self.y_scaler.inverse_transform(z).ravel())

    def _val_rmse(self) -> float | None:
        """Validation RMSE in the target's unit: what checkpoints are chosen on."""
        if not self.regression:
            return None
        self.model.eval()
        with torch.no_grad():
            z = self.model(self.xv).double().numpy()
        return float(np.sqrt(np.mean((self._to_unit(z) - self.y_val) ** 2)))

    def _fit_one_epoch(self) -> float:
        model, optimizer, pruner = self.model, self.optimizer, self.pruner
        n, batch = len(self.xt), self.config.batch_size
        model.train()
        perm = torch.randperm(n, generator=self.order_gen)
        loss_sum = 0.0
        noise = self.config.input_noise
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            xb = self.xt[idx]
            jitter = None
            if noise > 0:  # in standardized units, on the hidden chain's inputs only
                jitter = noise * torch.randn(xb.shape, generator=self.noise_gen)
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(model(xb, jitter), self.yt[idx])
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
        val_rmse = self._val_rmse()
        # Regression runs are judged in the target's unit (what the plant sees); with no
        # target transform this ranks epochs exactly as the validation loss does.
        judged = val_loss if val_rmse is None else val_rmse
        pruned = self.pruner.end_epoch(epoch, model, self.optimizer, judged)
        cleaned = CleanupStats()
        if pruned:
            cleaned = clean_up(model, self.optimizer)
            self.totals.dead_neurons += cleaned.dead_neurons
            self.totals.folded_neurons += cleaned.folded_neurons
            self.totals.connections_removed += cleaned.connections_removed
            val_loss = _evaluate(model, self.xv, self.yv, self.loss_fn)
            val_rmse = self._val_rmse()
            judged = val_loss if val_rmse is None else val_rmse
        if epoch >= self.pruner.final_epoch - 1:  # masks can no longer change after this epoch
            if judged < self.best_loss:
                self.best_loss, self.best_epoch = judged, epoch
                self.best_state = copy.deepcopy(model.state_dict())
            elif epoch - self.best_epoch >= self.config.early_stopping:
                self.stopped = True
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_rmse=val_rmse,
            sparsity=model.pruning_rate(),
            sparsity_per_layer=model.pruning_rate_per_layer(),
            pruned=pruned,
            cleaned=cleaned.connections_removed,
            seconds=time.perf_counter() - t0,
        )
        self.history.append(record)
        self.seconds += record.seconds
        return record

    def finish(self, end_linear: bool | None = None) -> TrainResult:
        """Restore the best final-mask checkpoint and package the result.

        A run that started at the ridge solution keeps it if nothing reached later is better
        on validation: the chain is then removed (a dense baseline keeps its zeroed chain,
        so that it stays unpruned) and the model is that linear one. A refit (``end_linear``
        given) has no validation of its own: it ends linear as told, else at its last epoch.
        """
        if end_linear is None:
            ended_linear = (
                self.start_val_rmse is not None and not self.best_loss < self.start_val_rmse
            )
        else:
            ended_linear = end_linear
            self.best_epoch = len(self.history) - 1
            self.best_state = copy.deepcopy(self.model.state_dict())
        if ended_linear:
            self.model.load_state_dict(self.start_state)
            if self.pruner.name != "dense":
                last = self.model.chain_layers()[-1]
                prune_connections(last, last.mask.bool(), None)
                cleaned = clean_up(self.model)
                self.totals.dead_neurons += cleaned.dead_neurons
                self.totals.connections_removed += cleaned.connections_removed
        else:
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
            transform=self.transform,
            ended_linear=ended_linear,
            start_val_rmse=self.start_val_rmse,
            seed=self.config.seed,
            ridge_alpha=self.ridge_alpha,
            planned_epochs=self.epochs,
        )


def train(
    x_train: FloatArray,
    y_train: FloatArray,
    x_val: FloatArray,
    y_val: FloatArray,
    network: NetworkConfig,
    pruner: Pruner,
    config: TrainConfig,
    transform: TargetTransform | None = None,
    *,
    unit: str = "",
    desc: str | None = None,
    trainer_class: type[Trainer] = Trainer,
) -> TrainResult:
    """Fit the network while ``pruner`` shapes it; returns the best final-mask checkpoint.

    Same data, config and seed give the same result (single-threaded, seeded init and order).
    The progress bar shows the validation RMSE in the target's ``unit``, as the report does.
    ``trainer_class`` swaps the task (the MNIST benchmark passes its classifier's trainer).
    """
    trainer = trainer_class(x_train, y_train, x_val, y_val, network, pruner, config, transform)
    bar = tqdm(  # the plan; past it, what is left of the step budget
        total=trainer.epochs,
        desc=desc or pruner.name,
        disable=not config.progress,
        leave=False,
    )
    while not trainer.done:
        record = trainer.run_epoch()
        if len(trainer.history) > trainer.epochs and bar.total != trainer.most_epochs:
            bar.total = trainer.most_epochs  # still improving: training on
        bar.update()
        if record.val_rmse is None:
            bar.set_postfix(val_loss=f"{record.val_loss:.4f}", pruned=f"{record.sparsity:.0%}")
        else:
            shown = f"{record.val_rmse:.4g} {unit}".strip()
            bar.set_postfix_str(f"val RMSE {shown}, pruned {record.sparsity:.0%}")
    bar.close()
    return trainer.finish()
