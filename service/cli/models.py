"""``softsensor models``: list, show, promote and roll back registered models.

Promote and rollback load the target version and score a test row before the champion
pointer moves (``service.scoring.runtime.load_problem``), so a version that cannot serve
never becomes the one a restarted service loads.
"""

from __future__ import annotations

import argparse
import functools
from typing import TYPE_CHECKING

from service.cli.arguments import Subcommands, add_registry_option, open_registry

if TYPE_CHECKING:
    from service.contracts.registry import Registry


def add_models_parser(sub: Subcommands) -> None:
    p = sub.add_parser("models", help="list, show, promote or roll back registered models")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("list", "models, their versions and champions"),
        ("show", "a version's model card (default: the champion)"),
        ("promote", "make a version the champion"),
        ("rollback", "go back to the previous champion"),
    ):
        a = actions.add_parser(action, help=text)
        add_registry_option(a)
        if action != "list":
            a.add_argument("name")
        if action in ("show", "promote"):
            a.add_argument("version", nargs="?" if action == "show" else None)
        a.set_defaults(handler=run_models, parser=a)


def run_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    registry = open_registry(args)
    if args.action == "list":
        _list(registry)
    elif args.action == "show":
        _show(registry, args.name, args.version, parser)
    else:
        _move(registry, args.action, args.name, getattr(args, "version", None))
    return 0


def _list(registry: Registry) -> None:
    for name in registry.names():
        champion = registry.champion(name)
        for version in registry.versions(name):
            mark = "*" if version == champion else " "
            print(f"{mark} {name} {version}")


def _show(
    registry: Registry, name: str, version: str | None, parser: argparse.ArgumentParser
) -> None:
    shown = version or registry.champion(name)
    if shown is None:
        parser.error(f"model {name!r} has no champion; name a version")
    print(registry.verify(name, shown).model_dump_json(indent=2))


def _move(registry: Registry, action: str, name: str, version: str | None) -> None:
    """Promote or roll back, after the target version loaded and scored a test row."""
    from service.scoring.runtime import load_problem

    check = functools.partial(load_problem, registry)
    if action == "promote":
        assert version is not None  # argparse requires it for promote
        registry.promote(name, version, check=check)
        print(f"{name}: champion is now {version}")
        return
    previous = registry.rollback(name, check=check)
    print(f"{name}: rolled back; champion is now {previous}")
