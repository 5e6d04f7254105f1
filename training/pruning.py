"""Pruners behind one small interface, and the baselines connection appraisal is compared with.

A pruner only decides *which* connections go and *when*; the network holds the masks and the
trainer calls the hooks. ``prune_connections`` is the one way a connection is removed, so the
weight, its Adam moments and its mask always go together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from training.network import MaskedLinear, MaskedMLP


@dataclass(frozen=True)
class Schedule:
    """When masks may change, in epochs, derived from the planned training length.

    Warm-up: no pruning for max(3 epochs, 10% of training). Freeze: masks fixed for the last
    15% so the survivors are fine-tuned. Both fractions are knobs of the pruners.
    """

    total_epochs: int
    warmup_epochs: int
    freeze_epoch: int  # first epoch (0-based) whose masks are final

    @classmethod
    def plan(
        cls, total_epochs: int, warmup_fraction: float, min_warmup: int, freeze_fraction: float
    ) -> Schedule:
        warmup = max(min_warmup, math.ceil(warmup_fraction * total_epochs))
        freeze = total_epochs - math.floor(freeze_fraction * total_epochs)
        return cls(total_epochs, min(warmup, freeze), freeze)


@torch.no_grad()
def prune_connections(
    layer: MaskedLinear, drop: torch.Tensor, optimizer: torch.optim.Optimizer | None
) -> int:
    """Remove the connections where ``drop`` is true: mask, weight and optimizer moments.

    Returns how many active connections were removed. No regrowth: a zero mask stays zero.
    """
    drop = drop & layer.mask.bool()
    n = int(drop.sum().item())
    if n == 0:
        return 0
    layer.mask[drop] = 0.0
    layer.weight[drop] = 0.0
    if optimizer is not None:
        state = optimizer.state.get(layer.weight, {})
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"):
            buf = state.get(key)
            if isinstance(buf, torch.Tensor) and buf.shape == drop.shape:
                buf[drop] = 0.0
    return n


@torch.no_grad()
def prune_to_density(
    layer: MaskedLinear,
    score: torch.Tensor,
    sparsity: float,
    optimizer: torch.optim.Optimizer | None,
) -> int:
    """Prune the lowest-scoring active connections until the layer reaches ``sparsity``
    (1.0 empties it: a layer CA removed entirely, as when a run ended at its linear path)."""
    total = layer.mask.numel()
    allowed = layer.n_allowed()  # sparsity is over the connections the family has
    keep = 0 if sparsity >= 1.0 else max(1, allowed - round(sparsity * allowed))
    active = int(layer.mask.sum().item())
    excess = active - keep
    if excess <= 0:
        return 0
    masked_score = score.masked_fill(layer.mask == 0, math.inf).flatten()
    victims = torch.topk(masked_score, min(excess, total), largest=False).indices
    drop = torch.zeros(total, dtype=torch.bool)
    drop[victims] = True
    return prune_connections(layer, drop.view_as(layer.mask), optimizer)


def layer_sparsities(target: float | Sequence[float], n_layers: int) -> list[float]:
    """Per-layer final sparsity: one number for every layer, or one per layer."""
    if isinstance(target, int | float):
        values = [float(target)] * n_layers
    else:
        values = [float(t) for t in target]
        if len(values) != n_layers:
            raise ValueError(f"target sparsity needs {n_layers} values, got {len(values)}")
    for v in values:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"target sparsity must be in [0, 1], got {v}")
    return values


class Pruner:
    """Hooks the trainer calls; each pruner overrides the ones it needs.

    ``end_epoch`` returns the number of connections removed, so the history can show when
    pruning happened. ``final_epoch`` is the first epoch whose masks can no longer change:
    checkpoints are only chosen from there on, so the model kept is the pruned one.
    """

    name: str = "base"
    schedule: Schedule

    def start(self, model: MaskedMLP, optimizer: torch.optim.Optimizer, epochs: int) -> None:
        self.schedule = Schedule(epochs, 0, 0)

    def after_backward(self, model: MaskedMLP) -> None:
        """Called with fresh gradients, before the optimizer step."""

    def after_step(self, model: MaskedMLP) -> None:
        """Called after each optimizer step (masks already re-applied)."""

    def end_epoch(
        self, epoch: int, model: MaskedMLP, optimizer: torch.optim.Optimizer, val_loss: float
    ) -> int:
        return 0

    @property
    def final_epoch(self) -> int:
        return self.schedule.freeze_epoch

    def config(self) -> dict[str, Any]:
        """Every knob, for the metrics file and the model card."""
        return {"method": self.name}


class DensePruner(Pruner):
    """No pruning: the reference every other method is measured against."""

    name = "dense"


@dataclass(frozen=True)
class ScheduleConfig:
    """Shared timing knobs of the gradual and one-shot baselines (same as CA's defaults)."""

    warmup_fraction: float = 0.10  # no pruning during the first 10% of epochs...
    min_warmup: int = 3  # ...and never during the first 3
    freeze_fraction: float = 0.15  # masks frozen for the last 15%: fine-tuning


class GMPPruner(Pruner):
    """Gradual magnitude pruning (Zhu & Gupta 2017), per layer, once per epoch.

    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 from the end of warm-up to the freeze.
    """

    name = "gmp"

    def __init__(
        self,
        target_sparsity: float | Sequence[float],
        initial_sparsity: float = 0.0,
        schedule: ScheduleConfig | None = None,
    ) -> None:
        self.target = target_sparsity
        self.initial = initial_sparsity
        self.timing = schedule or ScheduleConfig()

    def start(self, model: MaskedMLP, optimizer: torch.optim.Optimizer, epochs: int) -> None:
        t = self.timing
        self.schedule = Schedule.plan(epochs, t.warmup_fraction, t.min_warmup, t.freeze_fraction)
        self.finals = layer_sparsities(self.target, len(model.masked_layers()))

    def sparsity_at(self, epoch: int, final: float) -> float:
        """The cubic schedule; reaches ``final`` at the last epoch before the freeze."""
        t0, t_end = self.schedule.warmup_epochs, self.schedule.freeze_epoch - 1
        if epoch < t0:
            return 0.0
        if t_end <= t0 or epoch >= t_end:
            return final
        progress = (epoch - t0) / (t_end - t0)
        return final + (self.initial - final) * (1.0 - progress) ** 3

    def end_epoch(
        self, epoch: int, model: MaskedMLP, optimizer: torch.optim.Optimizer, val_loss: float
    ) -> int:
        if epoch >= self.schedule.freeze_epoch:
            return 0
        return sum(
            prune_to_density(layer, layer.weight.abs(), self.sparsity_at(epoch, final), optimizer)
            for layer, final in zip(model.masked_layers(), self.finals, strict=True)
        )

    def config(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "target_sparsity": self.target,
            "initial_sparsity": self.initial,
            **asdict(self.timing),
        }


class OneShotPruner(Pruner):
    """Prune once, part-way through training, then fine-tune the survivors."""

    def __init__(self, target_sparsity: float | Sequence[float] | None, prune_at: float) -> None:
        if not 0.0 < prune_at < 1.0:
            raise ValueError(f"prune_at must be a fraction of training in (0, 1), got {prune_at}")
        self.target = target_sparsity
        self.prune_at = prune_at

    def start(self, model: MaskedMLP, optimizer: torch.optim.Optimizer, epochs: int) -> None:
        at = min(epochs - 1, max(0, math.floor(self.prune_at * epochs)))
        self.schedule = Schedule(epochs, at, at + 1)

    def end_epoch(
        self, epoch: int, model: MaskedMLP, optimizer: torch.optim.Optimizer, val_loss: float
    ) -> int:
        if epoch != self.schedule.warmup_epochs:
            return 0
        return self.prune_once(model, optimizer)

    def prune_once(self, model: MaskedMLP, optimizer: torch.optim.Optimizer) -> int:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"method": self.name, "target_sparsity": self.target, "prune_at": self.prune_at}


