"""The masked multilayer perceptron that pruning shapes.

Each layer keeps a 0/1 mask beside its weight. The forward pass multiplies them, so a pruned
connection carries no signal and gets no gradient; the mask is also re-applied to the weight
after every optimizer step so that pruned weights are exactly zero when exported.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.config import NetworkConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}


@dataclass
class Activity:
    """sum_b |a_j(b)| over the latest training batch and that batch's size.

    A plain holder mutated in place: assigning tensors to module attributes every step goes
    through ``nn.Module.__setattr__``, which costs more than the statistic itself.
    """

    total: torch.Tensor | None = None
    batch: int = 0


class MaskedLinear(nn.Linear):
    """A linear layer whose connections can be switched off for good.

    ``activity`` holds sum_b |a_j(b)| of the latest training batch and its size, recorded
    while ``track_activity`` is on: the pruning criterion reads it instead of running an extra
    forward pass. The sum is one kernel; the division is folded into the smoothing.
    """

    mask: torch.Tensor
    allowed: torch.Tensor  # the connections the network family has at all (1 = exists)

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("mask", torch.ones_like(self.weight))
        self.register_buffer("allowed", torch.ones_like(self.weight))
        self.activity = Activity()
        self.track_activity = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_activity and self.training:
            self.activity.total = x.detach().abs().sum(dim=0)
            self.activity.batch = x.shape[0]
        return F.linear(x, self.weight * self.mask, self.bias)

    @torch.no_grad()
    def apply_mask(self) -> None:
        """Zero the weights of pruned connections (after every optimizer step)."""
        self.weight.mul_(self.mask)

    @torch.no_grad()
    def restrict(self, allowed: torch.Tensor) -> None:
        """Remove connections the network family does not have (not pruning: they never
        count as connections, so the pruning rate is measured over ``allowed`` only)."""
        self.allowed.copy_(allowed)
        self.mask.mul_(allowed)
        self.apply_mask()

    def n_allowed(self) -> int:
        return int(self.allowed.sum().item())


def additive_blocks(n_inputs: int, widths: Sequence[int]) -> list[torch.Tensor]:
    """Block masks of an additive chain: hidden layer l holds ``n_inputs`` groups of
    ``widths[l]`` neurons, group i reading only input i (first layer) or group i of the
    layer before; the output layer reads every group. One subnetwork per input, summed.

    >>> [m.shape for m in additive_blocks(2, (3, 2))]
    [torch.Size([6, 2]), torch.Size([4, 6])]
    """
    blocks = []
    fan = [1, *widths]
    for w_in, w_out in itertools.pairwise(fan):
        ones = torch.ones(w_out, w_in)
        blocks.append(torch.block_diag(*([ones] * n_inputs)))  # type: ignore[no-untyped-call]
    return blocks


class MaskedMLP(nn.Module):
    """Input -> hidden layers (masked linear + activation) -> linear output, plus an optional
    linear path from the inputs straight to the output: ``out = mlp(x) + linear(x)``.

    The linear path makes the family contain the linear model, so pruning can end at it (or at
    a linear model plus a few neurons) when the data supports nothing more. Both paths are
    masked and appraised alike; an input is deselected only once neither path uses it.
    """

    def __init__(self, n_inputs: int, n_outputs: int, config: NetworkConfig) -> None:
        super().__init__()
        if config.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, not {config.activation!r}"
            )
        if not config.hidden or any(w < 1 for w in config.hidden):
            raise ValueError(f"hidden widths must be positive integers, got {list(config.hidden)}")
        self.config = config
        groups = n_inputs if config.additive else 1
        self.hidden_widths = [groups * w for w in config.hidden]
        sizes = [n_inputs, *self.hidden_widths, n_outputs]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in itertools.pairwise(sizes))
        if config.additive:
            for layer, allowed in zip(
                self.layers, additive_blocks(n_inputs, config.hidden), strict=False
            ):
                assert isinstance(layer, MaskedLinear)
                layer.restrict(allowed)
        self.linear = MaskedLinear(n_inputs, n_outputs) if config.linear_path else None
        self.act = ACTIVATIONS[config.activation]()
        # Cached: the hot loop asks for them every step, and module attribute lookup is slow.
        self._chain = [layer for layer in self.layers if isinstance(layer, MaskedLinear)]
        self._masked = [*self._chain, *([self.linear] if self.linear is not None else [])]

    def forward(self, x: torch.Tensor, chain_noise: torch.Tensor | None = None) -> torch.Tensor:
        """``chain_noise`` (training only) jitters what the hidden chain sees, not the linear
        path: noise on a linear model's inputs only shrinks its coefficients (errors in
        variables), while on the chain it asks for a smooth correction."""
        *hidden, last = self._chain
        h = x if chain_noise is None else x + chain_noise
        for layer in hidden:
            h = self.act(layer(h))
        out: torch.Tensor = last(h)
        if self.linear is not None:
            out = out + self.linear(x)
        return out

    def masked_layers(self) -> list[MaskedLinear]:
        """Every prunable layer: the hidden chain in order, then the linear path if any."""
        return self._masked

    def chain_layers(self) -> list[MaskedLinear]:
        """The layers of the hidden chain only (input -> hidden ... -> output)."""
        return self._chain

    @torch.no_grad()
    def start_at_linear(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Begin training at a given linear model: the linear path takes ``weight`` and
        ``bias``, the chain's output layer starts at zero, so ``out(x) == linear(x)``.

        With checkpoints chosen on validation, a run that starts at the ridge solution can
        only keep something at least as good on validation as ridge itself.
        """
        if self.linear is None:
            raise ValueError("start_at_linear needs the linear path (linear_path=True)")
        self.linear.weight.copy_(weight.reshape(self.linear.weight.shape))
        self.linear.bias.copy_(bias.reshape(self.linear.bias.shape))
        last = self._chain[-1]
        last.weight.zero_()
        last.bias.zero_()

    def inputs_in_use(self) -> torch.Tensor:
        """Boolean per input: some active connection of either path still reads it."""
        used = self._chain[0].mask.any(dim=0)
        if self.linear is not None:
            used = used | self.linear.mask.any(dim=0)
        return used

    @torch.no_grad()
    def apply_masks(self) -> None:
        for layer in self.masked_layers():
            layer.apply_mask()

    def count_weights(self) -> tuple[int, int]:
        """(active, total) connections over the weight matrices; biases are not counted."""
        active = sum(int(layer.mask.sum().item()) for layer in self.masked_layers())
        total = sum(layer.n_allowed() for layer in self.masked_layers())
        return active, total

    def pruning_rate(self) -> float:
        """1 - active / all weights, the paper's measure."""
        active, total = self.count_weights()
        return 1.0 - active / total

    def pruning_rate_per_layer(self) -> list[float]:
        return [
            1.0 - float(layer.mask.sum().item()) / layer.n_allowed()
            for layer in self.masked_layers()
        ]

    def count_parameters(self) -> int:
        """Active weights plus every bias: what a sparse deployment stores."""
        active, _ = self.count_weights()
        return active + sum(layer.bias.numel() for layer in self.masked_layers())

    def count_unpruned_parameters(self) -> int:
        """Every connection of the family plus every bias: the network before pruning."""
        _, total = self.count_weights()
        return total + sum(layer.bias.numel() for layer in self.masked_layers())


