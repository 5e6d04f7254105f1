"""Sustained load at 80 % of the measured maximum: errors, latency and memory over 60 s.

For single-row requests (one record, as a historian polling sends) and for batch requests
(``--batch`` rows in columns), against one real ``softsensor serve`` process (one uvicorn
worker) on loopback:

1. warm up, then measure the maximum throughput with wrk (closed loop, ``--concurrency``
   connections, ``--probe-seconds``);
2. run ``--seconds`` at 80 % of that rate, paced by a wrk Lua script: ``delay()`` holds each
   request until its slot on a fixed schedule (LuaJIT's ffi reads the monotonic clock), so
   the offered rate is fixed whatever the latency, and wrk itself stays far from a CPU's
   worth of work on a 2-core machine;
3. record requests, non-2xx responses and socket errors, p50/p99 latency, and the server's
   RSS (``VmRSS``) before and after the paced run.

Writes ``bench/results/load/results.json``. Needs ``wrk`` (Debian package ``wrk``, built
with LuaJIT). It makes its own model, as ``bench/service.py`` does.

    python -m bench.load --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.ports import free_port
from bench.protocol import REPO
from bench.wrk import (
    LUA,
    latest_values,
    make_model,
    raw_signals,
    read_columns,
    require_wrk,
    rss_kib,
    run_wrk,
)
from service.contracts.atomic import write_atomic


def bodies(work: Path, data: Path, raw: list[str], batch: int) -> dict[str, Path]:
    """The single-row body (latest sample, no timestamp) and a columnar window of ``batch``
    rows with timestamps (stateless: the same body may be sent again and again)."""
    frame = read_columns(data)
    last = latest_values(frame, raw)
    single = work / "single.json"
    single.write_text(json.dumps({"model": "column_a", "records": [{"values": last}]}))
    window = work / "batch.json"
    # A day ago, one minute apart: the service refuses rows dated beyond its clock.
    stamps = (time.time() - 86400.0 + 60.0 * np.arange(batch)).tolist()
    columns = {s: frame[s][-batch:].astype(float).tolist() for s in raw}
    window.write_text(json.dumps({"model": "column_a", "timestamp": stamps, "columns": columns}))
    return {"single_row": single, "batch": window}


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="paced run per kind")
    parser.add_argument("--probe-seconds", type=float, default=10, help="max-throughput run")
    parser.add_argument("--share", type=float, default=0.8, help="paced rate / max rate")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100, help="rows per batch request")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load")
    return parser.parse_args()


def main() -> None:
    args = _parse_args()
    require_wrk()
    work = Path(tempfile.mkdtemp(prefix="softsensor-load-"))
    data, card = make_model(work)
    lua = work / "load.lua"
    lua.write_text(LUA)
    paths = bodies(work, data, raw_signals(card), args.batch)
    port = free_port()
    server = _start_service(work, port)
    results: dict[str, Any] = {}
    try:
        predict = f"http://127.0.0.1:{port}/v1/predict"
        for kind, body in paths.items():
            results[kind] = _load(args, kind, predict, body, lua, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    results["command"] = (
        f"python -m bench.load --seconds {args.seconds:g} --probe-seconds "
        f"{args.probe_seconds:g} --share {args.share:g} --concurrency {args.concurrency} "
        f"--batch {args.batch}"
    )
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    ok = all(
        r["paced"]["non_2xx"] == 0 and r["paced"]["socket_errors"] == 0 and r["rss_growth"] < 0.1
        for k, r in results.items()
        if k in paths
    )
    results["promise_kept"] = ok
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    print(f"promise (no non-2xx, no socket errors, RSS growth < 10 %) kept: {ok}")
    if not ok:
        raise SystemExit(1)


def _start_service(work: Path, port: int) -> subprocess.Popen[bytes]:
    """``softsensor serve`` on the work registry, once it answers ready."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOFTSENSOR_WATCH_INTERVAL_S": "5",  # as in production: the watcher runs throughout
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--registry", str(work / "models")]
    cmd += ["--state-dir", str(work / "state"), "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise SystemExit("the service did not become ready")
        time.sleep(0.2)


def _load(
    args: argparse.Namespace, kind: str, predict: str, body: Path, lua: Path, pid: int
) -> dict[str, Any]:
    """One kind of request: the maximum rate, then ``--share`` of it held for ``--seconds``."""
    run_wrk(predict, body, lua, 3, args.concurrency, None)  # warm-up
    peak = run_wrk(predict, body, lua, args.probe_seconds, args.concurrency, None)
    target = args.share * peak["rps"]
    rss_before = rss_kib(pid)
    paced = run_wrk(predict, body, lua, args.seconds, args.concurrency, target)
    rss_after = rss_kib(pid)
    print(
        f"{kind}: max {peak['rps']:.0f} req/s; {args.seconds:.0f} s at {target:.0f} "
        f"req/s: achieved {paced['rps']:.0f}, p50 {paced['p50_ms']:.2f} ms, p99 "
        f"{paced['p99_ms']:.2f} ms, non-2xx {paced['non_2xx']}, socket errors "
        f"{paced['socket_errors']}, RSS {rss_before} -> {rss_after} KiB "
        f"({rss_after / rss_before - 1:+.1%})"
    )
    return {
        "max_rps": peak["rps"],
        "max_run": peak,
        "target_rps": target,
        "paced": paced,
        "rows_per_request": 1 if kind == "single_row" else args.batch,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_growth": rss_after / rss_before - 1,
    }


if __name__ == "__main__":
    main()
