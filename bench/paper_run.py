"""One invocation of the paper suite: find the data, plan the runs, run what is missing, then
write results.json, results.csv, tables.md and the plots from every finished run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.mnist import FILES, MnistError, verify_directory
from bench.paper import DOC_PLOTS, FULL_OUT, QUICK_OUT
from bench.plots import plot_all
from bench.report import render
from bench.suite import (
    NOISE_LEVELS,
    Job,
    Outcome,
    Source,
    base_configs,
    plan_digit_jobs,
    plan_table_jobs,
    run_jobs,
)
from bench.summary import compare, flatten, summarize, to_csv
from service.contracts.atomic import write_atomic
from training.spec import load_spec

SPECS = Path(__file__).resolve().parents[1] / "training" / "specs"
DEBUTANIZER_SPEC = SPECS / "debutanizer.yaml"
DEBUTANIZER_LAGS_SPEC = SPECS / "debutanizer_lags.yaml"
ABLATION_NOISE = (0.0, 0.1)  # the clean data and the noisiest level
QUICK_NOISE = (0.0, 0.1)
QUICK_MNIST_TRAIN = 10_000  # training images used by --quick


def cpu_model() -> str:
    """The CPU as /proc/cpuinfo names it (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _say(message: str) -> None:
    print(message, flush=True)


def plan(args: argparse.Namespace, out: Path) -> tuple[list[Job], list[str]]:
    """Every job of the suite for the chosen datasets, and a message per dataset skipped."""
    seeds = args.seeds or (1 if args.quick else 5)
    bases = base_configs(args.quick, args.mnist_tau)
    jobs: list[Job] = []
    skipped: list[str] = []
    ablation = ABLATION_NOISE[:1] if args.quick else ABLATION_NOISE
    noise = QUICK_NOISE if args.quick else NOISE_LEVELS
    if "debutanizer" in args.only:
        if args.debutanizer.is_file():
            source = Source(
                "debutanizer", "table", str(args.debutanizer), str(DEBUTANIZER_SPEC)
            ).with_digest()
            jobs += plan_table_jobs(source, noise, seeds, bases["debutanizer"], ablation)
        else:
            skipped.append(f"debutanizer skipped: no data file at {args.debutanizer}")
    if "debutanizer_lags" in args.only:
        if args.debutanizer.is_file():
            # the protocol's second track: a wide candidate set of lags, noise 0 only
            source = Source(
                "debutanizer_lags", "table", str(args.debutanizer), str(DEBUTANIZER_LAGS_SPEC)
            ).with_digest()
            jobs += plan_table_jobs(source, (0.0,), seeds, bases["debutanizer_lags"])
        else:
            skipped.append(f"debutanizer_lags skipped: no data file at {args.debutanizer}")
    if "column_a" in args.only:
        days = args.column_days or (3.0 if args.quick else 7.0)
        data = out / "data" / f"column_a_{days:g}d.csv"
        spec = data.with_suffix(".yaml")
        from training.simulator import dataset_spec, simulate

        # a file simulated by an older version (another spec) is simulated again
        if not (data.is_file() and spec.is_file() and load_spec(spec) == dataset_spec()):
            _say(f"simulating {days:g} days of Column A (seed 0) into {data}")
            simulate(days, 0, data)
        load_spec(spec)  # fail early on a spec the loader would refuse
        source = Source("column_a", "table", str(data), str(spec)).with_digest()
        jobs += plan_table_jobs(source, noise, seeds, bases["column_a"])
    if "mnist" in args.only:
        directory: Path = args.mnist_dir
        try:
            verify_directory(directory)
        except MnistError:
            if any((directory / f).is_file() for f in FILES.values()):
                raise  # present but broken or tampered with: never silently skip that
            skipped.append(
                f"MNIST skipped: the four IDX files are not in {directory} "
                "(nothing is downloaded; copy them there to run this part)"
            )
        else:
            limit = QUICK_MNIST_TRAIN if args.quick else None
            source = Source("mnist", "digits", str(directory), train_limit=limit)
            jobs += plan_digit_jobs(source, seeds, bases["mnist"])
    return jobs, skipped


def record_invocation(out: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Append this invocation to ``<out>/invocations.json``: results.json is rewritten by every
    invocation, so the wall time of the one that did the work would otherwise be lost."""
    path = out / "invocations.json"
    past: list[dict[str, Any]] = (
        json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    )
    past.append(entry)
    write_atomic(path, json.dumps(past, indent=1) + "\n")
    return past


def run_suite(args: argparse.Namespace, command: str) -> int:
    """Plan, run what is not finished, summarize, plot; 1 if any run failed."""
    out: Path = args.out or (QUICK_OUT if args.quick else FULL_OUT)
    plots = _plots_dir(args, out)
    started = time.perf_counter()
    jobs, skipped = plan(args, out)
    for message in skipped:
        _say(message)
    outcome, finished = run_jobs(jobs, out / "runs", args.workers, _say)
    records = [finished[j.key] for j in jobs if j.key in finished]
    rows = flatten(records)
    summary = summarize(rows)
    comparisons = compare(rows)
    seeds = args.seeds or (1 if args.quick else 5)
    made = plot_all(rows, summary, records, plots)
    wall = time.perf_counter() - started
    invocations = record_invocation(
        out,
        {
            "command": command,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_seconds": wall,
            "ran": len(outcome.ran),
            "skipped_finished": len(outcome.skipped),
            "failed": len(outcome.failed),
        },
    )
    result = _result(args, command, wall, jobs, skipped, outcome, records, invocations)
    result |= {
        "plots": [str(p) for p in made],
        "summary": summary,
        "comparisons": comparisons,
    }
    write_atomic(out / "results.json", json.dumps(result, indent=1, default=str) + "\n")
    write_atomic(out / "results.csv", to_csv(rows))
    write_atomic(out / "tables.md", render(summary, comparisons, seeds))
    seconds = [r["train_seconds"] for r in rows if r.get("train_seconds")]
    _say(
        f"{len(outcome.ran)} runs done, {len(outcome.skipped)} already finished, "
        f"{len(outcome.failed)} failed; wall {wall:.0f} s"
        + (f" (median run {statistics.median(seconds):.1f} s)" if seconds else "")
    )
    _say(f"results: {out / 'results.json'}, {out / 'results.csv'}, {out / 'tables.md'}")
    _say(f"plots: {', '.join(str(p) for p in made) or 'none'}")
    return 1 if outcome.failed else 0


def _plots_dir(args: argparse.Namespace, out: Path) -> Path:
    """Where the PNGs go: as asked, else docs/ for the full suite in its default place."""
    if args.plots is not None:
        plots: Path = args.plots
        return plots
    if args.out is None and not args.quick:
        return DOC_PLOTS
    return out / "plots"


def _result(
    args: argparse.Namespace,
    command: str,
    wall: float,
    jobs: list[Job],
    skipped: list[str],
    outcome: Outcome,
    records: list[dict[str, Any]],
    invocations: list[dict[str, Any]],
) -> dict[str, Any]:
    """results.json but the figures: how it was run, on what, and with which settings."""
    bases = base_configs(args.quick, args.mnist_tau)
    return {
        "command": command,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "workers": args.workers,
        },
        "quick": args.quick,
        "seeds": args.seeds or (1 if args.quick else 5),
        "wall_seconds": wall,
        "run_seconds_this_invocation": outcome.wall_seconds,
        "train_seconds_total": sum(
            r["metrics"].get("train_seconds") or 0.0 for r in records if r["key"] in outcome.ran
        ),
        "jobs": {
            "planned": len(jobs),
            "ran": len(outcome.ran),
            "skipped_finished": len(outcome.skipped),
            "failed": outcome.failed,
        },
        "datasets_skipped": skipped,
        # Every invocation on this directory: a resumed suite's total is the sum of these.
        "invocations": invocations,
        "config": {
            name: {
                "network": {"hidden": list(b.network.hidden), "activation": b.network.activation},
                "train": asdict(b.train),
                "ca": asdict(b.ca),
            }
            for name, b in bases.items()
        },
    }
