"""Debutanizer protocol (benchmark_protocol.md section 1): CA against dense, GMP, magnitude and
random pruning at CA's sparsity, plus ridge and persistence, over seeds and noise levels.

Runs go two at a time (one per core, one thread each). Dense and CA of the same seed run in
one worker back to back, so the per-epoch overhead ratio is measured side by side.

    python -m bench.debutanizer --seeds 5 --noise 0 0.05 --out bench/results/debutanizer
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

from service.atomic import write_atomic
from training.appraisal import CAConfig
from training.data import load_dataset
from training.evaluation import fit_ridge, score
from training.experiment import RunConfig, run_experiment
from training.network import NetworkConfig
from training.spec import load_spec
from training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "training" / "specs" / "debutanizer.yaml"
DATA = REPO.parent / "shared" / "datasets" / "debutanizer" / "debutanizer_data.txt"
BASELINES = ("gmp", "magnitude", "random")


def _slim(metrics: dict[str, Any]) -> dict[str, Any]:
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
    return {k: metrics[k] for k in keep}


def run_seed(job: tuple[int, float, RunConfig, str]) -> list[dict[str, Any]]:
    """Dense, then CA, then the baselines at CA's per-layer sparsity, for one seed and noise."""
    seed, noise, base, data = job
    ds = load_dataset(load_spec(SPEC), data, noise_sigma=noise, seed=seed)
    rows = []
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
    ridge = fit_ridge(ds.train.x, ds.train.y, ds.validation.x, ds.validation.y)
    y_lag = ds.feature_names.index(f"{ds.spec.target.name}_lag{ds.spec.target.analyzer_delay}")
    for name, pred_val, pred_test in (
        ("ridge", ridge.predict(ds.validation.x), ridge.predict(ds.test.x)),
        ("persistence", ds.validation.x[:, y_lag], ds.test.x[:, y_lag]),
    ):
        t, v = score(ds.test.y, pred_test), score(ds.validation.y, pred_val)
        rows.append(
            {
                "method": name,
                "seed": seed,
                "noise": noise,
                "test_rmse": t.rmse,
                "test_mae": t.mae,
                "test_r2": t.r2,
                "val_rmse": v.rmse,
            }
        )
    return [_slim(r) if "pruning_rate" in r else r for r in rows]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "debutanizer")
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--tau", type=float, default=CAConfig().tau)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"debutanizer data not found at {args.data}; nothing to benchmark")
    base = RunConfig(
        network=NetworkConfig(),
        train=TrainConfig(progress=False, epochs=args.epochs),
        ca=replace(CAConfig(), tau=args.tau),
    )
    jobs = [(s, n, base, str(args.data)) for n in args.noise for s in range(args.seeds)]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [r for batch in pool.map(run_seed, jobs) for r in batch]
    wall = time.perf_counter() - started
    summary = summarize(rows)
    ratios = []
    for n in args.noise:
        for s in range(args.seeds):
            d = next(
                r for r in rows if r["method"] == "dense" and r["seed"] == s and r["noise"] == n
            )
            c = next(r for r in rows if r["method"] == "ca" and r["seed"] == s and r["noise"] == n)
            ratios.append(c["seconds_per_epoch"] / d["seconds_per_epoch"])
    result = {
        "command": "python -m bench.debutanizer "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out",)
        ),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "wall_seconds": wall,
        "ca_epoch_overhead_ratio_mean": statistics.fmean(ratios),
        "ca_epoch_overhead_ratios": ratios,
        "config": {
            "train": vars(base.train),
            "ca": vars(base.ca),
            "network": {"hidden": list(base.network.hidden), "activation": base.network.activation},
        },
        "summary": summary,
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "results.json", json.dumps(result, indent=1, default=str) + "\n")
    for key, methods in summary.items():
        print(key)
        for method, stats in methods.items():
            rate = stats.get("pruning_rate_mean")
            rate_text = "-" if rate is None else f"{rate:.1%}"
            ett = stats.get("epochs_to_target_mean")
            print(
                f"  {method:<12} test {stats['test_rmse_mean']:.4f} +- "
                f"{stats['test_rmse_std']:.4f}  val {stats['val_rmse_mean']:.4f}  "
                f"pruned {rate_text}  "
                f"epochs-to-target {ett if ett is None else round(ett, 1)}"
            )
    print(f"CA/dense seconds per epoch: {statistics.fmean(ratios):.2f}; wall {wall:.0f} s")


if __name__ == "__main__":
    main()
