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
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.protocol import REPO
from service.atomic import write_atomic
from service.registry import Registry
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import load_dataset
from training.experiment import RunConfig, run_experiment
from training.publish import publish
from training.simulator import simulate
from training.spec import load_spec

# POST the body in $BODY; with $RATE set, pace requests on a fixed schedule of $RATE per
# second (per wrk thread): each request waits for the next free slot, never for a reply.
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY"), "r")
wrk.body = f:read("*a")
f:close()
local rate = tonumber(os.getenv("RATE") or "0")
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } softsensor_timespec;
    int clock_gettime(int clk_id, softsensor_timespec *tp);
  ]]
  local ts = ffi.new("softsensor_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval, start, sent = 1000 / rate, nil, 0
  function delay()
    local now = now_ms()
    start = start or now
    local due = start + sent * interval
    sent = sent + 1
    return math.max(0, math.floor(due - now + 0.5))
  end
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (what the kernel charges it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def make_model(work: Path) -> tuple[Path, list[str]]:
    """Two simulated days of Column A, a short CA training, registered as column_a/bench."""
    data, spec = simulate(2, 3, work / "column.csv")
    ds = load_dataset(load_spec(spec), data)
    cfg = RunConfig(
        network=NetworkConfig(), train=TrainConfig(epochs=30, progress=False), ca=CAConfig()
    )
    registry = Registry(work / "models")
    publish(ds, run_experiment(ds, cfg), registry, "column_a", version="bench")
    card = registry.verify("column_a", "bench")
    return data, [s.name for s in card.signals if s.used and s.derived_from is None]


def run_wrk(
    url: str, body: Path, lua: Path, seconds: float, conc: int, rate: float | None
) -> dict[str, Any]:
    """One wrk run; ``rate`` paces it (None: as fast as the server answers)."""
    env = {**os.environ, "BODY": str(body), "RATE": f"{rate:.3f}" if rate else "0"}
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{seconds:.0f}s", "--timeout", "10s", "--latency"]
    out = subprocess.run(
        [*cmd, "-s", str(lua), url], env=env, capture_output=True, text=True, check=True
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, flags=re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": requests,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
    }


def bodies(work: Path, data: Path, raw: list[str], batch: int) -> dict[str, Path]:
    """The single-row body (latest sample, no timestamp) and a columnar window of ``batch``
    rows with timestamps (stateless: the same body may be sent again and again)."""
    frame = np.genfromtxt(data, delimiter=",", names=True, dtype=None, encoding="utf-8")
    last = {s: float(frame[s][-1]) for s in raw}
    single = work / "single.json"
    single.write_text(json.dumps({"model": "column_a", "records": [{"values": last}]}))
    window = work / "batch.json"
    stamps = (2.0e9 + 60.0 * np.arange(batch)).tolist()
    columns = {s: frame[s][-batch:].astype(float).tolist() for s in raw}
    window.write_text(json.dumps({"model": "column_a", "timestamp": stamps, "columns": columns}))
    return {"single_row": single, "batch": window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="paced run per kind")
    parser.add_argument("--probe-seconds", type=float, default=10, help="max-throughput run")
    parser.add_argument("--share", type=float, default=0.8, help="paced rate / max rate")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100, help="rows per batch request")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="softsensor-load-"))
    data, raw = make_model(work)
    lua = work / "load.lua"
    lua.write_text(LUA)
    paths = bodies(work, data, raw, args.batch)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOFTSENSOR_WATCH_INTERVAL_S": "5",  # as in production: the watcher runs throughout
    }
    cmd = [sys.executable, "-m", "training.cli", "serve", "--registry", str(work / "models")]
    cmd += ["--state-dir", str(work / "state"), "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the service did not become ready")
            time.sleep(0.2)
        predict = url + "/v1/predict"
        for kind, body in paths.items():
            run_wrk(predict, body, lua, 3, args.concurrency, None)  # warm-up
            peak = run_wrk(predict, body, lua, args.probe_seconds, args.concurrency, None)
            target = args.share * peak["rps"]
            rss_before = rss_kib(server.pid)
            paced = run_wrk(predict, body, lua, args.seconds, args.concurrency, target)
            rss_after = rss_kib(server.pid)
            results[kind] = {
                "max_rps": peak["rps"],
                "max_run": peak,
                "target_rps": target,
                "paced": paced,
                "rows_per_request": 1 if kind == "single_row" else args.batch,
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "rss_growth": rss_after / rss_before - 1,
            }
            print(
                f"{kind}: max {peak['rps']:.0f} req/s; {args.seconds:.0f} s at {target:.0f} "
                f"req/s: achieved {paced['rps']:.0f}, p50 {paced['p50_ms']:.2f} ms, p99 "
                f"{paced['p99_ms']:.2f} ms, non-2xx {paced['non_2xx']}, socket errors "
                f"{paced['socket_errors']}, RSS {rss_before} -> {rss_after} KiB "
                f"({rss_after / rss_before - 1:+.1%})"
            )
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


if __name__ == "__main__":
    main()
