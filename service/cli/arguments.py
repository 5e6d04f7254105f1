"""Argument types and shared options of the command line: argparse only, no heavy imports.

Each type raises ``ArgumentTypeError`` with the value it refused, so argparse prints
``argument --epochs: must be a positive integer, got '0'`` and exits with code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from service.contracts.registry import Registry

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def fraction(text: str) -> float:
    value = number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def sparsity(text: str) -> float | list[float]:
    """One fraction for every layer, or a comma-separated fraction per layer."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a fraction or list of fractions: {text!r}") from exc
    if any(not 0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sparsity must be in [0, 1), got {text}")
    return values[0] if len(values) == 1 else values


def widths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"widths must be like 64,64; got {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text}")
    return values


class HelpWithDefaults(argparse.HelpFormatter):
    """Shows an option's default after its help text, where it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if action.required or default is None or isinstance(default, bool):
            return text
        if default is argparse.SUPPRESS or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


def add_registry_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="model registry root (default: $SOFTSENSOR_REGISTRY, else ./models)",
    )


def open_registry(args: argparse.Namespace) -> Registry:
    """The registry ``--registry`` names, else the one the service's settings name."""
    from service.contracts.registry import Registry
    from service.settings import Settings

    root: Path = args.registry if args.registry is not None else Settings().registry
    return Registry(root)
