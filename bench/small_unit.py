"""The default recipe on a small nonlinear unit it was never tuned on: the training length.

A synthetic unit (five slowly wandering sensors, a quality that depends on them nonlinearly,
one of them three samples late; a lab result every fifth sample) is what a plant with a
few hundred lab results gives: 719 training rows. Each seed's file is trained with the
default recipe and with the length fixed at the plan (``--step-budget 1``: the recipe before
training could go on past its planned epochs), and scored against ridge on the test part.

    python -m bench.small_unit --seeds 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.protocol import REPO
from service.contracts.atomic import write_atomic

SPEC = """name: small_unit
description: a synthetic nonlinear unit with a lab result every fifth sample
source: {format: csv, timestamp: timestamp}
signals:
  - {name: s0, unit: degC, range: [0, 100]}
  - {name: s1, unit: degC, range: [0, 100]}
  - {name: s2, unit: degC, range: [0, 100]}
  - {name: s3, unit: degC, range: [0, 100]}
  - {name: s4, unit: degC, range: [0, 100]}
target: {name: q, unit: "%", range: [-20, 40], analyzer_delay: 0}
features:
  - {signal: s0, lags: "0..5"}
  - {signal: s1, lags: [0]}
  - {signal: s2, lags: [0]}
  - {signal: s3, lags: [0]}
  - {signal: s4, lags: [0]}
split: {train: 0.6, validation: 0.2, test: 0.2}
missing: {policy: error}
"""
ROWS = 6000


def _wander(rng: np.random.Generator, n: int) -> np.ndarray:
    """A slowly wandering operating variable (AR(1), phi 0.995), unit variance."""
    x = np.zeros(n)
    shocks = rng.normal(size=n)
    for i in range(1, n):
        x[i] = 0.995 * x[i - 1] + 0.1 * shocks[i]
    scaled: np.ndarray = x / x.std()
    return scaled


def write_unit(path: Path, seed: int) -> None:
    """The unit's historian file (sensors every minute, a lab value every fifth sample)."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([_wander(rng, ROWS) for _ in range(5)])
    late = np.concatenate([np.full(3, x[0, 0]), x[:-3, 0]])  # s0 acts three samples late
    truth = (
        2
        + np.tanh(1.5 * late) * (1 + 0.5 * x[:, 1])
        + 0.3 * x[:, 2] ** 2
        + 0.4 * np.exp(0.5 * x[:, 3])
        - 0.2 * x[:, 4]
    )
    lab = truth + 0.05 * rng.normal(size=ROWS)
    sensors = 50 + 5 * (x + 0.02 * rng.normal(size=x.shape))
    lines = ["timestamp,s0,s1,s2,s3,s4,q"]
    start = np.datetime64("2026-01-01T00:00:00")
    for i in range(ROWS):
        stamp = str(start + np.timedelta64(i, "m"))
        q = f"{lab[i]:.6f}" if i % 5 == 0 else ""
        lines.append(",".join([stamp, *(f"{v:.5f}" for v in sensors[i]), q]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _train(spec: Path, data: Path, seed: int, step_budget: int | None) -> dict[str, Any]:
    from training.config import TrainConfig
    from training.data import load_dataset
    from training.experiment import RunConfig, run_experiment
    from training.spec import load_spec

    train = TrainConfig(progress=False, seed=seed)
    if step_budget is not None:
        train = replace(train, step_budget=step_budget)
    report = run_experiment(load_dataset(load_spec(spec), data), RunConfig(seed=seed, train=train))
    m = report.metrics
    return {
        "test_rmse": m["test_rmse"],
        "ridge_test_rmse": m["baseline"]["ridge"]["test"]["analyzer"]["rmse"],
        "validation_rmse": m["val_rmse"],
        "pruning_rate": m["pruning_rate"],
        "epochs": [r["epochs"] for r in m["member_runs"]],
        "best_epochs": [r["best_epoch"] for r in m["member_runs"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "small_unit")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "planned_length_only": []}
    with tempfile.TemporaryDirectory(prefix="softsensor-unit-") as tmp:
        spec = Path(tmp) / "unit.yaml"
        spec.write_text(SPEC, encoding="utf-8")
        for seed in range(args.seeds):
            data = Path(tmp) / f"unit{seed}.csv"
            write_unit(data, seed)
            runs["default"].append(_train(spec, data, seed, None))
            runs["planned_length_only"].append(_train(spec, data, seed, 1))
            print(seed, {k: round(v[-1]["test_rmse"], 4) for k, v in runs.items()}, flush=True)
    summary: dict[str, Any] = {
        name: {
            "test_rmse": [r["test_rmse"] for r in rr],
            "validation_rmse": [r["validation_rmse"] for r in rr],
            "ridge_test_rmse": [r["ridge_test_rmse"] for r in rr],
        }
        for name, rr in runs.items()
    }
    pairs = zip(runs["default"], runs["planned_length_only"], strict=True)
    summary["test_rmse_ratio"] = [d["test_rmse"] / p["test_rmse"] for d, p in pairs]
    results = {"command": f"python -m bench.small_unit --seeds {args.seeds}", "runs": runs}
    results["summary"] = summary
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    for name in runs:
        s = summary[name]
        print(f"{name:20s} test RMSE per seed {[round(v, 4) for v in s['test_rmse']]} %")
    print(f"{'ridge':20s} test RMSE per seed {[round(v, 4) for v in s['ridge_test_rmse']]} %")
    ratios = summary["test_rmse_ratio"]
    print(f"default / planned length only: {[round(r, 3) for r in ratios]}")


if __name__ == "__main__":
    main()