def count_dense_parameters(sizes: Sequence[int]) -> int:
    """Parameters of a dense MLP with the given layer sizes (inputs, hidden..., outputs)."""
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def match_widths(
    n_inputs: int, hidden: Sequence[int], n_outputs: int, target_params: int
) -> tuple[int, ...]:
    """Hidden widths in the proportions of ``hidden`` whose dense MLP has about
    ``target_params`` parameters (weights and biases).

    This builds the "small dense" baseline: a network born as small as a pruned one ended up,
    which tells whether pruning found something that plain down-sizing does not. The scale is
    solved on the continuous parameter count (which grows monotonically with it), then every
    floor/ceiling rounding of the widths is tried and the closest count wins.

    >>> match_widths(10, (64, 64), 1, 1939)
    (38, 38)
    """
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"hidden widths must be positive integers, got {list(hidden)}")
    if target_params < 1:
        raise ValueError(f"target parameter count must be positive, got {target_params}")

    def continuous(scale: float) -> float:
        sizes = [float(n_inputs), *(scale * h for h in hidden), float(n_outputs)]
        return sum(a * b + b for a, b in itertools.pairwise(sizes))

    lo, hi = 0.0, 1.0
    while continuous(hi) < target_params:
        hi *= 2.0
    for _ in range(60):  # bisection to well below one neuron's worth of parameters
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if continuous(mid) < target_params else (lo, mid)
    options = [sorted({max(1, math.floor(hi * h)), max(1, math.ceil(hi * h))}) for h in hidden]
    return min(
        (tuple(w) for w in itertools.product(*options)),
        key=lambda w: abs(count_dense_parameters([n_inputs, *w, n_outputs]) - target_params),
    )
