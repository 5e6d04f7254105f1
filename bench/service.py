"""Service benchmarks (benchmark_protocol.md section 4), all in one run on this machine:

1. one-row predictions over HTTP keep-alive at fixed concurrency: the service against the
   minimal reference app (``bench/reference_app.py``: FastAPI + onnxruntime, no validation,
   no metrics), one worker each, same load generator (wrk), measured alternately;
2. batch predictions of 1k, 10k and 100k rows end to end, against onnxruntime alone on the
   same rows;
3. the serving process's RSS after warm-up and after 100k more requests.

Needs ``wrk`` (Debian package ``wrk``). It makes its own model: two simulated days of
Column A, a short CA training, exported and registered in a temporary registry.

    python -m bench.service --rounds 3 --seconds 10 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.protocol import REPO
from bench.wrk import LUA, free_port, make_model, raw_signals, rss_kib, run_wrk
from service.atomic import write_atomic
from service.registry import MODEL_FILE, Registry
from service.runtime import load_model


def start(cmd: list[str], env: dict[str, str], port: int, path: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start: {' '.join(cmd)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rss-requests", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="softsensor-bench-"))
    data, card = make_model(work)
    lua = work / "post.lua"
    lua.write_text(LUA)
    frame = np.genfromtxt(data, delimiter=",", names=True, dtype=None, encoding="utf-8")
    raw = raw_signals(card)
    last = {s: float(frame[s][-1]) for s in raw}
    ours_body = work / "ours.json"
    ours_body.write_text(json.dumps({"model": "column_a", "records": [{"values": last}]}))
    ref_body = work / "ref.json"
    ref_body.write_text(json.dumps({"x": [[r.mean for r in card.reference]]}))
    model_path = Registry(work / "models").version_dir("column_a", "bench") / MODEL_FILE

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOFTSENSOR_BENCH_MODEL": str(model_path),
        "SOFTSENSOR_WATCH_INTERVAL_S": "0",
        "SOFTSENSOR_MAX_BATCH_ROWS": "200000",
        "SOFTSENSOR_MAX_BODY_BYTES": str(256 << 20),
    }
    ref_port, our_port = free_port(), free_port()
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--log-level",
        "warning",
        "--no-access-log",
        "--workers",
        "1",
    ]
    ref = start(
        [*uvicorn, "bench.reference_app:create", "--port", str(ref_port)], env, ref_port, "/docs"
    )
    ours = start(
        [
            sys.executable,
            "-m",
            "training.cli",
            "serve",
            "--registry",
            str(work / "models"),
            "--state-dir",
            str(work / "state"),
            "--port",
            str(our_port),
        ],
        env,
        our_port,
        "/v2/health/live",
    )
    results: dict[str, Any] = {"single_row": {"reference": [], "service": []}}
    try:
        ref_url = f"http://127.0.0.1:{ref_port}/predict"
        our_url = f"http://127.0.0.1:{our_port}/v1/predict"
        for url, body in ((ref_url, ref_body), (our_url, ours_body)):  # warm-up
            run_wrk(url, body, lua, 2, args.concurrency, None)
        rss_warm = rss_kib(ours.pid)
        for _ in range(args.rounds):
            results["single_row"]["reference"].append(
                run_wrk(ref_url, ref_body, lua, args.seconds, args.concurrency, None)
            )
            results["single_row"]["service"].append(
                run_wrk(our_url, ours_body, lua, args.seconds, args.concurrency, None)
            )
        rss_before = rss_kib(ours.pid)
        rate = statistics.median(r["rps"] for r in results["single_row"]["service"])
        soak_s = min(900.0, 1.25 * args.rss_requests / rate)  # wrk runs by time, not count
        soak = run_wrk(our_url, ours_body, lua, soak_s, args.concurrency, None)
        rss_after = rss_kib(ours.pid)
        results["rss"] = {
            "after_warmup_kib": rss_warm,
            "before_soak_kib": rss_before,
            "after_soak_kib": rss_after,
            "soak": soak,
            "growth_vs_warmup": rss_after / rss_warm - 1,
        }
        batch = []
        session_x = None
        for n in (1_000, 10_000, 100_000):
            reps = int(np.ceil(n / len(frame)))
            cols = {s: np.tile(frame[s], reps)[:n].tolist() for s in raw}
            times = []
            with httpx.Client(timeout=300) as client:
                for rep in range(3):  # new sample times each time: live data, not a backfill
                    stamps = (2.0e9 + 60.0 * (np.arange(n) + (rep + 1) * 10 * n)).tolist()
                    payload = json.dumps(
                        {"model": "column_a", "timestamp": stamps, "columns": cols}
                    ).encode()
                    t0 = time.perf_counter()
                    r = client.post(  # returns once the whole answer has arrived
                        our_url, content=payload, headers={"content-type": "application/json"}
                    )
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text[:300]
                    assert len(r.json()["estimate"]) == n  # parsed outside the timing
            matrix = np.column_stack([np.asarray(cols[s]) for s in raw])
            loaded = load_model(Registry(work / "models"), "column_a", "bench")
            session_x = loaded.plan.assemble(
                np.vstack([np.repeat(matrix[:1], loaded.history, axis=0), matrix])
            )
            ort_times = []
            for _ in range(3):
                t0 = time.perf_counter()
                loaded.predict(session_x)
                ort_times.append(time.perf_counter() - t0)
            http_s, ort_s = statistics.median(times), statistics.median(ort_times)
            batch.append(
                {
                    "rows": n,
                    "body_bytes": len(payload),
                    "http_seconds": http_s,
                    "rows_per_second": n / http_s,
                    "onnxruntime_seconds": ort_s,
                    "onnxruntime_rows_per_second": n / ort_s,
                }
            )
        results["batch"] = batch
    finally:
        for proc in (ref, ours):
            proc.terminate()
            proc.wait(timeout=20)
    rows = results["single_row"]
    ratios = [s["rps"] / r["rps"] for s, r in zip(rows["service"], rows["reference"], strict=True)]
    results["single_row"]["throughput_ratio"] = ratios
    results["single_row"]["throughput_ratio_median"] = statistics.median(ratios)
    results["command"] = (
        f"python -m bench.service --rounds {args.rounds} --seconds "
        f"{args.seconds:g} --concurrency {args.concurrency}"
    )
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    for name in ("reference", "service"):
        rr = rows[name]
        print(
            f"{name:9s} rps {[round(r['rps']) for r in rr]}  p50 ms "
            f"{[r['p50_ms'] for r in rr]}  p99 ms {[r['p99_ms'] for r in rr]}  "
            f"non-2xx {sum(r['non_2xx'] for r in rr)}"
        )
    print(f"throughput ratio service/reference: {[round(r, 2) for r in ratios]}")
    for b in results["batch"]:
        print(
            f"batch {b['rows']:>6} rows: {b['rows_per_second']:,.0f} rows/s over HTTP, "
            f"onnxruntime alone {b['onnxruntime_rows_per_second']:,.0f} rows/s"
        )
    r = results["rss"]
    print(
        f"RSS after warm-up {r['after_warmup_kib']} KiB, after "
        f"{r['soak']['requests']} more requests {r['after_soak_kib']} KiB "
        f"({r['growth_vs_warmup']:+.1%})"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
