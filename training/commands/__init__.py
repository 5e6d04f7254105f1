"""The training commands of ``softsensor``: ``simulate``, ``spec``, ``train`` and ``retrain``.

``service.cli`` registers them only where the ``train`` extra is installed. Building the
parsers imports argparse and the config dataclasses only; torch and pandas load inside the
handlers, so ``softsensor --help`` stays fast.
"""

from __future__ import annotations

from service.cli.arguments import Subcommands
from training.commands.options import add_train_parser
from training.commands.retrain import add_retrain_parser
from training.commands.simulate import add_simulate_parser
from training.commands.spec import add_spec_parser


def add_commands(sub: Subcommands) -> None:
    """Register ``simulate``, ``spec``, ``train`` and ``retrain`` on the ``softsensor`` parser."""
    add_simulate_parser(sub)
    add_spec_parser(sub)
    add_train_parser(sub)
    add_retrain_parser(sub)
