"""``softsensor train``: load the data, (tune,) train and prune, write the run, register it."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli.arguments import (
    open_registry,
)

if TYPE_CHECKING:
    from training.data import Dataset
    from training.experiment import RunConfig, RunReport
    from training.tuning import TuneResult


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
            hidden=args.hidden,
            activation=args.activation,
            linear_path=args.linear_path,
            additive=args.additive,
        ),
        train=TrainConfig(
            epochs=args.epochs,
            step_budget=args.step_budget,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            linear_weight_decay=args.linear_weight_decay,
            start_at_linear=args.start_at_linear,
            input_noise=args.input_noise,
            early_stopping=args.early_stopping,
            refit=args.refit,
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


def run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.data import load_dataset
    from training.experiment import run_experiment
    from training.retrain import read_lab_results
    from training.spec import load_spec
    from training.summary import summary_lines

    started = time.perf_counter()
    if args.promote and not args.register:
        parser.error("--promote needs --register NAME: only a registered version can be promoted")
    try:
        cfg = _run_config(args)
    except (ValueError, KeyError, OSError) as exc:
        parser.error(str(exc))
    lab = read_lab_results(args.lab_results) if args.lab_results is not None else None
    spec = load_spec(args.spec)
    dataset = load_dataset(spec, args.data, noise_sigma=args.noise, seed=args.seed, lab_results=lab)
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
            "rows_across_gaps": dataset.rows_across_gaps,
            "lab_results_used": dataset.lab_results_used,
            "lab_results_unmatched": dataset.lab_results_unmatched,
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
    # The learning curves validation judged (a refit's own history has no held-out figures)
    history = [(m.selected or m).history_dicts() for m in report.members]
    write_atomic(out / "history.json", json.dumps(history) + "\n")
    _save_checkpoint(report, out / "checkpoint.pt")
    return metrics


def _register(args: argparse.Namespace, dataset: Dataset, report: RunReport) -> None:
    from service.contracts.history import command_user
    from service.scoring.runtime import load_problem
    from training.publish import publish

    registry = open_registry(args)
    published = publish(dataset, report, registry, args.register)
    card = published.card
    champion = published.champion
    if args.promote and not champion:
        registry.promote(
            published.name,
            published.version,
            check=functools.partial(load_problem, registry),
            by=command_user(),
            reason="softsensor train --promote: the version this run trained",
        )
        champion = True
    print(
        f"registered {published.name} {published.version} at {published.path} "
        f"(ONNX {card.onnx_bytes} bytes, dense architecture {card.dense_onnx_bytes}; "
        f"parity {published.exported.max_parity_error:.2g})"
        + ("; now champion" if champion else "")
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
