"""The ``softsensor`` entry point: one parser, serving commands always, training commands
where the ``train`` extra is installed.

    softsensor serve --registry models --port 8000 [--opcua opc.tcp://0.0.0.0:4840/softsensor/]
    softsensor connect --opcua opc.tcp://dcs:4840 --tags unit1.yaml --service http://127.0.0.1:8000
    softsensor models list --registry models
    softsensor train --spec training/specs/debutanizer.yaml --data DATA --out runs/ca
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from service.cli.arguments import Subcommands
from service.cli.connect import add_connect_parser
from service.cli.models import add_models_parser
from service.cli.serve import add_serve_parser

TRAINING_COMMANDS = {
    "simulate": "simulate Skogestad's Column A and write historian data + its spec",
    "spec": "draft a dataset spec from a historian export (CSV or Parquet) to train on",
    "train": "train (and prune) a soft sensor on a historian export",
    "retrain": "train a challenger on new data; promote it only if clearly better than the "
    "champion",
}
TRAINING_MISSING = (
    "needs the training extra (torch, pandas), which is not installed here; "
    "install it with: pip install 'softsensor[train]'"
)


def _training_installed() -> bool:
    """The ``train`` extra is there: torch and pandas import (the serving image has neither)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "pandas"))


def _add_training_commands(sub: Subcommands) -> None:
    if _training_installed():
        from training.commands import add_commands  # argparse and dataclasses only

        add_commands(sub)
        return
    for name, text in TRAINING_COMMANDS.items():
        p = sub.add_parser(name, help=f"{text} (needs the training extra)", add_help=False)
        p.set_defaults(handler=_refuse_training, parser=p)


def _refuse_training(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    parser.error(TRAINING_MISSING)
    return 2  # not reached: parser.error exits


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softsensor", description="Soft sensor for distillation columns."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_training_commands(sub)
    add_models_parser(sub)
    add_serve_parser(sub)
    add_connect_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; library errors become one-line messages and exit code 1."""
    from service.contracts.errors import SoftSensorError

    parser = build_parser()
    # A training command where the extra is missing takes any options (it only refuses).
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.handler is not _refuse_training:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code: int = args.handler(args, args.parser)
    except SoftSensorError as exc:
        print(f"softsensor {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return code
