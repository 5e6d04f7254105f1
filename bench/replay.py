"""The plant replay: every number the running service serves, judged against the truth.

A simulated month of Skogestad's Column A for two units, faults injected into one of them
at known times; the project's default recipe (``softsensor train``) trains on the first
part of unit A; the real service (``softsensor serve``) is started and fed over HTTP the way
a historian feeds it: one row per minute per unit, each its own request, both units on one
model, each analyzer result posted when it is reported (10 minutes after its sample).
After the faults, unit A's historian also marks values bad or uncertain in three periods,
as a plant's does (``bench.replay_quality``). Then the answers are scored against the true
composition (``bench.replay_score``).

    python -m bench.replay                      # the month: docs/replay.md, ~15 min
    python -m bench.replay --days 7 --train-days 4 --out /tmp/replay   # a shorter one

Background operation is the default simulator with two changes, so that "clean" means
normal operation the training data represents: no unprompted stuck periods (a stuck
sensor is the injected fault, at a known time), and the operator holds the internal flows
(L/F, V/F) at their set point instead of wandering them across the whole operating window
within weeks (a new operating point is the injected feed-move fault).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from bench.ports import free_port
from bench.protocol import REPO
from bench.replay_args import add_arguments
from bench.replay_quality import QualityPeriod, quality_schedule, with_qualities
from training.faults import Fault, simulate_with_faults
from training.simulator import (
    TARGET,
    OperatorConfig,
    SensorConfig,
    SimulationConfig,
    spec_dict,
)

UNITS = ("unit-a", "unit-b")  # unit A gets the faults, unit B stays clean
SETTLE_MINUTES = 12 * 60  # after a fault ends, this long is neither clean nor faulty
MODEL = "column_a"


def replay_config() -> SimulationConfig:
    """The default simulation, without unprompted stuck periods or internal-flow wander."""
    base = SimulationConfig()
    sensors = base.sensors
    quiet = SensorConfig(
        trays=sensors.trays,
        temperature=dataclasses.replace(sensors.temperature, frozen_per_day=0.0),
        flow=dataclasses.replace(sensors.flow, frozen_per_day=0.0),
    )
    return dataclasses.replace(
        base, sensors=quiet, operator=dataclasses.replace(OperatorConfig(), internal_share=0.0)
    )


def fault_schedule(start_min: float, replay_min: float) -> tuple[Fault, ...]:
    """The five faults, spread over the replay so clean periods lie between them.

    Positions are fractions of the replay; durations shrink with a short replay.
    """
    scale = min(1.0, replay_min / (9 * 1440))

    def at(share: float, hours: float) -> tuple[float, float]:
        begin = start_min + share * replay_min
        return begin, begin + hours * 60 * scale

    return (
        Fault("stuck", *at(0.055, 3), signal="T21"),
        Fault("drift", *at(0.17, 4), signal="T13", size=0.5 / scale),
        Fault("pressure_step", *at(0.33, 24), size=0.6),
        Fault("analyzer_outage", *at(0.56, 6)),
        Fault("feed_move", *at(0.72, 8), size=1.3),
    )


@dataclass
class Scenario:
    """What is replayed: two units' data, the faults, and where training ends."""

    days: float
    train_days: float
    seeds: tuple[int, int] = (11, 12)
    faults: tuple[Fault, ...] = ()
    qualities: tuple[QualityPeriod, ...] = ()  # unit A's input qualities (bench.replay_quality)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def start_min(self) -> float:
        return self.train_days * 1440

    def build(self) -> Scenario:
        cfg = replay_config()
        self.faults = fault_schedule(self.start_min, (self.days - self.train_days) * 1440)
        self.qualities = quality_schedule(self.start_min, (self.days - self.train_days) * 1440)
        for unit, seed, faults in zip(UNITS, self.seeds, (self.faults, ()), strict=True):
            self.frames[unit] = simulate_with_faults(self.days, seed, cfg, faults).frame
        return self


def train(scenario: Scenario, work: Path) -> tuple[Path, Path]:
    """Unit A's first ``train_days`` through the default ``softsensor train``; returns the
    registry and the training data file."""
    data = work / "train.csv"
    frame = scenario.frames[UNITS[0]].iloc[: round(scenario.start_min)]
    frame.to_csv(data, index=False, lineterminator="\n")
    spec = work / "train.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(replay_config())), encoding="utf-8")
    registry = work / "models"
    cmd = [sys.executable, "-m", "service.cli", "train", "--spec", str(spec), "--data", str(data)]
    cmd += ["--out", str(work / "run"), "--register", MODEL, "--registry", str(registry)]
    subprocess.run([*cmd, "--quiet"], check=True, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL)
    return registry, data


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return env | extra


