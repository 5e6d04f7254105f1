"""Service benchmarks (benchmark_protocol.md section 4), all in one run on this machine:

1. one-row predictions over HTTP keep-alive at fixed concurrency: the service against the
   minimal reference app (``bench/reference_app.py``: FastAPI + onnxruntime, no validation,
   no metrics), one worker each, same load generator (wrk), measured alternately; a third
   server, the service with coalescing off (``SOFTSENSOR_COALESCE_REQUESTS=1``), shows what
   scoring the requests that arrive together in one call gives; a fourth, a bare ASGI app on
   the same uvicorn (``bench/bare_app.py``), is the floor: its rate over the reference's is
   the most any app on that HTTP server could reach (the ceiling of the ratio);
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench.ports import free_port
from bench.protocol import REPO
from bench.wrk import (
    LUA,
    cpu_seconds,
    latest_values,
    make_model,
    raw_signals,
    read_columns,
    require_wrk,
    rss_kib,
    run_wrk,
)
from service.contracts.atomic import write_atomic
from service.contracts.registry import MODEL_FILE, Registry
from service.scoring.runtime import load_model


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


def batch_sizes(port: int) -> tuple[float, float]:
    """(requests, calls) the service has scored so far, from its own Prometheus metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name == "softsensor_predict_batch_requests":
            found = {s.name.rsplit("_", 1)[-1]: s.value for s in family.samples}
    return found.get("sum", 0.0), found.get("count", 0.0)


def _per_row_us(fn: Any, rows: int, repeat: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat / rows * 1e6


def validity_cost(model: Any) -> dict[str, dict[str, float]]:
    """Microseconds per row of the per-row checks, in this process: the input validity
    (training range, T2, SPE), the status rules, and a stream's frozen and drift trackers."""
    return {str(n): _cost_at(model, n) for n in (1, 16, 10_000)}


def _cost_at(model: Any, n: int) -> dict[str, float]:
    from service.monitoring.alarms import AlarmConfig, SensorDrift
    from service.monitoring.changes import ChangeTracker
    from service.monitoring.redundancy import RedundancyDrift, RedundancyModel
    from service.scoring.status import RowEvidence, SignalEvidence, decide
    from service.scoring.validity import input_validity

    validity = input_validity(model.card)
    assert validity is not None
    config = AlarmConfig.from_card(model.card, model.raw_signals, 600.0)
    rng = np.random.default_rng(0)
    means = np.array([r.mean for r in model.card.reference])
    x = means + 0.01 * rng.normal(size=(n, len(means)))
    raw = rng.normal(size=(n, len(model.raw_signals)))
    times = np.arange(n, dtype=np.float64)
    a = validity.assess(x)
    names = model.raw_signals
    flags = np.zeros((n, len(names)), dtype=bool)
    drift = SensorDrift(config) if config.drift_limit is not None else None
    tracker = ChangeTracker(len(names))
    clock = [0.0]

    def track() -> None:
        clock[0] += n
        tracker.observe(raw, times + clock[0])
        if drift is not None and a.residual is not None:
            drift.observe(a.residual)

    def status() -> None:
        decide(
            n,
            [SignalEvidence(r, names, flags) for r in ("out_of_range", "imputed", "frozen")]
            + [SignalEvidence("outside_training", validity.groups, a.outside, bad_above=3)],
            [RowEvidence(r, a.t2 > 1e9) for r in ("missing_history", "t2", "spe", "clamped")],
        )

    repeat = 2000 if n < 100 else 20
    cost = {
        "assess": _per_row_us(lambda: validity.assess(x), n, repeat),
        "status": _per_row_us(status, n, repeat),
        "trackers": _per_row_us(track, n, repeat),
    }
    block = model.card.calibration.redundancy if model.card.calibration else None
    red = RedundancyModel.from_card(block, model.raw_signals) if block is not None else None
    if red is not None:  # the sensor-redundancy test, one stream, rows as a request brings
        detector = RedundancyDrift(red)
        cost["redundancy"] = _per_row_us(lambda: detector.observe(raw), n, repeat)
    return cost | {"total": sum(cost.values())}


@dataclass
class Servers:
    """The three servers of one run, started side by side, and what each is asked."""

    procs: dict[str, subprocess.Popen[bytes]]
    urls: dict[str, tuple[str, Path]]  # name -> (predict URL, body file)
    our_port: int

    def stop(self, name: str | None = None) -> None:
        for key, proc in self.procs.items():
            if (name is None or key == name) and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rss-requests", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service")
    return parser.parse_args()


