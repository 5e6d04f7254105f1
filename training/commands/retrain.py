"""``softsensor retrain``: a challenger on new data, promoted only if clearly better."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.cli.arguments import (
    HelpWithDefaults,
    Subcommands,
    add_registry_option,
    integer,
    non_negative_float,
    open_registry,
)


def add_retrain_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "retrain",
        help="train a challenger on new data; promote it only if clearly better than the champion",
        description="The challenger is also compared with ridge regression fitted on the same "
        "new data: one that loses to it on the held-out window is never promoted (unless "
        "--allow-worse-than-linear). Exit codes: 0 done (promoted or kept), 1 failed, "
        "2 usage error, 3 challenger rejected (sanity checks, or no champion and worse than "
        "linear).",
        formatter_class=HelpWithDefaults,
    )
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--spec", required=True, type=Path, help="dataset spec (YAML)")
    p.add_argument("--data", required=True, type=Path, help="new historian export")
    p.add_argument(
        "--lab-results",
        default=None,
        help="lab results to use as labels: a CSV (timestamp,value), or the service's state "
        "URL (sqlite:///path, postgresql://...) to read the model's stored results from",
    )
    p.add_argument(
        "--margin",
        type=non_negative_float,
        default=0.02,
        help="relative RMSE improvement over the champion required to promote",
    )
    p.add_argument(
        "--allow-worse-than-linear",
        action="store_true",
        help="promote a challenger even if ridge regression beats it on the held-out window",
    )
    p.add_argument("--seed", type=integer, default=0, help="seed of the challenger's training")
    p.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where the JSON and markdown report go",
    )
    add_registry_option(p)
    p.set_defaults(handler=_run_retrain, parser=p)


def _run_retrain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.retrain import EXIT_DONE, EXIT_REJECTED, retrain, write_report
    from training.spec import load_spec

    report = retrain(
        open_registry(args),
        args.name,
        load_spec(args.spec),
        args.data,
        margin=args.margin,
        seed=args.seed,
        lab_results=args.lab_results,
        allow_worse_than_linear=args.allow_worse_than_linear,
    )
    json_path, md_path = write_report(report, args.report_dir)

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4g} {report.unit}".rstrip()

    linear = ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in report.linear_rmse.items())
    print(
        f"{args.name}: {report.decision} (RMSE on the held-out window: champion "
        f"{fmt(report.champion_rmse)}, challenger {fmt(report.challenger_rmse)}"
        + (f", {linear}" if linear else "")
        + f"); report {json_path}, {md_path}"
    )
    for reason in report.reasons:
        print(f"  {reason}")
    return EXIT_REJECTED if report.decision == "rejected" else EXIT_DONE
