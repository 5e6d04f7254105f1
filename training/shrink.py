"""Structural clean-up: the "structure optimization" that follows pruning.

Pruning leaves neurons that no longer matter. ``clean_up`` removes them in mask space while
training runs (function unchanged); ``shrink`` then builds physically smaller dense layers for
export, and says which sensors the soft sensor no longer needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from service.contracts.arrays import FloatArray
from training.network import MaskedMLP
from training.pruning import prune_connections


@dataclass
class CleanupStats:
    """What one clean-up pass removed (connections are counted in ``dead`` and ``folded``)."""

    dead_neurons: int = 0  # hidden neurons with no active outgoing connection
    folded_neurons: int = 0  # hidden neurons with no active incoming connection (constant)
    connections_removed: int = 0


@torch.no_grad()
def clean_up(model: MaskedMLP, optimizer: torch.optim.Optimizer | None = None) -> CleanupStats:
    """Remove dead and constant hidden neurons until none is left; the function is unchanged.

    A neuron whose outgoing connections are all pruned is dead: its incoming ones go too. A
    neuron whose incoming connections are all pruned outputs phi(b_i) whatever the input:
    that constant is folded into the next layer's bias and its outgoing connections go.
    """
    stats = CleanupStats()
    layers = model.chain_layers()  # the linear path has no hidden neurons to clean up
    changed = True
    while changed:
        changed = False
        for into, out_of in itertools.pairwise(layers):
            has_in = into.mask.any(dim=1)
            has_out = out_of.mask.any(dim=0)
            dead = has_in & ~has_out
            if bool(dead.any()):
                drop = dead[:, None].expand_as(into.mask).clone()
                stats.connections_removed += prune_connections(into, drop, optimizer)
                stats.dead_neurons += int(dead.sum())
                changed = True
            constant = ~has_in & has_out
            if bool(constant.any()):
                value = model.act(into.bias[constant])
                out_of.bias.add_((out_of.weight * out_of.mask)[:, constant] @ value)
                drop = constant[None, :].expand_as(out_of.mask).clone()
                stats.connections_removed += prune_connections(out_of, drop, optimizer)
                stats.folded_neurons += int(constant.sum())
                changed = True
    return stats


@dataclass
class ShrunkNetwork:
    """Dense weights of the surviving structure, in float64, ready for export.

    ``weights[l]`` is (out x in) as in torch, for the hidden chain; ``linear`` is the linear
    path's (out x in) weight and ``linear_bias`` its bias, both over the kept inputs.
    ``inputs_kept`` indexes the original features. A chain whose hidden neurons are all gone
    leaves only its output bias: the model is then linear.
    """

    weights: list[FloatArray]
    biases: list[FloatArray]
    activation: str
    inputs_kept: list[int]
    hidden_kept: list[list[int]] = field(default_factory=list)
    linear: FloatArray | None = None
    linear_bias: FloatArray | None = None

    @property
    def has_chain(self) -> bool:
        """False once pruning removed every hidden neuron (a linear model remains)."""
        return all(len(k) > 0 for k in self.hidden_kept)

    def predict(self, x: FloatArray) -> FloatArray:
        """Forward pass in numpy on the full feature matrix (unused columns are ignored)."""
        z = np.asarray(x, dtype=np.float64)[:, self.inputs_kept]
        act = _NUMPY_ACTIVATIONS[self.activation]
        h = z
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w.T + b
            if i < len(self.weights) - 1:
                h = act(h)
        if self.linear is not None and self.linear_bias is not None:
            h = h + z @ self.linear.T + self.linear_bias
        return h

    def count_parameters(self) -> tuple[int, int]:
        """(nonzero weights + biases, all entries of the dense shrunk matrices + biases)."""
        pairs = list(zip(self.weights, self.biases, strict=True))
        if self.linear is not None and self.linear_bias is not None:
            pairs.append((self.linear, self.linear_bias))
        nonzero = sum(int(np.count_nonzero(w)) + b.size for w, b in pairs)
        dense = sum(w.size + b.size for w, b in pairs)
        return nonzero, dense


def _sigmoid(h: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-h)))


def _gelu(h: FloatArray) -> FloatArray:
    from math import erf, sqrt

    return np.asarray(0.5 * h * (1.0 + np.vectorize(erf)(h / sqrt(2.0))))


_NUMPY_ACTIVATIONS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "tanh": np.tanh,
    "relu": lambda h: np.maximum(h, 0.0),
    "sigmoid": _sigmoid,
    "gelu": _gelu,
    "elu": lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0.0))),
}


@torch.no_grad()
def shrink(model: MaskedMLP) -> ShrunkNetwork:
    """Clean up, then cut every removed neuron and unused input out of the matrices."""
    clean_up(model)
    layers = model.chain_layers()
    keep_in = torch.nonzero(model.inputs_in_use()).flatten().tolist()
    kept_hidden = [torch.nonzero(layer.mask.any(dim=0)).flatten().tolist() for layer in layers[1:]]
    rows: list[list[int]] = [*kept_hidden, list(range(layers[-1].out_features))]
    cols: list[list[int]] = [keep_in, *kept_hidden]
    weights, biases = [], []
    for layer, r, c in zip(layers, rows, cols, strict=True):
        weights.append(_dense_block(layer, r, c))
        biases.append(layer.bias.double().numpy()[r])
    linear = linear_bias = None
    if model.linear is not None:
        linear = _dense_block(model.linear, list(range(model.linear.out_features)), keep_in)
        linear_bias = model.linear.bias.double().numpy().copy()
    return ShrunkNetwork(
        weights, biases, model.config.activation, keep_in, kept_hidden, linear, linear_bias
    )


def _dense_block(layer: torch.nn.Linear, rows: list[int], cols: list[int]) -> FloatArray:
    w = (layer.weight * getattr(layer, "mask", 1.0)).double().numpy()
    return w[np.ix_(rows, cols)] if rows and cols else np.zeros((len(rows), len(cols)))


def dense_architecture(model: MaskedMLP) -> ShrunkNetwork:
    """The unpruned shape (every neuron and input) with the trained weights, for sizing."""
    layers = model.chain_layers()
    weights = [(layer.weight * layer.mask).detach().double().numpy() for layer in layers]
    biases = [layer.bias.detach().double().numpy() for layer in layers]
    n_in = layers[0].in_features
    hidden = [list(range(layer.out_features)) for layer in layers[:-1]]
    linear = linear_bias = None
    if model.linear is not None:
        linear = (model.linear.weight * model.linear.mask).detach().double().numpy()
        linear_bias = model.linear.bias.detach().double().numpy()
    return ShrunkNetwork(
        weights, biases, model.config.activation, list(range(n_in)), hidden, linear, linear_bias
    )
