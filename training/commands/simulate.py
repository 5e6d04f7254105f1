"""``softsensor simulate``: Skogestad's Column A as historian data, with its dataset spec."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from service.cli.arguments import (
    HelpWithDefaults,
    Subcommands,
    integer,
    positive_float,
)


def add_simulate_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate Skogestad's Column A and write historian data + its spec",
        formatter_class=HelpWithDefaults,
    )
    p.add_argument("--days", type=positive_float, default=7.0, help="days of operation")
    p.add_argument("--seed", type=integer, default=0, help="seed of disturbances and sensor noise")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="data file (.csv or .parquet); the spec is written beside it as .yaml",
    )
    p.set_defaults(handler=_run_simulate, parser=p)


def _run_simulate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.simulator import simulate

    if args.out.suffix.lower() in {".yaml", ".yml"}:
        parser.error("--out is the data file (.csv or .parquet); the spec goes beside it")
    started = time.perf_counter()
    data, spec = simulate(args.days, args.seed, args.out)
    print(
        f"wrote {data} and {spec} ({args.days:g} days, seed {args.seed}, "
        f"{time.perf_counter() - started:.1f} s)"
    )
    return 0
