"""Training cost (benchmark_protocol.md section 5): wall time of one full CA run from the
command line, and CA's per-epoch overhead over dense training at the same epochs.

Dense and CA train side by side in one process, epoch by epoch in alternating order (same data,
seed and number of epochs, early stopping off), so both see the same machine state; the ratio
of their median epoch times is reported, for each of several repeats.

    python -m bench.training_overhead --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.protocol import DEBUTANIZER as DATA
from bench.protocol import DEBUTANIZER_SPEC as SPEC
from bench.protocol import REPO
from service.contracts.atomic import write_atomic
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import load_dataset
from training.experiment import RunConfig, make_pruner
from training.spec import load_spec
from training.trainer import Trainer


def time_cli_run(tau: float) -> float:
    """Wall seconds of `softsensor train --method ca` on the debutanizer, process start to end."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
                "train",
                "--spec",
                str(SPEC),
                "--data",
                str(DATA),
                "--method",
                "ca",
                "--tau",
                str(tau),
                "--quiet",
                "--out",
                tmp,
            ],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=TrainConfig().plan_epochs)
    parser.add_argument("--tau", type=float, default=0.55)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "training")
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"debutanizer data not found at {DATA}; nothing to benchmark")
    ds = load_dataset(load_spec(SPEC), DATA)
    train_cfg = TrainConfig(epochs=args.epochs, early_stopping=10**6, progress=False)
    medians: dict[str, list[float]] = {"dense": [], "ca": []}
    for _ in range(args.repeats):
        trainers = {
            method: Trainer(
                ds.train.x,
                ds.train.y,
                ds.validation.x,
                ds.validation.y,
                NetworkConfig(),
                make_pruner(RunConfig(method=method, ca=replace(CAConfig(), tau=args.tau))),
                train_cfg,
            )
            for method in ("dense", "ca")
        }
        for epoch in range(args.epochs):
            order = ("dense", "ca") if epoch % 2 == 0 else ("ca", "dense")
            for method in order:
                trainers[method].run_epoch()
        for method, trainer in trainers.items():
            medians[method].append(statistics.median(h.seconds for h in trainer.history))
    ratios = [c / d for c, d in zip(medians["ca"], medians["dense"], strict=True)]
    walls = [time_cli_run(args.tau) for _ in range(args.repeats)]
    result = {
        "command": f"python -m bench.training_overhead --repeats {args.repeats} "
        f"--epochs {args.epochs} --tau {args.tau}",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "dense_epoch_seconds": medians["dense"],
        "ca_epoch_seconds": medians["ca"],
        "ca_over_dense_ratio": ratios,
        "ca_over_dense_ratio_median": statistics.median(ratios),
        "cli_ca_run_wall_seconds": walls,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "overhead.json", json.dumps(result, indent=1) + "\n")
    print(
        f"dense s/epoch {statistics.median(medians['dense']):.4f}  "
        f"CA s/epoch {statistics.median(medians['ca']):.4f}  "
        f"ratio {statistics.median(ratios):.3f} (runs {', '.join(f'{r:.3f}' for r in ratios)})"
    )
    print(f"one CA run from the CLI: {', '.join(f'{w:.1f}' for w in walls)} s wall")


if __name__ == "__main__":
    main()
