"""The two state engines side by side: lab-result ingestion and predict throughput of
`softsensor serve` on SQLite (embedded) and on PostgreSQL (shared), in one run.

Per round and engine, one server (one uvicorn worker) on a fresh store, measured with wrk:

1. ``predict_window``: one-row requests without a stream, 16 keep-alive connections (the
   prediction log written, no stream state read or saved);
2. ``predict_stream``: one-row requests of 8 streams, each stream its own wrk process with
   one connection (a stream's requests come one after another, as from a historian), the
   lag history carried by the stream (on PostgreSQL: read when another replica moved it,
   saved with the predictions);
3. ``lab_results``: one lab result per request, 8 streams as above (each result decided and
   committed before its answer: on SQLite fsynced, on PostgreSQL committed under the
   stream's advisory lock).

Engines alternate within each round, so a busy machine slows both alike. The PostgreSQL
server is started here (``bench.pgserver``, fsync on) unless ``--postgres-url`` names one.
Needs ``wrk`` (Debian package ``wrk``).

    python -m bench.state --rounds 3 --seconds 8
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.pgserver import PgServer
from bench.ports import free_port
from bench.protocol import REPO
from bench.service import start
from bench.wrk import (
    LUA,
    latest_values,
    make_model,
    raw_signals,
    read_columns,
    require_wrk,
    run_wrk,
)

STREAMS = 8  # concurrent streams (one wrk process, one connection each)
WINDOW_CONNECTIONS = 16
STEP_S = 1.0  # data time between a stream's rows / lab samples

# Each request of a stream one STEP_S later than the previous: the body's %TIME% replaced.
SEQUENCE_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY"), "r")
local template = f:read("*a")
f:close()
local base, n = {base}, 0
function request()
  n = n + 1
  local body = template:gsub("%%TIME%%", string.format("%.3f", base + n * {step}))
  return wrk.format(nil, nil, nil, body)
end
"""


def sequences(work: Path, tag: str, body: dict[str, Any], base: float) -> list[tuple[Path, Path]]:
    """Per stream a body template and its Lua script (its own data clock from ``base``)."""
    out = []
    for i in range(STREAMS):
        text = json.dumps(body).replace('"@STREAM@"', json.dumps(f"{tag}-{i}"))
        text = text.replace('"@TIME@"', "%TIME%")
        path = work / f"{tag}-{i}.json"
        path.write_text(text)
        lua = work / f"{tag}-{i}.lua"
        lua.write_text(SEQUENCE_LUA.replace("{base}", f"{base:.3f}").replace("{step}", str(STEP_S)))
        out.append((path, lua))
    return out


def parallel(url: str, runs: list[tuple[Path, Path]], seconds: float) -> dict[str, Any]:
    """One wrk process per stream at once; their requests/s summed."""
    with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
        found = list(pool.map(lambda r: run_wrk(url, r[0], r[1], seconds, 1, None), runs))
    return {
        "rps": sum(r["rps"] for r in found),
        "requests": sum(r["requests"] for r in found),
        "non_2xx": sum(r["non_2xx"] for r in found),
        "socket_errors": sum(r["socket_errors"] for r in found),
        "p50_ms": statistics.median(r["p50_ms"] for r in found),
        "p99_ms": max(r["p99_ms"] for r in found),
    }


def measure(
    port: int, work: Path, tag: str, values: dict[str, float], seconds: float
) -> dict[str, Any]:
    """The three loads against one running server."""
    base = time.time() - 20 * 86_400.0  # in the past: nothing is refused as future
    url = f"http://127.0.0.1:{port}"
    window = work / f"{tag}-window.json"
    window.write_text(json.dumps({"model": "column_a", "records": [{"values": values}]}))
    lua = work / "post.lua"
    lua.write_text(LUA)
    record = {"timestamp": "@TIME@", "values": values}
    predict = {"model": "column_a", "stream": "@STREAM@", "records": [record]}
    lab = {"model": "column_a", "results": [{"stream": "@STREAM@", "sample_time": "@TIME@"}]}
    lab["results"][0]["value"] = 1.0  # type: ignore[index]
    return {
        "predict_window": run_wrk(
            f"{url}/v1/predict", window, lua, seconds, WINDOW_CONNECTIONS, None
        ),
        "predict_stream": parallel(
            f"{url}/v1/predict", sequences(work, f"{tag}-p", predict, base), seconds
        ),
        "lab_results": parallel(
            f"{url}/v1/lab-results", sequences(work, f"{tag}-l", lab, base), seconds
        ),
    }


def serve(work: Path, name: str, url: str, env: dict[str, str]) -> tuple[Any, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "training.cli", "serve", "--registry", str(work / "models")]
    cmd += ["--state-dir", str(work / name), "--port", str(port)]
    proc = start(cmd, {**env, "SOFTSENSOR_STATE_URL": url}, port, "/v2/health/ready")
    return proc, port


def fresh_database(server: PgServer | None, url: str | None, name: str) -> str:
    """A new empty database for one server run."""
    import psycopg

    admin = url if url is not None else server.url("postgres")  # type: ignore[union-attr]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + f"/{name}"


def table(results: dict[str, Any]) -> str:
    """The rounds side by side, as markdown."""
    lines = [
        "| load | engine | "
        + " | ".join(f"round {i + 1}" for i in range(len(results["sqlite"])))
        + " |"
    ]
    lines.append("|---|---|" + "---|" * len(results["sqlite"]))
    for load in ("predict_window", "predict_stream", "lab_results"):
        for engine in ("sqlite", "postgresql"):
            cells = [
                f"{r[load]['rps']:.0f} ({r[load]['p50_ms']:.1f} / {r[load]['p99_ms']:.1f})"
                for r in results[engine]
            ]
            lines.append(f"| {load} | {engine} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_rounds(
    args: argparse.Namespace, work: Path, values: dict[str, float], env: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Each round, one server per engine in turn, measured under the same loads."""
    server = None if args.postgres_url else PgServer.start()
    results: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgresql": []}
    try:
        for i in range(args.rounds):
            for engine in ("sqlite", "postgresql"):
                if engine == "sqlite":
                    url = f"sqlite:///{work / f'sqlite-{i}' / 'lab_results.sqlite'}"
                else:
                    url = fresh_database(server, args.postgres_url, f"bench{i}")
                proc, port = serve(work, f"{engine}-{i}", url, env)
                try:
                    results[engine].append(
                        measure(port, work, f"{engine}{i}", values, args.seconds)
                    )
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                print(
                    f"round {i + 1} {engine}: "
                    + ", ".join(f"{k} {v['rps']:.0f}/s" for k, v in results[engine][-1].items()),
                    flush=True,
                )
    finally:
        if server is not None:
            server.destroy()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--postgres-url", default=None, help="a server to use (admin URL)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "state")
    args = parser.parse_args()
    require_wrk()
    work = Path(tempfile.mkdtemp(prefix="softsensor-bench-state-"))
    data, card = make_model(work)
    values = latest_values(read_columns(data), raw_signals(card))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOFTSENSOR_WATCH_INTERVAL_S": "0",
        "SOFTSENSOR_LAB_MAX_AGE_S": "1e10",
    }
    results = run_rounds(args, work, values, env)
    report = {
        "results": results,
        "command": "python -m bench.state " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.machine(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    bad = [
        (engine, load)
        for engine, rounds in results.items()
        for r in rounds
        for load, m in r.items()
        if m["non_2xx"] or m["socket_errors"]
    ]
    if bad:
        raise SystemExit(f"non-2xx answers or socket errors in {sorted(set(bad))}")


if __name__ == "__main__":
    main()