def _start_servers(work: Path, card: Any, last: dict[str, float]) -> Servers:
    """The reference app, the service, and the service scoring requests one by one."""
    ours_body, ref_body = work / "ours.json", work / "ref.json"
    ours_body.write_text(json.dumps({"model": "column_a", "records": [{"values": last}]}))
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
    ref_port, our_port, solo_port = free_port(), free_port(), free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "--log-level", "warning"]
    uvicorn += ["--no-access-log", "--workers", "1", "bench.reference_app:create"]
    ref = start([*uvicorn, "--port", str(ref_port)], env, ref_port, "/docs")
    bare_port = free_port()
    bare_cmd = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    bare_cmd += ["--workers", "1", "--lifespan", "off", "bench.bare_app:app"]
    bare = start([*bare_cmd, "--port", str(bare_port)], env, bare_port, "/")

    def serve(port: int, state: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "service.cli", "serve", "--registry", str(work / "models")]
        cmd += ["--state-dir", str(work / state), "--port", str(port)]
        return start(cmd, {**env, **extra}, port, "/v2/health/live")

    ours = serve(our_port, "state", {})
    solo = serve(solo_port, "state-solo", {"SOFTSENSOR_COALESCE_REQUESTS": "1"})
    return Servers(
        {"reference": ref, "service": ours, "service_one_by_one": solo, "bare_asgi": bare},
        {
            "reference": (f"http://127.0.0.1:{ref_port}/predict", ref_body),
            "bare_asgi": (f"http://127.0.0.1:{bare_port}/", ref_body),
            "service": (f"http://127.0.0.1:{our_port}/v1/predict", ours_body),
            "service_one_by_one": (f"http://127.0.0.1:{solo_port}/v1/predict", ours_body),
        },
        our_port,
    )


def _single_row(args: argparse.Namespace, servers: Servers, lua: Path) -> dict[str, Any]:
    """One-row requests to each server in turn, ``rounds`` times; the CPU each used."""
    rows: dict[str, Any] = {name: [] for name in servers.urls}
    for url, body in servers.urls.values():  # warm-up
        run_wrk(url, body, lua, 2, args.concurrency, None)
    rows["rss_warm_kib"] = rss_kib(servers.procs["service"].pid)
    calls_before = batch_sizes(servers.our_port)
    for _ in range(args.rounds):
        for name, (url, body) in servers.urls.items():
            cpu = cpu_seconds(servers.procs[name].pid)
            run = run_wrk(url, body, lua, args.seconds, args.concurrency, None)
            cpu = cpu_seconds(servers.procs[name].pid) - cpu
            run["cpu_us_per_request"] = 1e6 * cpu / max(run["requests"], 1)
            rows[name].append(run)
    calls_after = batch_sizes(servers.our_port)
    rows["requests_per_call"] = (calls_after[0] - calls_before[0]) / (
        calls_after[1] - calls_before[1]
    )
    return rows


def _soak(args: argparse.Namespace, servers: Servers, lua: Path, rows: dict[str, Any]) -> Any:
    """The service's RSS before and after ``rss_requests`` more requests."""
    pid = servers.procs["service"].pid
    url, body = servers.urls["service"]
    before = rss_kib(pid)
    rate = statistics.median(r["rps"] for r in rows["service"])
    soak_s = min(900.0, 1.25 * args.rss_requests / rate)  # wrk runs by time, not count
    soak = run_wrk(url, body, lua, soak_s, args.concurrency, None)
    after = rss_kib(pid)
    warm = rows.pop("rss_warm_kib")
    return {
        "after_warmup_kib": warm,
        "before_soak_kib": before,
        "after_soak_kib": after,
        "soak": soak,
        "growth_vs_warmup": after / warm - 1,
    }


def _batch(url: str, frame: Any, raw: list[str], work: Path, n: int) -> dict[str, Any]:
    """An ``n``-row columnar batch over HTTP, against onnxruntime alone on the same rows."""
    reps = int(np.ceil(n / len(frame)))
    cols = {s: np.tile(frame[s], reps)[:n].tolist() for s in raw}
    times = []
    with httpx.Client(timeout=300) as client:
        # New sample times each time: live data, not a backfill. The first post is a
        # warm-up (the process grows its heap for the size), then five are timed.
        past = time.time() - 60.0 * 70 * n  # in the past: the service refuses the future
        for rep in range(6):
            stamps = (past + 60.0 * (np.arange(n) + (rep + 1) * 10 * n)).tolist()
            payload = json.dumps({"model": "column_a", "timestamp": stamps, "columns": cols})
            t0 = time.perf_counter()
            r = client.post(  # returns once the whole answer has arrived
                url, content=payload.encode(), headers={"content-type": "application/json"}
            )
            if rep:
                times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text[:300]
            assert len(r.json()["estimate"]) == n  # parsed outside the timing
    matrix = np.column_stack([np.asarray(cols[s]) for s in raw])
    loaded = load_model(Registry(work / "models"), "column_a", "bench")
    x = loaded.plan.assemble(np.vstack([np.repeat(matrix[:1], loaded.history, axis=0), matrix]))
    ort_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        loaded.predict(x)
        ort_times.append(time.perf_counter() - t0)
    http_s, ort_s = statistics.median(times), statistics.median(ort_times)
    return {
        "rows": n,
        "body_bytes": len(payload),
        "http_seconds": http_s,
        "rows_per_second": n / http_s,
        "onnxruntime_seconds": ort_s,
        "onnxruntime_rows_per_second": n / ort_s,
    }


