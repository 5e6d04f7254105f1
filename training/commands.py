"""The training commands of ``softsensor``: ``simulate``, ``train`` and ``retrain``.

``service.cli`` registers them only where the ``train`` extra is installed. Building the
parsers imports argparse and the config dataclasses only; torch and pandas load inside the
handlers, so ``softsensor --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli.arguments import (
    HelpWithDefaults,
    Subcommands,
    add_registry_option,
    fraction,
    integer,
    non_negative_float,
    non_negative_int,
    open_registry,
    positive_float,
    positive_int,
    sparsity,
    widths,
)

if TYPE_CHECKING:
    from training.data import Dataset
    from training.experiment import RunConfig, RunReport
    from training.tuning import TuneResult


def add_commands(sub: Subcommands) -> None:
    """Register ``simulate``, ``train`` and ``retrain`` on the ``softsensor`` parser."""
    _add_simulate_parser(sub)
    _add_train_parser(sub)
    _add_retrain_parser(sub)


# ---- train ---------------------------------------------------------------------------------


def _add_train_parser(sub: Subcommands) -> None:
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
        help="export to ONNX and write a new version of model NAME into the registry",
    )
    add_registry_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_network_options(p.add_argument_group("network and optimization"))
    _add_ca_options(p.add_argument_group("connection appraisal (method ca)"))
    _add_tuning_options(p.add_argument_group("automatic recipe (Optuna, validation split only)"))
    p.set_defaults(handler=_run_train, parser=p)


def _add_network_options(g: argparse._ArgumentGroup) -> None:
    from training.config import ACTIVATION_NAMES, ENSEMBLE_MEMBERS, NetworkConfig, TrainConfig

    net, tc = NetworkConfig(), TrainConfig()
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
        "--start-random",
        dest="start_at_linear",
        action="store_false",
        help="start from random weights instead of the ridge solution",
    )
    g.add_argument("--epochs", type=positive_int, default=tc.epochs, help="planned epochs")
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


def _run_config(args: argparse.Namespace) -> RunConfig:
    """The run the options describe; raises ValueError/KeyError/OSError on inconsistent ones."""
    from training.config import CAConfig, NetworkConfig, TrainConfig
    from training.experiment import RunConfig, make_pruner

    dense_best = None
    if args.dense_reference is not None:
        ref = json.loads(args.dense_reference.read_text(encoding="utf-8"))
        dense_best = float(ref["best_val_loss"])
    cfg = RunConfig(
        method=args.method,
        seed=args.seed,
        noise=args.noise,
        target_sparsity=args.target_sparsity,
        network=NetworkConfig(
            hidden=args.hidden, activation=args.activation, linear_path=args.linear_path
        ),
        train=TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            linear_weight_decay=args.linear_weight_decay,
            start_at_linear=args.start_at_linear,
            input_noise=args.input_noise,
            early_stopping=args.early_stopping,
            seed=args.seed,
            progress=not args.quiet,
        ),
        ca=CAConfig(
            tau=args.tau,
            patience=args.patience,
            criterion=args.criterion,
            consistency=args.consistency,
            beta=args.beta,
            min_density=args.min_density,
            stop_after_val_rises=args.stop_after_val_rises,
        ),
        dense_best_val_loss=dense_best,
        members=args.members,
    )
    make_pruner(cfg)  # fail on inconsistent options before reading any data
    return cfg


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.data import load_dataset
    from training.experiment import run_experiment
    from training.spec import load_spec
    from training.summary import summary_lines

    started = time.perf_counter()
    try:
        cfg = _run_config(args)
    except (ValueError, KeyError, OSError) as exc:
        parser.error(str(exc))
    dataset = load_dataset(load_spec(args.spec), args.data, noise_sigma=args.noise, seed=args.seed)
    for warning in dataset.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    tuned = None
    if args.tune:
        from training.tuning import tune

        tuned = tune(
            dataset,
            cfg,
            seconds=args.tune_minutes * 60.0,
            trials=args.tune_trials,
            log=None if args.quiet else lambda line: print(line, file=sys.stderr),
        )
        cfg = tuned.config
    report = run_experiment(dataset, cfg)
    metrics = _write_run(args, dataset, report, tuned, started)
    for line in summary_lines(metrics):
        print(line)
    if tuned is not None:
        print(
            f"Tuning: {len(tuned.trials)} trials in {tuned.seconds:.0f} s (stopped by "
            f"{tuned.stopped_by}); chosen {tuned.params}"
        )
    if args.register:
        _register(args, dataset, report)
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


def _write_run(
    args: argparse.Namespace,
    dataset: Dataset,
    report: RunReport,
    tuned: TuneResult | None,
    started: float,
) -> dict[str, Any]:
    """metrics.json, history.json and checkpoint.pt in ``--out``; returns the metrics."""
    from service.contracts.atomic import write_atomic

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        **report.metrics,
        "spec": str(args.spec),
        "data": str(args.data),
        "data_checks": {
            "rows_read": dataset.rows_read,
            "values_out_of_range": dataset.values_out_of_range,
            "target_out_of_range": dataset.target_out_of_range,
            "values_filled": dataset.values_filled,
            "warnings": dataset.warnings,
        },
        "wall_seconds": time.perf_counter() - started,
    }
    if tuned is not None:
        metrics["tuning"] = {
            "best_val_rmse": tuned.best_val_rmse,
            "params": tuned.params,
            "trials": tuned.trials,
            "seconds": tuned.seconds,
            "stopped_by": tuned.stopped_by,
        }
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    history = [m.history_dicts() for m in report.members]
    write_atomic(out / "history.json", json.dumps(history) + "\n")
    _save_checkpoint(report, out / "checkpoint.pt")
    return metrics


def _register(args: argparse.Namespace, dataset: Dataset, report: RunReport) -> None:
    from training.publish import publish

    published = publish(dataset, report, open_registry(args), args.register)
    card = published.card
    print(
        f"registered {published.name} {published.version} at {published.path} "
        f"(ONNX {card.onnx_bytes} bytes, dense architecture {card.dense_onnx_bytes}; "
        f"parity {published.exported.max_parity_error:.2g})"
        + ("; now champion" if published.champion else "")
    )


def _save_checkpoint(report: RunReport, path: Path) -> None:
    import io

    import torch

    from service.contracts.atomic import write_atomic

    buf = io.BytesIO()
    ensemble = report.ensemble
    torch.save(
        {
            "state_dicts": [m.model.state_dict() for m in report.members],
            "x_mean": ensemble.x_scaler.mean_,
            "x_scale": ensemble.x_scaler.scale_,
            "y_mean": ensemble.y_scaler.mean_,
            "y_scale": ensemble.y_scaler.scale_,
            "target_transform": report.metrics["target_transform"],
            "metrics": report.metrics,
        },
        buf,
    )
    write_atomic(path, buf.getvalue())


# ---- retrain -------------------------------------------------------------------------------


def _add_retrain_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "retrain",
        help="train a challenger on new data; promote it only if clearly better than the champion",
        description="The challenger is also compared with ridge regression fitted on the same "
        "new data: one that loses to it on the held-out window is never promoted (unless "
        "--allow-worse-than-linear). Exit codes: 0 done (promoted or kept), 1 failed, "
        "2 usage error, 3 challenger rejected (sanity checks, or no champion and worse than "
        "linear).",
        formatter_class=HelpWithDefaults,
    )
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--spec", required=True, type=Path, help="dataset spec (YAML)")
    p.add_argument("--data", required=True, type=Path, help="new historian export")
    p.add_argument(
        "--lab-results",
        type=Path,
        default=None,
        help="CSV of lab results (timestamp,value) to use as labels",
    )
    p.add_argument(
        "--margin",
        type=non_negative_float,
        default=0.02,
        help="relative RMSE improvement over the champion required to promote",
    )
    p.add_argument(
        "--allow-worse-than-linear",
        action="store_true",
        help="promote a challenger even if ridge regression beats it on the held-out window",
    )
    p.add_argument("--seed", type=integer, default=0, help="seed of the challenger's training")
    p.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where the JSON and markdown report go",
    )
    add_registry_option(p)
    p.set_defaults(handler=_run_retrain, parser=p)


def _run_retrain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.retrain import EXIT_DONE, EXIT_REJECTED, retrain, write_report
    from training.spec import load_spec

    report = retrain(
        open_registry(args),
        args.name,
        load_spec(args.spec),
        args.data,
        margin=args.margin,
        seed=args.seed,
        lab_results=args.lab_results,
        allow_worse_than_linear=args.allow_worse_than_linear,
    )
    json_path, md_path = write_report(report, args.report_dir)

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4g} {report.unit}".rstrip()

    linear = ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in report.linear_rmse.items())
    print(
        f"{args.name}: {report.decision} (RMSE on the held-out window: champion "
        f"{fmt(report.champion_rmse)}, challenger {fmt(report.challenger_rmse)}"
        + (f", {linear}" if linear else "")
        + f"); report {json_path}, {md_path}"
    )
    for reason in report.reasons:
        print(f"  {reason}")
    return EXIT_REJECTED if report.decision == "rejected" else EXIT_DONE


# ---- simulate ------------------------------------------------------------------------------


def _add_simulate_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate Skogestad's Column A and write historian data + its spec",
        formatter_class=HelpWithDefaults,
    )
    p.add_argument("--days", type=positive_float, default=7.0, help="days of operation")
    p.add_argument("--seed", type=integer, default=0, help="seed of disturbances and sensor noise")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="data file (.csv or .parquet); the spec is written beside it as .yaml",
    )
    p.set_defaults(handler=_run_simulate, parser=p)


def _run_simulate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.simulator import simulate

    if args.out.suffix.lower() in {".yaml", ".yml"}:
        parser.error("--out is the data file (.csv or .parquet); the spec goes beside it")
    started = time.perf_counter()
    data, spec = simulate(args.days, args.seed, args.out)
    print(
        f"wrote {data} and {spec} ({args.days:g} days, seed {args.seed}, "
        f"{time.perf_counter() - started:.1f} s)"
    )
    return 0
