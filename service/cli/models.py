"""``softsensor models``: list, show, promote and roll back registered models.

Promote and rollback load the target version and score a test row before the champion
pointer moves (``service.scoring.runtime.load_problem``), so a version that cannot serve
never becomes the one a restarted service loads; each is recorded in the model's champion
history with who (``--by``, default the user) and why (``--reason``), which ``show`` prints
below the card.
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from service.cli.arguments import Subcommands, add_registry_option, open_registry
from service.contracts.history import command_user

if TYPE_CHECKING:
    from service.contracts.registry import Registry


def add_models_parser(sub: Subcommands) -> None:
    p = sub.add_parser("models", help="list, show, promote or roll back registered models")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("list", "models, their versions and champions"),
        ("show", "a version's model card (default: the champion) and the champion history"),
        ("promote", "make a version the champion"),
        ("rollback", "go back to the previous champion"),
    ):
        a = actions.add_parser(action, help=text)
        add_registry_option(a)
        if action != "list":
            a.add_argument("name")
        if action == "promote":
            a.add_argument("version")
        if action == "show":
            a.add_argument("version", nargs="?", help="default: the champion")
            a.add_argument("--version", dest="version_option", metavar="V", help="the same")
            a.add_argument(
                "--json", action="store_true", help="the card and the history as one JSON document"
            )
        if action in ("promote", "rollback"):
            a.add_argument(
                "--by", default=None, help="who, for the history (default: your user name)"
            )
            a.add_argument("--reason", default=None, help="why, for the history")
        a.set_defaults(handler=run_models, parser=a)


def run_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    registry = open_registry(args)
    if args.action == "list":
        _list(registry)
    elif args.action == "show":
        version = args.version_option or args.version
        _show(registry, args.name, version, args.json, parser)
    else:
        by = args.by or command_user()
        _move(registry, args.action, args.name, getattr(args, "version", None), by, args.reason)
    return 0


def _list(registry: Registry) -> None:
    for name in registry.names():
        champion = registry.champion(name)
        for version in registry.versions(name):
            mark = "*" if version == champion else " "
            print(f"{mark} {name} {version}")


def _show(
    registry: Registry,
    name: str,
    version: str | None,
    as_json: bool,
    parser: argparse.ArgumentParser,
) -> None:
    """The card as people read it (card.md; the JSON card if there is none), then every
    champion change of the model with who and why."""
    from service.contracts.registry import CARD_MD_FILE

    champion = registry.champion(name)
    shown = version or champion
    if shown is None:
        parser.error(f"model {name!r} has no champion; name a version")
    card = registry.verify(name, shown)
    changes = registry.history(name)
    if as_json:
        history = [asdict(c) | {"time": c.time.isoformat()} for c in changes]
        print(json.dumps({"card": card.model_dump(mode="json"), "history": history}, indent=2))
        return
    page = registry.version_dir(name, shown) / CARD_MD_FILE
    mark = " (champion)" if shown == champion else ""
    print(f"{name} {shown}{mark}\n")
    print(page.read_text(encoding="utf-8").rstrip() if page.is_file() else card.model_dump_json())
    print("\n## Champion history\n")
    if not changes:
        print("(no champion change recorded)")
    for c in changes:
        before = f" (was {c.previous})" if c.previous else ""
        why = f": {c.reason}" if c.reason else ""
        print(f"- {c.time.isoformat()} {c.action} {c.version}{before} by {c.by}{why}")


def _move(
    registry: Registry, action: str, name: str, version: str | None, by: str, reason: str | None
) -> None:
    """Promote or roll back, after the target version loaded and scored a test row."""
    from service.scoring.runtime import load_problem

    check = functools.partial(load_problem, registry)
    if action == "promote":
        assert version is not None  # argparse requires it for promote
        registry.promote(name, version, check=check, by=by, reason=reason)
        print(f"{name}: champion is now {version}")
        return
    previous = registry.rollback(name, check=check, by=by, reason=reason)
    print(f"{name}: rolled back; champion is now {previous}")