def _ratios(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Service over reference, round by round: wall-clock rate and rate per CPU second."""
    rows = results["single_row"]

    def ratios_of(name: str, key: str = "rps") -> list[float]:
        pairs = zip(rows[name], rows["reference"], strict=True)
        if key == "rps":
            return [s["rps"] / r["rps"] for s, r in pairs]
        return [r[key] / s[key] for s, r in pairs]  # a cost: the reference's over ours

    rows["throughput_ratio"] = ratios_of("service")
    rows["cpu_ratio"] = ratios_of("service", "cpu_us_per_request")
    rows["throughput_ratio_median"] = statistics.median(rows["throughput_ratio"])
    rows["one_by_one_ratio"] = ratios_of("service_one_by_one")
    rows["ceiling_ratio"] = ratios_of("bare_asgi")  # no app on this HTTP server does better
    results["command"] = (
        f"python -m bench.service --rounds {args.rounds} --seconds "
        f"{args.seconds:g} --concurrency {args.concurrency}"
    )
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def _print(results: dict[str, Any]) -> None:
    rows = results["single_row"]
    names = ("reference", "service", "service_one_by_one", "bare_asgi")
    for name in names:
        rr = rows[name]
        print(
            f"{name:18s} rps {[round(r['rps']) for r in rr]}  p50 ms "
            f"{[r['p50_ms'] for r in rr]}  p99 ms {[r['p99_ms'] for r in rr]}  "
            f"non-2xx {sum(r['non_2xx'] for r in rr)}"
        )
    print(f"throughput ratio service/reference: {[round(r, 2) for r in rows['throughput_ratio']]}")
    print(
        "  per CPU second of the server process (what a core of its own gives): "
        f"{[round(r, 2) for r in rows['cpu_ratio']]}; CPU us per request "
        + ", ".join(
            f"{name} {statistics.median(r['cpu_us_per_request'] for r in rows[name]):.0f}"
            for name in names
        )
    )
    print(
        "  ceiling (a bare ASGI app on the same uvicorn, over the reference): "
        f"{[round(r, 2) for r in rows['ceiling_ratio']]}"
    )
    print(
        "  with coalescing off: "
        f"{[round(r, 2) for r in rows['one_by_one_ratio']]}; coalesced requests per "
        f"onnxruntime call: {rows['requests_per_call']:.1f}"
    )
    for b in results["batch"]:
        print(
            f"batch {b['rows']:>6} rows: {b['rows_per_second']:,.0f} rows/s over HTTP, "
            f"onnxruntime alone {b['onnxruntime_rows_per_second']:,.0f} rows/s"
        )
    for n, cost in results["validity_cost_us_per_row"].items():
        print(
            f"per-row checks, {n:>5}-row batches: "
            + ", ".join(f"{k} {v:.2f} us" for k, v in cost.items())
        )
    r = results["rss"]
    print(
        f"RSS after warm-up {r['after_warmup_kib']} KiB, after "
        f"{r['soak']['requests']} more requests {r['after_soak_kib']} KiB "
        f"({r['growth_vs_warmup']:+.1%})"
    )


def main() -> None:
    args = _arguments()
    require_wrk()
    work = Path(tempfile.mkdtemp(prefix="softsensor-bench-"))
    data, card = make_model(work)
    lua = work / "post.lua"
    lua.write_text(LUA)
    frame = read_columns(data)
    raw = raw_signals(card)
    servers = _start_servers(work, card, latest_values(frame, raw))
    results: dict[str, Any] = {}
    try:
        results["single_row"] = _single_row(args, servers, lua)
        servers.stop("service_one_by_one")
        results["rss"] = _soak(args, servers, lua, results["single_row"])
        url = servers.urls["service"][0]
        results["batch"] = [_batch(url, frame, raw, work, n) for n in (1_000, 10_000, 100_000)]
        results["validity_cost_us_per_row"] = validity_cost(
            load_model(Registry(work / "models"), "column_a", "bench")
        )
    finally:
        servers.stop()
    _ratios(results, args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    _print(results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
