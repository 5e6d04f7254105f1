"""The ``softsensor`` command. Heavy imports (torch) happen inside the subcommands that need
them, so ``softsensor serve`` works in the serving image where torch is not installed."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _sparsity(text: str) -> float | list[float]:
    """One fraction for every layer, or a comma-separated fraction per layer."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a fraction or list of fractions: {text!r}") from exc
    if any(not 0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sparsity must be in [0, 1), got {text}")
    return values[0] if len(values) == 1 else values


def _widths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"widths must be like 64,64; got {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text}")
    return values


class _Help(argparse.HelpFormatter):
    """Shows an option's default after its help text, where it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if action.required or default is None or isinstance(default, bool):
            return text
        if default is argparse.SUPPRESS or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


def _add_train_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from training.config import ENSEMBLE_MEMBERS, METHODS, CAConfig, NetworkConfig, TrainConfig

    net, tc, ca = NetworkConfig(), TrainConfig(), CAConfig()
    p = sub.add_parser(
        "train",
        help="train (and prune) a soft sensor on a historian export",
        description="Train the network on the spec's train split while it is pruned, choose "
        "checkpoints on validation, score it, ridge regression and persistence on the test "
        "split, and write metrics.json (optionally register the exported model).",
        formatter_class=_Help,
    )
    p.add_argument("--spec", required=True, type=Path, help="dataset spec (YAML)")
    p.add_argument("--data", required=True, type=Path, help="data file the spec describes")
    p.add_argument("--method", choices=METHODS, default="ca", help="pruning method")
    p.add_argument(
        "--seed", type=_integer, default=tc.seed, help="seed of the first network (and noise)"
    )
    p.add_argument(
        "--noise",
        type=_non_negative_float,
        default=0.0,
        help="extra Gaussian noise on the inputs, in data units (benchmarks)",
    )
    p.add_argument(
        "--target-sparsity",
        type=_sparsity,
        default=None,
        help="final sparsity for the gmp/magnitude/random baselines (one value, or one per layer)",
    )
    p.add_argument(
        "--dense-reference",
        type=Path,
        default=None,
        help="metrics.json of a dense run: sets the learning-speed target",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument(
        "--register",
        metavar="NAME",
        default=None,
        help="export to ONNX and write a new version of model NAME into the registry",
    )
    _add_registry_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("network and optimization")
    g.add_argument(
        "--members",
        type=_positive_int,
        default=ENSEMBLE_MEMBERS,
        help="networks trained from different seeds and averaged in one model",
    )
    g.add_argument(
        "--hidden",
        type=_widths,
        default=",".join(map(str, net.hidden)),
        help="hidden layer widths, comma-separated",
    )
    g.add_argument(
        "--activation",
        choices=("tanh", "relu", "sigmoid", "gelu", "elu"),
        default=net.activation,
        help="activation of the hidden layers",
    )
    g.add_argument(
        "--no-linear-path",
        dest="linear_path",
        action="store_false",
        help="no linear path from the inputs to the output beside the hidden layers",
    )
    g.add_argument(
        "--start-random",
        dest="start_at_linear",
        action="store_false",
        help="start from random weights instead of the ridge solution",
    )
    g.add_argument("--epochs", type=_positive_int, default=tc.epochs, help="planned epochs")
    g.add_argument(
        "--batch-size", type=_positive_int, default=tc.batch_size, help="rows per optimizer step"
    )
    g.add_argument("--lr", type=_positive_float, default=tc.lr, help="Adam learning rate")
    g.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=tc.weight_decay,
        help="L2 penalty on the hidden layers",
    )
    g.add_argument(
        "--linear-weight-decay",
        type=_non_negative_float,
        default=tc.linear_weight_decay,
        help="L2 penalty on the linear path",
    )
    g.add_argument(
        "--input-noise",
        type=_non_negative_float,
        default=tc.input_noise,
        help="Gaussian jitter (standardized units) on what the hidden layers see",
    )
    g.add_argument(
        "--early-stopping",
        type=_positive_int,
        default=tc.early_stopping,
        help="stop after this many epochs without a better validation RMSE (masks final)",
    )
    g.add_argument(
        "--no-refit",
        dest="refit",
        action="store_false",
        help="keep the networks fitted on the training rows instead of refitting them on "
        "train + validation with the choices validation made",
    )
    c = p.add_argument_group("connection appraisal (method ca)")
    c.add_argument(
        "--tau", type=_positive_float, default=ca.tau, help="relative-importance threshold"
    )
    c.add_argument(
        "--patience",
        type=_positive_int,
        default=ca.patience,
        help="appraisals in a row below tau before a connection is pruned",
    )
    c.add_argument(
        "--criterion",
        choices=("activity", "magnitude", "taylor"),
        default=ca.criterion,
        help="what a connection's contribution measures",
    )
    c.add_argument(
        "--consistency",
        choices=("consecutive", "window", "leaky"),
        default=ca.consistency,
        help="how 'consistently below tau' is judged",
    )
    c.add_argument("--beta", type=_fraction, default=ca.beta, help="smoothing of contributions")
    c.add_argument(
        "--min-density",
        type=_fraction,
        default=ca.min_density,
        help="never prune a layer below this share of its connections",
    )
    c.add_argument(
        "--stop-after-val-rises",
        type=_non_negative_int,
        default=ca.stop_after_val_rises,
        help="stop appraising after this many rising validation RMSEs in a row (0: never)",
    )
    t = p.add_argument_group("automatic recipe (Optuna, validation split only)")
    t.add_argument(
        "--tune",
        action="store_true",
        help="choose width, learning rate, weight decays, input noise and tau on validation "
        "before training the ensemble",
    )
    t.add_argument(
        "--tune-minutes",
        type=_positive_float,
        default=8.0,
        help="wall-clock budget of the search (the final ensemble comes after it)",
    )
    t.add_argument("--tune-trials", type=_positive_int, default=60, help="at most this many trials")
    p.set_defaults(handler=_run_train, parser=p)


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import time

    from service.contracts.atomic import write_atomic
    from training.config import CAConfig, NetworkConfig, TrainConfig
    from training.data import load_dataset
    from training.experiment import RunConfig, make_pruner, run_experiment
    from training.spec import load_spec
    from training.summary import summary_lines

    started = time.perf_counter()
    try:
        dense_best = None
        if args.dense_reference is not None:
            ref = json.loads(args.dense_reference.read_text(encoding="utf-8"))
            dense_best = float(ref["best_val_loss"])
        cfg = RunConfig(
            method=args.method,
            seed=args.seed,
            noise=args.noise,
            target_sparsity=args.target_sparsity,
            network=NetworkConfig(
                hidden=args.hidden, activation=args.activation, linear_path=args.linear_path
            ),
            train=TrainConfig(
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                weight_decay=args.weight_decay,
                linear_weight_decay=args.linear_weight_decay,
                start_at_linear=args.start_at_linear,
                input_noise=args.input_noise,
                early_stopping=args.early_stopping,
                refit=args.refit,
                seed=args.seed,
                progress=not args.quiet,
            ),
            ca=CAConfig(
                tau=args.tau,
                patience=args.patience,
                criterion=args.criterion,
                consistency=args.consistency,
                beta=args.beta,
                min_density=args.min_density,
                stop_after_val_rises=args.stop_after_val_rises,
            ),
            dense_best_val_loss=dense_best,
            members=args.members,
        )
        make_pruner(cfg)  # fail on inconsistent options before reading any data
    except (ValueError, KeyError, OSError) as exc:
        parser.error(str(exc))
    spec = load_spec(args.spec)
    dataset = load_dataset(spec, args.data, noise_sigma=args.noise, seed=args.seed)
    for warning in dataset.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    tuned = None
    if args.tune:
        from training.tuning import tune

        tuned = tune(
            dataset,
            cfg,
            seconds=args.tune_minutes * 60.0,
            trials=args.tune_trials,
            log=None if args.quiet else lambda line: print(line, file=sys.stderr),
        )
        cfg = tuned.config
    report = run_experiment(dataset, cfg)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        **report.metrics,
        "spec": str(args.spec),
        "data": str(args.data),
        "data_checks": {
            "rows_read": dataset.rows_read,
            "values_out_of_range": dataset.values_out_of_range,
            "target_out_of_range": dataset.target_out_of_range,
            "values_filled": dataset.values_filled,
            "warnings": dataset.warnings,
        },
        "wall_seconds": time.perf_counter() - started,
    }
    if tuned is not None:
        metrics["tuning"] = {
            "best_val_rmse": tuned.best_val_rmse,
            "params": tuned.params,
            "trials": tuned.trials,
            "seconds": tuned.seconds,
            "stopped_by": tuned.stopped_by,
        }
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    # The learning curves validation judged (a refit's own history has no held-out figures)
    history = [(m.selected or m).history_dicts() for m in report.members]
    write_atomic(out / "history.json", json.dumps(history) + "\n")
    _save_checkpoint(report, out / "checkpoint.pt")
    for line in summary_lines(metrics):
        print(line)
    if tuned is not None:
        print(
            f"Tuning: {len(tuned.trials)} trials in {tuned.seconds:.0f} s (stopped by "
            f"{tuned.stopped_by}); chosen {tuned.params}"
        )
    if args.register:
        from training.publish import publish

        registry = _open_registry(args)
        published = publish(dataset, report, registry, args.register)
        card = published.card
        print(
            f"registered {published.name} {published.version} at {published.path} "
            f"(ONNX {card.onnx_bytes} bytes, dense architecture {card.dense_onnx_bytes}; "
            f"parity {published.exported.max_parity_error:.2g})"
            + ("; now champion" if published.champion else "")
        )
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


def _add_registry_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="model registry root (default: $SOFTSENSOR_REGISTRY, else ./models)",
    )


def _open_registry(args: argparse.Namespace) -> Any:
    from service.contracts.registry import Registry
    from service.settings import Settings

    root: Path = args.registry if args.registry is not None else Settings().registry
    return Registry(root)


def _add_retrain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "retrain",
        help="train a challenger on new data; promote it only if clearly better than the champion",
        description="The challenger is also compared with ridge regression fitted on the same "
        "new data: one that loses to it on the held-out window is never promoted (unless "
        "--allow-worse-than-linear). Exit codes: 0 done (promoted or kept), 1 failed, "
        "2 usage error, 3 challenger rejected (sanity checks, or no champion and worse than "
        "linear).",
        formatter_class=_Help,
    )
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--spec", required=True, type=Path, help="dataset spec (YAML)")
    p.add_argument("--data", required=True, type=Path, help="new historian export")
    p.add_argument(
        "--lab-results",
        type=Path,
        default=None,
        help="CSV of lab results (timestamp,value) to use as labels",
    )
    p.add_argument(
        "--margin",
        type=_non_negative_float,
        default=0.02,
        help="relative RMSE improvement over the champion required to promote",
    )
    p.add_argument(
        "--allow-worse-than-linear",
        action="store_true",
        help="promote a challenger even if ridge regression beats it on the held-out window",
    )
    p.add_argument("--seed", type=_integer, default=0, help="seed of the challenger's training")
    p.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where the JSON and markdown report go",
    )
    _add_registry_option(p)
    p.set_defaults(handler=_run_retrain, parser=p)


def _run_retrain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from training.retrain import EXIT_DONE, EXIT_REJECTED, retrain, write_report
    from training.spec import load_spec

    registry = _open_registry(args)
    report = retrain(
        registry,
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


def _add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the registry's champion models over HTTP (uvicorn)",
        description="Settings not given here come from SOFTSENSOR_* environment variables.",
    )
    _add_registry_option(p)
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=_positive_int, default=None, help="port (default 8000)")
    p.add_argument("--workers", type=_positive_int, default=None, help="processes (default 1)")
    p.add_argument("--state-dir", type=Path, default=None, help="lab-result store directory")
    p.set_defaults(handler=_run_serve, parser=p)


def _run_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import os

    import uvicorn

    from service.api.http_protocol import GuardedHttpToolsProtocol
    from service.settings import Settings

    # Workers are separate processes: pass the command-line settings through the environment.
    overrides = {
        "registry": args.registry,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "state_dir": args.state_dir,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"SOFTSENSOR_{key.upper()}"] = str(value)
    settings = Settings()
    uvicorn.run(
        "service.api.asgi:create",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        access_log=False,
        http=GuardedHttpToolsProtocol,  # header size limit, header and body read timeouts
        timeout_keep_alive=settings.keep_alive_s,
    )
    return 0


def _add_models_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="list, show, promote or roll back registered models")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("list", "models, their versions and champions"),
        ("show", "a version's model card (default: the champion)"),
        ("promote", "make a version the champion"),
        ("rollback", "go back to the previous champion"),
    ):
        a = actions.add_parser(action, help=text)
        _add_registry_option(a)
        if action != "list":
            a.add_argument("name")
        if action in ("show", "promote"):
            a.add_argument("version", nargs="?" if action == "show" else None)
        a.set_defaults(handler=_run_models, parser=a)


def _run_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from service.scoring.runtime import load_problem

    registry = _open_registry(args)
    if args.action == "list":
        for name in registry.names():
            champion = registry.champion(name)
            for version in registry.versions(name):
                mark = "*" if version == champion else " "
                print(f"{mark} {name} {version}")
        return 0
    if args.action == "show":
        version = args.version or registry.champion(args.name)
        if version is None:
            parser.error(f"model {args.name!r} has no champion; name a version")
        card = registry.verify(args.name, version)
        print(card.model_dump_json(indent=2))
        return 0
    check = functools.partial(load_problem, registry)  # loads and scores before it moves
    if args.action == "promote":
        registry.promote(args.name, args.version, check=check)
        print(f"{args.name}: champion is now {args.version}")
        return 0
    version = registry.rollback(args.name, check=check)
    print(f"{args.name}: rolled back; champion is now {version}")
    return 0


def _save_checkpoint(report: Any, path: Path) -> None:
    import io

    import torch

    from service.contracts.atomic import write_atomic

    buf = io.BytesIO()
    ensemble = report.ensemble
    torch.save(
        {
            "state_dicts": [m.model.state_dict() for m in report.members],
            "x_mean": ensemble.x_scaler.mean_,
            "x_scale": ensemble.x_scaler.scale_,
            "y_mean": ensemble.y_scaler.mean_,
            "y_scale": ensemble.y_scaler.scale_,
            "target_transform": report.metrics["target_transform"],
            "metrics": report.metrics,
        },
        buf,
    )
    write_atomic(path, buf.getvalue())


def _add_simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate Skogestad's Column A and write historian data + its spec",
        formatter_class=_Help,
    )
    p.add_argument("--days", type=_positive_float, default=7.0, help="days of operation")
    p.add_argument("--seed", type=_integer, default=0, help="seed of disturbances and sensor noise")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="data file (.csv or .parquet); the spec is written beside it as .yaml",
    )
    p.set_defaults(handler=_run_simulate, parser=p)


def _run_simulate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import time

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


def _add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite from bench/ (needs the repository)")
    suites = p.add_subparsers(dest="suite", required=True, metavar="SUITE")
    paper = suites.add_parser(
        "paper",
        help="reproduce the paper's evaluation: every method, dataset and seed, plus ablations",
        description="Writes JSON/CSV results, markdown tables and PNG plots; resumes.",
    )
    try:
        from bench.paper import add_arguments  # argparse only: no torch imported here
    except ImportError:
        # The serving image ships service/ and training/ only: every other subcommand must
        # still work there, and this one says why it cannot.
        paper.set_defaults(handler=_bench_missing, parser=paper)
        return
    add_arguments(paper)
    paper.set_defaults(handler=_run_bench_paper, parser=paper)


def _bench_missing(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    parser.error("the benchmark suites (bench/) are not installed here; run from the repository")


def _run_bench_paper(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from bench.paper import run

    return run(args, " ".join(["softsensor", *sys.argv[1:]]))


def _add_replay_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="the plant replay: a simulated month with faults, served over HTTP, scored "
        "against the truth (needs the repository)",
        description="Simulates two units of Column A with faults at known times, trains the "
        "default recipe, starts the service and feeds it as a historian does; writes the "
        "scorecard (and with --docs, docs/replay.md and its plot).",
    )
    try:
        from bench.replay_args import add_arguments  # argparse only: no pandas, no torch
    except ImportError:
        p.set_defaults(handler=_bench_missing, parser=p)
        return
    add_arguments(p)
    p.set_defaults(handler=_run_replay, parser=p)


def _run_replay(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from bench.replay import run_command

    return run_command(args, " ".join(["softsensor", *sys.argv[1:]]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softsensor", description="Soft sensor for distillation columns."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_simulate_parser(sub)
    _add_train_parser(sub)
    _add_models_parser(sub)
    _add_retrain_parser(sub)
    _add_serve_parser(sub)
    _add_bench_parser(sub)
    _add_replay_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; library errors become one-line messages and exit code 1."""
    from service.contracts.registry import RegistryError
    from training.errors import SoftSensorError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args, args.parser)
    except (SoftSensorError, RegistryError) as exc:
        print(f"softsensor {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
