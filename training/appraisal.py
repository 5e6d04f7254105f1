"""Synaptic pruning by connection appraisal (CA), as defined in
``shared/reference/connection_appraisal.md``.

Each step, a forward hook's record of the layer input gives every connection's contribution
``c_ij = |w_ij| * mean_b |a_j(b)|``, smoothed by an exponential average. At each appraisal a
connection is judged *relative to its layer* (``r = c / mean over active connections``), and
only connections that stay below ``tau`` consistently are removed. Sparsity is an outcome of
``tau``, never a preset target.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict
from typing import Any

import torch

from training.config import CAConfig
from training.network import MaskedLinear, MaskedMLP
from training.pruning import Pruner, Schedule, prune_connections


class CAPruner(Pruner):
    """Connection appraisal. Learned state ends in ``_``: ``scores_``, ``counts_``, ``leaky_``."""

    name = "ca"

    def __init__(self, config: CAConfig | None = None, stop_at: int | None = None) -> None:
        """``stop_at``: the epoch after which appraisal stops whatever validation says (a
        refit replays where the validation-rise guard of the selecting run stopped)."""
        self.cfg = config or CAConfig()
        self.stop_at = stop_at
        self.scores_: list[torch.Tensor] = []
        self.counts_: list[torch.Tensor] = []
        self.history_: list[list[torch.Tensor]] = []
        self.leaky_: list[torch.Tensor] = []
        self.appraisals_ = 0
        self.stopped_at_: int | None = None
        self._val_losses: list[float] = []

    def start(self, model: MaskedMLP, optimizer: torch.optim.Optimizer, epochs: int) -> None:
        c = self.cfg
        self.schedule = Schedule.plan(epochs, c.warmup_fraction, c.min_warmup, c.freeze_fraction)
        layers = model.masked_layers()
        self.scores_ = [torch.zeros_like(layer.weight) for layer in layers]
        self.counts_ = [torch.zeros_like(layer.weight, dtype=torch.int32) for layer in layers]
        self.history_ = [[] for _ in layers]
        self.leaky_ = [torch.zeros_like(layer.weight) for layer in layers]
        self.stopped_at_ = None
        self._val_losses = []
        for layer in layers:
            layer.track_activity = c.criterion == "activity"

    @torch.no_grad()
    def _smooth(self, score: torch.Tensor, contribution: torch.Tensor) -> None:
        score.mul_(self.cfg.beta).add_(contribution, alpha=1.0 - self.cfg.beta)

    @torch.no_grad()
    def after_backward(self, model: MaskedMLP) -> None:
        if self.cfg.criterion != "taylor":
            return
        for layer, score in zip(model.masked_layers(), self.scores_, strict=True):
            if layer.weight.grad is not None:
                self._smooth(score, (layer.weight * layer.weight.grad).abs())

    @torch.no_grad()
    def after_step(self, model: MaskedMLP) -> None:
        # Runs every optimizer step, so it is written as three fused list operations over all
        # layers instead of a Python loop of small ones: this keeps CA's overhead low.
        crit = self.cfg.criterion
        if crit == "taylor":
            return
        layers = model.masked_layers()
        magnitudes = torch._foreach_abs([layer.weight for layer in layers])
        torch._foreach_mul_(self.scores_, self.cfg.beta)
        if crit == "magnitude":
            torch._foreach_add_(self.scores_, magnitudes, alpha=1.0 - self.cfg.beta)
            return
        ready = [layer.activity.total for layer in layers if layer.activity.total is not None]
        if len(ready) != len(layers):
            return
        n = layers[0].activity.batch
        torch._foreach_addcmul_(self.scores_, magnitudes, ready, value=(1.0 - self.cfg.beta) / n)

    def relative_importance(self, layer_index: int, layer: MaskedLinear) -> torch.Tensor:
        """r = c_hat / mean(c_hat over the layer's active connections); 0 where pruned."""
        active = layer.mask.bool()
        score = self.scores_[layer_index]
        mean = score[active].mean() if bool(active.any()) else score.new_tensor(0.0)
        if float(mean) <= 0.0:
            return torch.zeros_like(score)
        return torch.where(active, score / mean, torch.zeros_like(score))

    def _candidates(self, i: int, r: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        below = (r < c.tau) & active
        if c.consistency == "consecutive":
            self.counts_[i] = torch.where(below, self.counts_[i] + 1, 0).to(torch.int32)
            return self.counts_[i] >= c.patience
        if c.consistency == "window":
            hist = self.history_[i]
            hist.append(below)
            del hist[: max(0, len(hist) - c.window)]
            return torch.stack(hist).sum(0) >= math.ceil(c.window_fraction * c.window)
        self.leaky_[i] = c.leak * self.leaky_[i] + (r - c.tau)
        return self.leaky_[i] < -c.kappa

    def _should_appraise(self, epoch: int) -> bool:
        s = self.schedule
        if self.stopped_at_ is not None or not s.warmup_epochs <= epoch < s.freeze_epoch:
            return False
        return (epoch - s.warmup_epochs) % self.cfg.appraise_every == 0

    def _note_validation(self, epoch: int, val_loss: float) -> None:
        """Collapse guard: stop appraising once validation loss keeps rising."""
        if self.stop_at is not None:
            if epoch >= self.stop_at:
                self.stopped_at_ = epoch
            return
        limit = self.cfg.stop_after_val_rises
        self._val_losses.append(val_loss)
        recent = self._val_losses[-(limit + 1) :]
        if limit and len(recent) == limit + 1 and all(b > a for a, b in itertools.pairwise(recent)):
            self.stopped_at_ = epoch

    @torch.no_grad()
    def end_epoch(
        self, epoch: int, model: MaskedMLP, optimizer: torch.optim.Optimizer, val_loss: float
    ) -> int:
        if not self._should_appraise(epoch):
            return 0
        self.appraisals_ += 1
        c = self.cfg
        layers = model.masked_layers()
        # The output neuron keeps its strongest input on the layer that feeds it directly: the
        # linear path when there is one (the chain may then vanish and leave a linear model),
        # else the chain's last layer.
        guarded = layers[-1]
        removed = 0
        for i, layer in enumerate(layers):
            active = layer.mask.bool()
            r = self.relative_importance(i, layer)
            candidates = self._candidates(i, r, active) & active
            if c.keep_strongest_input and layer is guarded:
                strongest = r.masked_fill(~active, -1.0).argmax(dim=1)
                candidates[torch.arange(r.shape[0]), strongest] = False
            n_active = int(active.sum())
            floor = math.ceil(c.min_density * layer.n_allowed())
            budget = min(math.floor(c.max_prune_fraction * n_active), n_active - floor)
            n_cand = int(candidates.sum())
            if n_cand == 0 or budget <= 0:
                continue
            if n_cand > budget:
                ranked = r.masked_fill(~candidates, math.inf).flatten()
                keep_idx = torch.topk(ranked, budget, largest=False).indices
                candidates = torch.zeros_like(candidates).flatten()
                candidates[keep_idx] = True
                candidates = candidates.view_as(layer.mask)
            removed += prune_connections(layer, candidates, optimizer)
        self._note_validation(epoch, val_loss)
        return removed

    @property
    def final_epoch(self) -> int:
        if self.stopped_at_ is not None:
            return min(self.stopped_at_ + 1, self.schedule.freeze_epoch)
        return self.schedule.freeze_epoch

    def config(self) -> dict[str, Any]:
        return {"method": self.name, **asdict(self.cfg)}
