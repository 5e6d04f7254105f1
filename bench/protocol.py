"""The regression protocol (benchmark_protocol.md sections 1 and 2): CA against dense, GMP,
magnitude and random pruning at CA's per-layer sparsity, plus ridge and persistence of the
latest analyzer value, over seeds and input-noise levels, on any dataset spec.

Runs go two at a time (one per core, one thread each). Per seed: dense first (its best
validation loss sets the learning-speed target), then CA, then the baselines at CA's sparsity.

    python -m bench.protocol --seeds 5 --noise 0 0.05                       # debutanizer
    python -m bench.protocol --spec S.yaml --data D.csv --out bench/results/NAME
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from service.contracts.atomic import write_atomic
from training.baseline import Baseline, fit_baselines
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.evaluation import fit_ridge, score
from training.experiment import RunConfig, run_experiment
from training.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
DEBUTANIZER_SPEC = REPO / "training" / "specs" / "debutanizer.yaml"
DEBUTANIZER = REPO.parent / "shared" / "datasets" / "debutanizer" / "debutanizer_data.txt"
BASELINES = ("gmp", "magnitude", "random")


def slim_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures a benchmark table needs, without configs and per-row detail."""
    keep = (
        "method",
        "seed",
        "noise",
        "test_rmse",
        "test_mae",
        "test_r2",
        "val_rmse",
        "train_rmse",
        "pruning_rate",
        "pruning_rate_per_layer",
        "neurons_removed",
        "inputs_removed",
        "params_before",
        "params_after",
        "epochs",
        "best_epoch",
        "best_val_loss",
        "val_loss_auc",
        "epochs_to_target",
        "train_seconds",
        "seconds_per_epoch",
    )
    extra = [k for k in metrics if "_truth_" in k]
    return {k: metrics[k] for k in (*keep, *extra)}


def run_seed(job: tuple[int, float, RunConfig, str, str, bool]) -> list[dict[str, Any]]:
    """Dense, then CA, then the baselines at CA's per-layer sparsity, for one seed and noise
    (``ca_only``: CA and the linear baselines alone)."""
    seed, noise, base, spec, data, ca_only = job
    ds = load_dataset(load_spec(spec), data, noise_sigma=noise, seed=seed)
    rows = []
    if ca_only:
        ca = run_experiment(ds, replace(base, method="ca", seed=seed, noise=noise)).metrics
        return [slim_metrics(ca), *score_linear(ds, seed, noise)]
    dense = run_experiment(ds, replace(base, method="dense", seed=seed, noise=noise)).metrics
    ca = run_experiment(
        ds,
        replace(
            base, method="ca", seed=seed, noise=noise, dense_best_val_loss=dense["best_val_loss"]
        ),
    ).metrics
    rows += [dense, ca]
    for method in BASELINES:
        cfg = replace(
            base,
            method=method,
            seed=seed,
            noise=noise,
            target_sparsity=ca["pruning_rate_per_layer"],
            dense_best_val_loss=dense["best_val_loss"],
        )
        rows.append(run_experiment(ds, cfg).metrics)
    rows += score_linear(ds, seed, noise)
    return [slim_metrics(r) if "pruning_rate" in r else r for r in rows]


def score_linear(ds: Dataset, seed: int, noise: float) -> list[dict[str, Any]]:
    """The linear baselines every run fits (training.baseline: ridge with alpha by validation,
    ridge on the transformed target when the spec has one, persistence of the latest analyzer
    value when the inputs hold one), as benchmark rows."""
    rows = []
    baselines = fit_baselines(ds)
    for b in [*baselines, *refitted_ridge(ds, baselines)]:
        pred_test = b.predict(ds, ds.test.x)
        t = score(ds.test.y, pred_test)
        v = score(ds.validation.y, b.predict(ds, ds.validation.x))
        row: dict[str, Any] = {
            "method": b.name,
            "seed": seed,
            "noise": noise,
            "test_rmse": t.rmse,
            "test_mae": t.mae,
            "test_r2": t.r2,
            "val_rmse": v.rmse,
            "train_rmse": score(ds.train.y, b.predict(ds, ds.train.x)).rmse,
        }
        if ds.spec.target.truth is not None:
            truth = score(ds.test.truth[ds.spec.target.truth], pred_test)
            row |= {"test_truth_rmse": truth.rmse, "test_truth_r2": truth.r2}
        rows.append(row)
    return rows


