"""Run configuration as plain dataclasses, importable without torch.

The CLI builds its options from these defaults, and ``softsensor serve`` must start in an
image that has no torch, so nothing here may import it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

METHODS = ("ca", "gmp", "magnitude", "random", "dense")
# Networks averaged per run (one ONNX graph). Averaging seeds cut the research folds' error
# by 1-4% (docs/tuning.md); five keep a default debutanizer run well under a minute.
ENSEMBLE_MEMBERS = 5
ACTIVATION_NAMES = ("tanh", "relu", "sigmoid", "gelu", "elu")


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of the MLP; the input and output sizes come from the data."""

    hidden: Sequence[int] = field(default=(64, 64))  # widths of the hidden layers
    activation: str = "tanh"  # one of ACTIVATIONS; tanh is smooth and the literature's default
    # A linear path from the inputs straight to the output, beside the hidden layers
    # (out = mlp(x) + linear(x)), pruned by the same rule: the family then contains the
    # linear model, so pruning can end at it when the data supports nothing more.
    linear_path: bool = True
    # Additive hidden chain (a GAM): one small subnetwork per input, of the ``hidden`` widths,
    # their outputs summed. It still contains the linear model (the linear path) and can
    # only add a smooth correction per sensor, never an interaction between sensors.
    additive: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimization knobs; choose them on the validation split, never on test."""

    # Defaults chosen on the debutanizer's validation split (docs/tuning.md), never on test.
    # Planned length in epochs; the pruning schedule is laid out over it. None: a plan of
    # ``plan_epochs``, and training goes on past it with the final masks while validation
    # still improves (early stopping decides), up to ``step_budget`` optimizer steps in all.
    # A network learns per step, not per pass, so a unit with a few hundred lab results would
    # otherwise stop while it is still improving. The plan itself is not stretched: on data
    # that overfits early a longer pruning phase only delays the final masks.
    epochs: int | None = None
    plan_epochs: int = 100
    step_budget: int = 10_000
    batch_size: int = 32
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.003  # L2 penalty on the hidden chain (Adam's weight_decay)
    linear_weight_decay: float = 0.0  # L2 penalty on the linear path
    # Start the linear path at the ridge solution and the chain's output at zero, so training
    # starts at the linear model (regression with a linear path only).
    start_at_linear: bool = True
    # Gaussian jitter (standardized units) on the inputs the hidden chain sees in each batch
    input_noise: float = 0.0
    early_stopping: int = 30  # stop after this many epochs without improvement (masks final)
    # After every choice is made on validation (ridge alpha, epochs, where pruning stopped,
    # network or linear model), train again on train + validation with those choices: the
    # model then knows the most recent operating points (regression only). Off by default:
    # in the plant replay (docs/replay.md) the refitted model's bias-corrected estimate was
    # worse (RMSE 0.038 against 0.032 mol %) and its interval, calibrated on the held-out
    # members, covered the truth 92 % of the time instead of 96 %.
    refit: bool = False
    seed: int = 0
    threads: int = 1  # tiny networks run faster, and reproducibly, on one thread
    progress: bool = True  # show a progress bar

    def planned_epochs(self) -> int:
        """The length the pruning schedule is laid out over."""
        return self.plan_epochs if self.epochs is None else self.epochs

    def most_epochs(self, rows: int) -> int:
        """How long ``rows`` training rows may train: ``epochs`` exactly when given."""
        if self.epochs is not None:
            return self.epochs
        steps_per_epoch = max(1, math.ceil(rows / self.batch_size))
        return max(self.plan_epochs, math.ceil(self.step_budget / steps_per_epoch))


@dataclass(frozen=True)
class CAConfig:
    """Every knob of CA with the reference's default; the model card records them all."""

    tau: float = 0.5  # relative-importance threshold (r < tau counts as "below")
    criterion: Literal["activity", "magnitude", "taylor"] = "activity"  # what c_ij measures
    beta: float = 0.9  # per-step smoothing of c: c_hat <- beta c_hat + (1 - beta) c
    consistency: Literal["consecutive", "window", "leaky"] = "consecutive"
    patience: int = 3  # consecutive: prune after this many appraisals in a row below tau
    window: int = 5  # window: look at the last W appraisals...
    window_fraction: float = 0.6  # ...and prune when below tau in at least this share of them
    leak: float = 0.8  # leaky: v <- leak * v + (r - tau) ...
    kappa: float = 0.5  # ...and prune when v < -kappa
    appraise_every: int = 1  # epochs between appraisals
    warmup_fraction: float = 0.10  # no appraisal during max(min_warmup, 10% of epochs)
    min_warmup: int = 3
    freeze_fraction: float = 0.15  # masks frozen for the last 15% of epochs (fine-tuning)
    max_prune_fraction: float = 0.20  # at most 20% of a layer's active connections per appraisal
    keep_strongest_input: bool = True  # an output neuron always keeps its strongest input
    # Collapse guards (the mean-relative rule is not self-limiting at every tau):
    min_density: float = 0.0  # never prune a layer below this share of its connections
    # Stop appraising after this many appraisals in a row with a rising validation loss
    # (0 = off). Chosen on the validation split: see docs/tuning.md.
    stop_after_val_rises: int = 3

    def __post_init__(self) -> None:
        checks = {
            "tau": self.tau > 0,
            "beta": 0 <= self.beta < 1,
            "patience": self.patience >= 1,
            "window": self.window >= 1,
            "window_fraction": 0 < self.window_fraction <= 1,
            "leak": 0 <= self.leak < 1,
            "kappa": self.kappa > 0,
            "appraise_every": self.appraise_every >= 1,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
            "min_warmup": self.min_warmup >= 0,
            "freeze_fraction": 0 <= self.freeze_fraction < 1,
            "max_prune_fraction": 0 < self.max_prune_fraction <= 1,
            "min_density": 0 <= self.min_density < 1,
            "stop_after_val_rises": self.stop_after_val_rises >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid CA setting {bad[0]}={getattr(self, bad[0])!r}")
        if self.criterion not in ("activity", "magnitude", "taylor"):
            raise ValueError(f"invalid CA setting criterion={self.criterion!r}")
        if self.consistency not in ("consecutive", "window", "leaky"):
            raise ValueError(f"invalid CA setting consistency={self.consistency!r}")
