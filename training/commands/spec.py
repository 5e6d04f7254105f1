"""``softsensor spec``: draft a dataset spec from a historian export (``training.spec_draft``),
loaded once before it is written, so that ``softsensor train`` runs on it as it stands."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from service.cli.arguments import HelpWithDefaults, Subcommands


def add_spec_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "spec",
        help="draft a dataset spec from a historian export (CSV or Parquet) to train on",
        formatter_class=HelpWithDefaults,
    )
    p.add_argument("--data", required=True, type=Path, help="the export (.csv or .parquet)")
    p.add_argument("--target", required=True, help="the analyzer's (or lab's) column")
    p.add_argument(
        "--timestamp", default=None, help="the time column (default: the first that reads as dates)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="spec file (default: beside the data, as .yaml)"
    )
    order = p.add_mutually_exclusive_group()
    order.add_argument(
        "--day-first",
        dest="dayfirst",
        action="store_const",
        const=True,
        default=None,
        help="dates such as 04.01.2026 are 4 January (default: as the file's times run forward)",
    )
    order.add_argument(
        "--month-first",
        dest="dayfirst",
        action="store_const",
        const=False,
        help="dates such as 04.01.2026 are 1 April",
    )
    p.add_argument(
        "--timezone",
        metavar="ZONE",
        default=None,
        help="the plant's time zone (Europe/Berlin, ...) when the file's times are local "
        "times without an offset (default: such times are UTC)",
    )
    p.add_argument(
        "--columns",
        metavar="NAMES",
        type=_names,
        default=None,
        help="comma-separated names, in file order, of a file of numbers separated by spaces "
        "that has no header line (u1,u2,...,y)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing spec file")
    p.set_defaults(handler=_run_spec, parser=p)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("give distinct, non-empty names separated by commas")
    return names


def _run_spec(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import yaml
    from pydantic import ValidationError

    from service.contracts.atomic import write_atomic
    from training.data import load_dataset
    from training.source_spec import SourceSpec
    from training.spec import DatasetSpec
    from training.spec_draft import draft_spec

    out: Path = args.out or args.data.with_suffix(".yaml")
    if out.resolve() == args.data.resolve():
        parser.error("--out would replace the data file")
    if out.exists() and not args.force:
        parser.error(f"{out} exists: pass --force to replace it")
    if args.timezone is not None:
        try:
            SourceSpec.model_validate({"format": "csv", "timezone": args.timezone})
        except ValidationError as exc:
            parser.error(f"--timezone: {exc.errors()[0]['msg'].removeprefix('Value error, ')}")
    draft = draft_spec(
        args.data, args.target, args.timestamp, args.dayfirst, args.timezone, args.columns
    )
    spec = DatasetSpec.model_validate(draft.spec)
    dataset = load_dataset(spec, args.data)  # a draft the trainer cannot load is not written
    header = [f"Dataset spec drafted from {args.data.name} by softsensor spec. Check:"]
    header += [f"- {note}" for note in draft.notes]
    comment = "".join(
        f"# {line}\n"
        for note in header
        for line in textwrap.wrap(note, 94, subsequent_indent="  " if note[0] == "-" else "")
    )
    body = yaml.safe_dump(
        draft.spec, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True
    )
    write_atomic(out, comment + body)
    print(f"wrote {out}: {len(spec.signals)} signals, {dataset.rows_used} labelled rows")
    for note in draft.notes:
        print(f"  check: {note}")
    print(f"next: softsensor train --spec {out} --data {args.data} --out runs/{spec.name}")
    return 0
