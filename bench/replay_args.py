"""The plant replay's command-line options (``python -m bench.replay``), apart from the replay
so that ``--help`` answers without importing pandas or torch."""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=float, default=30.0, help="simulated days per unit")
    p.add_argument("--train-days", type=float, default=21.0, help="days of unit A trained on")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "results" / "replay",
        help="where results.json goes (default bench/results/replay)",
    )
    p.add_argument("--work", type=Path, default=None, help="keep the run's files here")
    p.add_argument("--docs", action="store_true", help="also write docs/replay.md and its plot")