class Service:
    """A real ``softsensor serve`` process on loopback."""

    def __init__(self, registry: Path, state: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "service.cli", "serve", "--registry", str(registry)]
        cmd += ["--state-dir", str(state), "--port", str(self.port)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=_env(SOFTSENSOR_WATCH_INTERVAL_S="0"), stdout=out, stderr=out
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the service did not get ready; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _records(frame: pd.DataFrame, signals: list[str]) -> Iterator[dict[str, Any]]:
    values = frame[signals].to_numpy(dtype=np.float64).tolist()
    for stamp, row in zip(frame["timestamp"].tolist(), values, strict=True):
        yield {"timestamp": stamp, "values": dict(zip(signals, row, strict=True))}


def replay(scenario: Scenario, url: str, signals: list[str]) -> dict[str, Any]:
    """Feed the replay period minute by minute; returns every answer, per unit."""
    start = round(scenario.start_min)
    answers: dict[str, list[dict[str, Any]]] = {u: [] for u in UNITS}
    labs: dict[str, list[dict[str, Any]]] = {u: [] for u in UNITS}
    streams = {
        u: (_records(f.iloc[start:], signals), f[TARGET].to_numpy()[start:], f["timestamp"])
        for u, f in scenario.frames.items()
    }
    marked = with_qualities(streams[UNITS[0]][0], scenario.qualities, scenario.start_min)
    streams[UNITS[0]] = (marked, *streams[UNITS[0]][1:])
    delay = replay_config().samples(replay_config().analyzer.dead_minutes, "delay")
    with httpx.Client(base_url=url, timeout=30) as client:
        for k in range(len(scenario.frames[UNITS[0]]) - start):
            for unit, (records, analyzer, stamps) in streams.items():
                body = {"model": MODEL, "stream": unit, "records": [next(records)]}
                r = client.post("/v1/predict", json=body)
                answers[unit].append(_row(r))
                if np.isfinite(analyzer[k]):  # a result reported now, for a sample 10 min ago
                    result = {"sample_time": stamps.iloc[start + k - delay], "value": analyzer[k]}
                    lab = client.post(
                        "/v1/lab-results",
                        json={"model": MODEL, "results": [result | {"stream": unit}]},
                    )
                    labs[unit].append({"row": k - delay, **_lab(lab)})
    return {"answers": answers, "labs": labs}


def _row(r: httpx.Response) -> dict[str, Any]:
    if r.status_code != 200:
        return {"error": r.status_code, "detail": r.text[:300]}
    body = r.json()
    row = body["rows"][0]
    return {
        "estimate": row["estimate"],
        "corrected": row["estimate_corrected"],
        "low": row["interval"][0],
        "high": row["interval"][1],
        "status": row["status"],
        "reasons": row["reasons"],
        "bias": body["bias"],
        "alarms": body["alarms"],
    }


def _lab(r: httpx.Response) -> dict[str, Any]:
    if r.status_code != 200:
        return {"error": r.status_code, "detail": r.text[:300]}
    o = r.json()["outcomes"][0]
    return {k: o[k] for k in ("accepted", "reason", "estimate", "residual", "bias")}


def run(
    days: float,
    train_days: float,
    out: Path,
    work: Path | None = None,
    after: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole replay; writes ``out/results.json`` and returns the scorecard. ``after`` is
    called with the service's URL once the replay is done, before the service stops."""
    from bench.replay_score import scorecard

    started = time.perf_counter()
    scenario = Scenario(days, train_days).build()
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        base = work or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        registry, data = train(scenario, base)
        card = json.loads(next(registry.glob(f"{MODEL}/*/card.json")).read_text())
        signals = [s["name"] for s in card["signals"] if s["used"] and not s.get("derived_from")]
        service = Service(registry, base / "state", base / "service.log")
        try:
            served = replay(scenario, service.url, signals)
            if after is not None:
                after(service.url)
        finally:
            service.stop()
        card_path = next(registry.glob(f"{MODEL}/*/card.json"))
        result = scorecard(scenario, served, data, card_path)
    result["seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in result.items() if k != "series"}  # the rows stay out of the file
    (out / "results.json").write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")
    return result


def run_command(args: argparse.Namespace, command: str) -> int:
    """Run the replay as the command line asked; print the summary."""
    result = run(args.days, args.train_days, args.out, args.work)
    if args.docs:
        from bench.replay_report import write_docs

        write_docs(result, args.out, command)
    print(json.dumps(result["summary"], indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    add_arguments(p)
    args = p.parse_args(argv)
    return run_command(args, " ".join(["python -m bench.replay", *(argv or sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
