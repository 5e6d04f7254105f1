"""The options of ``softsensor train``: every knob of the recipe, with its default shown.

Only argparse and the config dataclasses are imported here (no torch): the parser is built
for every ``softsensor`` invocation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from service.cli.arguments import (
    HelpWithDefaults,
    Subcommands,
    add_registry_option,
    fraction,
    integer,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    sparsity,
    widths,
)
from training.commands.train import run_train


def add_train_parser(sub: Subcommands) -> None:
    from training.config import METHODS, TrainConfig

    p = sub.add_parser(
        "train",
        help="train (and prune) a soft sensor on a historian export",
        description="Train the network on the spec's train split while it is pruned, choose "
        "checkpoints on validation, score it, ridge regression and persistence on the test "
        "split, and write metrics.json (optionally register the exported model).",
        formatter_class=HelpWithDefaults,
    )
    p.add_argument("--spec", required=True, type=Path, help="dataset spec (YAML)")
    p.add_argument("--data", required=True, type=Path, help="data file the spec describes")
    p.add_argument(
        "--lab-results",
        type=Path,
        default=None,
        help="lab results as labels, a CSV with columns timestamp (the sample time) and value "
        "(a LIMS export, or the service's /v1/lab-results?format=csv): each goes to the row "
        "nearest its sample time and overrides the analyzer there; the data file may then "
        "have no target column",
    )
    p.add_argument("--method", choices=METHODS, default="ca", help="pruning method")
    p.add_argument(
        "--seed",
        type=integer,
        default=TrainConfig().seed,
        help="seed of the first network (and noise)",
    )
    p.add_argument(
        "--noise",
        type=non_negative_float,
        default=0.0,
        help="extra Gaussian noise on the inputs, in data units (benchmarks)",
    )
    p.add_argument(
        "--target-sparsity",
        type=sparsity,
        default=None,
        help="final sparsity for the gmp/magnitude/random baselines (one value, or one per layer)",
    )
    p.add_argument(
        "--dense-reference",
        type=Path,
        default=None,
        help="metrics.json of a dense run: sets the learning-speed target",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument(
        "--register",
        metavar="NAME",
        default=None,
        help="export to ONNX and write a new version of model NAME into the registry (the "
        "model's first version becomes its champion; a later one only with --promote)",
    )
    p.add_argument(
        "--promote",
        action="store_true",
        help="with --register: make the new version the champion once it has loaded and "
        "scored a test row, recorded in the champion history (softsensor models show)",
    )
    add_registry_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    group = p.add_argument_group("network and optimization")
    _add_network_options(group)
    _add_optimizer_options(group)
    _add_ca_options(p.add_argument_group("connection appraisal (method ca)"))
    _add_tuning_options(p.add_argument_group("automatic recipe (Optuna, validation split only)"))
    p.set_defaults(handler=run_train, parser=p)


def _add_network_options(g: argparse._ArgumentGroup) -> None:
    from training.config import ACTIVATION_NAMES, ENSEMBLE_MEMBERS, NetworkConfig

    net = NetworkConfig()
    g.add_argument(
        "--members",
        type=positive_int,
        default=ENSEMBLE_MEMBERS,
        help="networks trained from different seeds and averaged in one model",
    )
    g.add_argument(
        "--hidden",
        type=widths,
        default=",".join(map(str, net.hidden)),
        help="hidden layer widths, comma-separated",
    )
    g.add_argument(
        "--activation",
        choices=ACTIVATION_NAMES,
        default=net.activation,
        help="activation of the hidden layers",
    )
    g.add_argument(
        "--no-linear-path",
        dest="linear_path",
        action="store_false",
        help="no linear path from the inputs to the output beside the hidden layers",
    )
    g.add_argument(
        "--additive",
        action="store_true",
        help="one subnetwork of the --hidden widths per input, summed (no interactions)",
    )
    g.add_argument(
        "--start-random",
        dest="start_at_linear",
        action="store_false",
        help="start from random weights instead of the ridge solution",
    )


def _add_optimizer_options(g: argparse._ArgumentGroup) -> None:
    from training.config import TrainConfig

    tc = TrainConfig()
    g.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs the pruning schedule is laid out over; given, exactly the run's length "
        f"(default: {tc.plan_epochs}, and a run still improving then trains on with its final "
        "masks while validation improves, up to --step-budget optimizer steps)",
    )
    g.add_argument(
        "--step-budget",
        type=positive_int,
        default=tc.step_budget,
        help="optimizer steps a run without --epochs may train on to",
    )
    g.add_argument(
        "--batch-size", type=positive_int, default=tc.batch_size, help="rows per optimizer step"
    )
    g.add_argument("--lr", type=positive_float, default=tc.lr, help="Adam learning rate")
    g.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=tc.weight_decay,
        help="L2 penalty on the hidden layers",
    )
    g.add_argument(
        "--linear-weight-decay",
        type=non_negative_float,
        default=tc.linear_weight_decay,
        help="L2 penalty on the linear path",
    )
    g.add_argument(
        "--input-noise",
        type=non_negative_float,
        default=tc.input_noise,
        help="Gaussian jitter (standardized units) on what the hidden layers see",
    )
    g.add_argument(
        "--early-stopping",
        type=positive_int,
        default=tc.early_stopping,
        help="stop after this many epochs without a better validation RMSE (masks final)",
    )
    g.add_argument(
        "--refit",
        action="store_true",
        help="refit the networks on train + validation with the choices validation made "
        "(off by default: see docs/tuning.md)",
    )


def _add_ca_options(c: argparse._ArgumentGroup) -> None:
    from training.config import CAConfig

    ca = CAConfig()
    c.add_argument(
        "--tau", type=positive_float, default=ca.tau, help="relative-importance threshold"
    )
    c.add_argument(
        "--patience",
        type=positive_int,
        default=ca.patience,
        help="appraisals in a row below tau before a connection is pruned",
    )
    c.add_argument(
        "--criterion",
        choices=("activity", "magnitude", "taylor"),
        default=ca.criterion,
        help="what a connection's contribution measures",
    )
    c.add_argument(
        "--consistency",
        choices=("consecutive", "window", "leaky"),
        default=ca.consistency,
        help="how 'consistently below tau' is judged",
    )
    c.add_argument("--beta", type=fraction, default=ca.beta, help="smoothing of contributions")
    c.add_argument(
        "--min-density",
        type=fraction,
        default=ca.min_density,
        help="never prune a layer below this share of its connections",
    )
    c.add_argument(
        "--stop-after-val-rises",
        type=non_negative_int,
        default=ca.stop_after_val_rises,
        help="stop appraising after this many rising validation RMSEs in a row (0: never)",
    )


def _add_tuning_options(t: argparse._ArgumentGroup) -> None:
    t.add_argument(
        "--tune",
        action="store_true",
        help="choose width, learning rate, weight decays, input noise and tau on validation "
        "before training the ensemble",
    )
    t.add_argument(
        "--tune-minutes",
        type=positive_float,
        default=8.0,
        help="wall-clock budget of the search (the final ensemble comes after it)",
    )
    t.add_argument("--tune-trials", type=positive_int, default=60, help="at most this many trials")
