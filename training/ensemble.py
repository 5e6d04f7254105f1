"""Ensembles of a few pruned networks, served as one.

Averaging networks trained from different seeds cancels part of each one's variance, which at
the small data sizes of soft sensors is worth a few percent of error. Members are trained on
the same split with the same scalers, so their average (in the transformed target's
standardized space) is itself one network: the hidden chains side by side, each member's
second and later layers block-diagonal, the output layers and linear paths averaged.
``merge`` builds it, and the export writes that one sparse graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import block_diag

from service.contracts.arrays import FloatArray
from training.scaling import Standardizer
from training.shrink import ShrunkNetwork
from training.target import TargetTransform
from training.trainer import TrainResult

SEED_STRIDE = 1000  # member i of a run with seed s trains with seed s + 1000 i


def member_seeds(seed: int, members: int) -> list[int]:
    """Seeds of an ensemble's members; member 0 uses the run's own seed.

    >>> member_seeds(2, 3)
    [2, 1002, 2002]
    """
    if members < 1:
        raise ValueError(f"an ensemble needs at least one member, got {members}")
    return [seed + SEED_STRIDE * i for i in range(members)]


@dataclass
class Ensemble:
    """Trained members; estimates are the mean in the transformed target's space."""

    members: list[TrainResult]

    @property
    def x_scaler(self) -> Standardizer:
        return self.members[0].x_scaler

    @property
    def y_scaler(self) -> Standardizer:
        return self.members[0].y_scaler

    @property
    def transform(self) -> TargetTransform:
        return self.members[0].transform

    def predict_transformed(self, x: FloatArray) -> FloatArray:
        return np.asarray(np.mean([m.predict_transformed(x) for m in self.members], axis=0))

    def predict(self, x: FloatArray) -> FloatArray:
        """Estimate in the target's unit for raw feature rows."""
        return self.transform.inverse(self.predict_transformed(x))


def _spread(matrix: FloatArray, kept: Sequence[int], union: Sequence[int]) -> FloatArray:
    """Columns of ``matrix`` (over ``kept`` inputs) placed at their positions in ``union``."""
    out = np.zeros((matrix.shape[0], len(union)))
    where = {feature: j for j, feature in enumerate(union)}
    for j, feature in enumerate(kept):
        out[:, where[feature]] = matrix[:, j]
    return out


def merge(nets: Sequence[ShrunkNetwork]) -> ShrunkNetwork:
    """One network computing the mean of ``nets`` (same depth, activation and scalers).

    A member whose hidden neurons were all pruned contributes only its output bias and its
    linear path. One member is returned unchanged.
    """
    if len(nets) == 1:
        return nets[0]
    k = len(nets)
    depth = {len(n.weights) for n in nets}
    activations = {n.activation for n in nets}
    if len(depth) != 1 or len(activations) != 1:
        raise ValueError("ensemble members must share depth and activation")
    union = sorted({i for n in nets for i in n.inputs_kept})
    chains = [n for n in nets if n.has_chain]
    constant = sum(float(n.biases[-1][0]) for n in nets if not n.has_chain) / k
    n_layers = depth.pop()
    weights: list[FloatArray] = []
    biases: list[FloatArray] = []
    hidden_kept: list[list[int]] = []
    if chains:
        weights.append(np.vstack([_spread(n.weights[0], n.inputs_kept, union) for n in chains]))
        biases.append(np.concatenate([n.biases[0] for n in chains]))
        for layer in range(1, n_layers - 1):
            weights.append(block_diag(*(n.weights[layer] for n in chains)))
            biases.append(np.concatenate([n.biases[layer] for n in chains]))
        weights.append(np.hstack([n.weights[-1] for n in chains]) / k)
        biases.append(np.sum([n.biases[-1] for n in chains], axis=0) / k + constant)
        hidden_kept = [list(range(len(b))) for b in biases[:-1]]
    else:  # every member ended linear: keep an empty chain that only adds the constant
        weights = [np.zeros((0, len(union)))]
        weights += [np.zeros((0, 0)) for _ in range(n_layers - 2)]
        weights.append(np.zeros((1, 0)))
        biases = [np.zeros(0) for _ in range(n_layers - 1)] + [np.array([constant])]
        hidden_kept = [[] for _ in range(n_layers - 1)]
    linear: FloatArray | None = None
    linear_bias: FloatArray | None = None
    spread = [_spread(n.linear, n.inputs_kept, union) for n in nets if n.linear is not None]
    if spread:
        linear = np.sum(spread, axis=0) / k
        linear_bias = np.sum([n.linear_bias for n in nets if n.linear_bias is not None], axis=0) / k
    return ShrunkNetwork(
        weights, biases, nets[0].activation, union, hidden_kept, linear, linear_bias
    )