def refitted_ridge(ds: Dataset, baselines: list[Baseline]) -> list[Baseline]:
    """Ridge refitted on train + validation with its validation-chosen alpha: the linear
    model a refit network must beat, since it learns from the same recent rows."""
    ridge = next((b.ridge for b in baselines if b.name == "ridge"), None)
    if ridge is None:
        return []
    x = np.vstack([ds.train.x, ds.validation.x])
    y = np.concatenate([ds.train.y, ds.validation.y])
    refitted = fit_ridge(x, y, ds.validation.x, ds.validation.y, (ridge.alpha,))
    text = f"ridge refitted on train + validation, alpha {ridge.alpha:g}"
    return [Baseline("ridge_refit", text, refitted)]


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and std per (noise, method) of every numeric figure."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        key = f"noise={row['noise']}"
        table.setdefault(key, {}).setdefault(row["method"], {})
    for key, methods in table.items():
        for method in methods:
            group = [r for r in rows if f"noise={r['noise']}" == key and r["method"] == method]
            for field in (
                "test_rmse",
                "test_mae",
                "test_r2",
                "val_rmse",
                "pruning_rate",
                "test_truth_rmse",
                "test_truth_r2",
                "epochs_to_target",
                "seconds_per_epoch",
                "train_seconds",
                "epochs",
            ):
                values = [float(r[field]) for r in group if r.get(field) is not None]
                if values:
                    methods[method][f"{field}_mean"] = statistics.fmean(values)
                    methods[method][f"{field}_std"] = (
                        statistics.stdev(values) if len(values) > 1 else 0.0
                    )
                    methods[method][f"{field}_n"] = len(values)
    return table


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEBUTANIZER_SPEC)
    parser.add_argument("--data", type=Path, default=DEBUTANIZER)
    parser.add_argument(
        "--simulate-days",
        type=float,
        default=None,
        help="simulate Column A (seed 0) into --data first; --spec is then the one written",
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "debutanizer")
    parser.add_argument(
        "--epochs", type=int, default=None, help="planned epochs (default: the recipe's own)"
    )
    parser.add_argument("--tau", type=float, default=CAConfig().tau)
    parser.add_argument("--members", type=int, default=RunConfig().members)
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=list(NetworkConfig().hidden), help="widths"
    )
    parser.add_argument(
        "--additive",
        action="store_true",
        help="one subnetwork of the --hidden widths per input, summed (NetworkConfig.additive)",
    )
    parser.add_argument(
        "--ca-only",
        action="store_true",
        help="CA and the linear baselines only (no dense, GMP, magnitude or random runs)",
    )
    parser.add_argument(
        "--refit", action="store_true", help="networks refitted on train + validation"
    )
    return parser.parse_args()


def main() -> None:
    args = _parse_args()
    spec: Path = args.spec
    if args.simulate_days is not None:
        from training.simulator import simulate

        _, spec = simulate(args.simulate_days, 0, args.data)
    if not args.data.is_file():
        raise SystemExit(f"data not found at {args.data}; nothing to benchmark")
    base = RunConfig(
        network=NetworkConfig(hidden=tuple(args.hidden), additive=args.additive),
        train=TrainConfig(progress=False, epochs=args.epochs, refit=args.refit),
        ca=replace(CAConfig(), tau=args.tau),
        members=args.members,
    )
    jobs = [
        (s, n, base, str(spec), str(args.data), args.ca_only)
        for n in args.noise
        for s in range(args.seeds)
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [r for batch in pool.map(run_seed, jobs) for r in batch]
    wall = time.perf_counter() - started
    summary = summarize(rows)
    result = {
        "command": "python -m bench.protocol "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "wall_seconds": wall,
        "config": {
            "train": vars(base.train),
            "ca": vars(base.ca),
            "network": {
                "hidden": list(base.network.hidden),
                "activation": base.network.activation,
                "additive": base.network.additive,
            },
        },
        "summary": summary,
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "results.json", json.dumps(result, indent=1, default=str) + "\n")
    _print_summary(summary, wall)


def _print_summary(summary: dict[str, Any], wall: float) -> None:
    for key, methods in summary.items():
        print(key)
        for method, stats in methods.items():
            rate = stats.get("pruning_rate_mean")
            truth = stats.get("test_truth_r2_mean")
            ett = stats.get("epochs_to_target_mean")
            print(
                f"  {method:<12} test {stats['test_rmse_mean']:.4f} +- "
                f"{stats['test_rmse_std']:.4f}  val {stats['val_rmse_mean']:.4f}  "
                f"pruned {'-' if rate is None else f'{rate:.1%}'}  "
                f"epochs-to-target {'-' if ett is None else f'{ett:.1f}'}"
                + ("" if truth is None else f"  R2 vs truth {truth:.3f}")
            )
    print(f"wall {wall:.0f} s")


if __name__ == "__main__":
    main()