class MagnitudePruner(OneShotPruner):
    """Han et al. (2015): prune |w| below quality * std(W_l) once, then retrain.

    Given a target sparsity, the per-layer threshold is instead the one that reaches it, so the
    comparison with CA is at equal sparsity.
    """

    name = "magnitude"

    def __init__(
        self,
        target_sparsity: float | Sequence[float] | None = None,
        quality: float = 1.0,
        prune_at: float = 0.5,
    ) -> None:
        super().__init__(target_sparsity, prune_at)
        self.quality = quality

    def prune_once(self, model: MaskedMLP, optimizer: torch.optim.Optimizer) -> int:
        layers = model.masked_layers()
        if self.target is None:
            return sum(
                prune_connections(
                    layer, layer.weight.abs() < self.quality * layer.weight.std(), optimizer
                )
                for layer in layers
            )
        finals = layer_sparsities(self.target, len(layers))
        return sum(
            prune_to_density(layer, layer.weight.abs(), s, optimizer)
            for layer, s in zip(layers, finals, strict=True)
        )

    def config(self) -> dict[str, Any]:
        return {**super().config(), "quality": self.quality}


class RandomPruner(OneShotPruner):
    """Random connections removed to the target sparsity: the floor any criterion must beat."""

    name = "random"

    def __init__(
        self, target_sparsity: float | Sequence[float], seed: int = 0, prune_at: float = 0.5
    ) -> None:
        super().__init__(target_sparsity, prune_at)
        self.seed = seed

    def prune_once(self, model: MaskedMLP, optimizer: torch.optim.Optimizer) -> int:
        assert self.target is not None
        layers = model.masked_layers()
        gen = torch.Generator().manual_seed(self.seed)
        return sum(
            prune_to_density(layer, torch.rand(layer.weight.shape, generator=gen), s, optimizer)
            for layer, s in zip(layers, layer_sparsities(self.target, len(layers)), strict=True)
        )

    def config(self) -> dict[str, Any]:
        return {**super().config(), "seed": self.seed}
