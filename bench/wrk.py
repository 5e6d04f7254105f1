"""What the service benchmarks share: the model they serve, wrk and its Lua script, and the
server's port and memory.

wrk is the load generator (Debian package ``wrk``, built with LuaJIT): it costs far less CPU
per request than a Python client, which matters on a 2-core machine where it shares the
cores with the server it measures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from service.contracts.card import ModelCard
from service.contracts.registry import Registry
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


def require_wrk() -> None:
    """Stop with the install command when the load generator is missing."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (what the kernel charges it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def make_model(work: Path) -> tuple[Path, ModelCard]:
    """Two simulated days of Column A, a short CA training, registered as column_a/bench."""
    data, spec = simulate(2, 3, work / "column.csv")
    ds = load_dataset(load_spec(spec), data)
    cfg = RunConfig(
        network=NetworkConfig(), train=TrainConfig(epochs=30, progress=False), ca=CAConfig()
    )
    registry = Registry(work / "models")
    publish(ds, run_experiment(ds, cfg), registry, "column_a", version="bench")
    return data, registry.verify("column_a", "bench")


def raw_signals(card: ModelCard) -> list[str]:
    """What a historian sends the model: its measured signals."""
    return [s.name for s in card.signals if s.used and s.derived_from is None]


def read_columns(data: Path) -> Any:
    """The model's training file as named columns (numpy's structured array)."""
    return np.genfromtxt(data, delimiter=",", names=True, dtype=None, encoding="utf-8")


def latest_values(frame: Any, signals: list[str]) -> dict[str, float]:
    """The last row of ``read_columns``' frame, signal by signal: a one-row request."""
    return {s: float(frame[s][-1]) for s in signals}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far, from ``/proc``.

    Requests served per CPU second is what a server would do on a core of its own: on a
    shared machine, where the wall clock also measures everyone else, it is the steadier
    figure to compare two servers by.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, body: Path, lua: Path, seconds: float, conc: int, rate: float | None
) -> dict[str, Any]:
    """One wrk run; ``rate`` paces it (None: as fast as the server answers)."""
    env = {**os.environ, "BODY": str(body), "RATE": f"{rate:.3f}" if rate else "0"}
    duration = f"-d{max(1, round(seconds))}s"  # wrk refuses -d0s
    cmd = ["wrk", "-t1", f"-c{conc}", duration, "--timeout", "10s", "--latency"]
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
