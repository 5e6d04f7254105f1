"""Exported model size and inference speed (issue 4): ONNX bytes against the same architecture
exported dense, at CA's default threshold and at one set for >= 70% pruning; then the time to
load the model into onnxruntime and to score 100k rows.

    python -m bench.onnx_model --seeds 5 --taus 0.5 0.65
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
import onnx
import onnxruntime as ort

from bench.protocol import DEBUTANIZER, DEBUTANIZER_SPEC, REPO
from service.contracts.atomic import write_atomic
from training.config import CAConfig, TrainConfig
from training.data import load_dataset
from training.experiment import RunConfig, run_experiment
from training.export import INPUT_NAME
from training.publish import export_run
from training.spec import load_spec


def size_run(job: tuple[float, int]) -> dict[str, Any]:
    tau, seed = job
    ds = load_dataset(load_spec(DEBUTANIZER_SPEC), DEBUTANIZER, seed=seed)
    cfg = RunConfig(seed=seed, train=TrainConfig(progress=False), ca=replace(CAConfig(), tau=tau))
    report = run_experiment(ds, cfg)
    exported = export_run(ds, report)
    return {
        "tau": tau,
        "seed": seed,
        "pruning_rate": report.metrics["pruning_rate"],
        "onnx_bytes": len(exported.onnx_bytes),
        "dense_onnx_bytes": exported.dense_onnx_bytes,
        "ratio": len(exported.onnx_bytes) / exported.dense_onnx_bytes,
        "sparse_weights": exported.sparse_initializers,
        "parity": exported.max_parity_error,
        "test_rmse": report.metrics["test_rmse"],
        "model": exported.onnx_bytes.hex(),
    }


def time_inference(model: bytes, n_features: int, rows: int, repeats: int) -> dict[str, float]:
    """Session creation and one batch of ``rows``, medians over repeats (one thread)."""
    x = np.random.default_rng(0).uniform(0, 1, size=(rows, n_features)).astype(np.float32)
    loads, runs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        t1 = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        t2 = time.perf_counter()
        loads.append(t1 - t0)
        runs.append(t2 - t1)
    run = statistics.median(runs)
    return {
        "load_seconds": statistics.median(loads),
        "predict_seconds": run,
        "rows": rows,
        "rows_per_second": rows / run,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--taus", type=float, nargs="+", default=[0.5, 0.65])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "onnx")
    args = parser.parse_args()
    if not DEBUTANIZER.is_file():
        raise SystemExit(f"debutanizer data not found at {DEBUTANIZER}; nothing to benchmark")
    jobs = [(tau, seed) for tau in args.taus for seed in range(args.seeds)]
    with ProcessPoolExecutor(2) as pool:
        runs = list(pool.map(size_run, jobs))
    model = bytes.fromhex(runs[0]["model"])
    graph_input = onnx.load_from_string(model).graph.input[0]
    n_features = graph_input.type.tensor_type.shape.dim[1].dim_value
    timing = time_inference(model, n_features, args.rows, args.repeats)
    summary = {}
    for tau in args.taus:
        group = [r for r in runs if r["tau"] == tau]
        summary[str(tau)] = {
            key: statistics.fmean(r[key] for r in group)
            for key in ("pruning_rate", "onnx_bytes", "dense_onnx_bytes", "ratio", "test_rmse")
        } | {
            "ratio_max": max(r["ratio"] for r in group),
            "pruning_rate_min": min(r["pruning_rate"] for r in group),
        }
    result = {
        "command": f"python -m bench.onnx_model --seeds {args.seeds} --taus "
        + " ".join(map(str, args.taus))
        + f" --rows {args.rows} --repeats {args.repeats}",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "summary": summary,
        "inference": timing,
        "runs": [{k: v for k, v in r.items() if k != "model"} for r in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "results.json", json.dumps(result, indent=1) + "\n")
    for tau, s in summary.items():
        print(
            f"tau {tau}: pruned {s['pruning_rate']:.1%} (min {s['pruning_rate_min']:.1%}), "
            f"ONNX {s['onnx_bytes']:.0f} B vs dense {s['dense_onnx_bytes']:.0f} B: "
            f"ratio {s['ratio']:.3f} (max {s['ratio_max']:.3f}), test RMSE {s['test_rmse']:.4f}"
        )
    print(
        f"load {timing['load_seconds'] * 1e3:.1f} ms; {args.rows} rows in "
        f"{timing['predict_seconds'] * 1e3:.1f} ms = {timing['rows_per_second']:.3g} rows/s"
    )


if __name__ == "__main__":
    main()
