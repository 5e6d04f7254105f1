"""The ``softsensor`` command. Heavy imports (torch) happen inside the subcommands that need
them, so ``softsensor serve`` works in the serving image where torch is not installed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
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


def _add_train_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from training.config import METHODS, CAConfig, NetworkConfig, TrainConfig

    net, tc, ca = NetworkConfig(), TrainConfig(), CAConfig()
    p = sub.add_parser("train", help="train (and prune) a soft sensor on a historian export")
    p.add_argument("--spec", required=True, type=Path, help="dataset spec (YAML)")
    p.add_argument("--data", required=True, type=Path, help="data file the spec describes")
    p.add_argument("--method", choices=METHODS, default="ca", help="pruning method (default ca)")
    p.add_argument("--seed", type=int, default=tc.seed)
    p.add_argument(
        "--noise",
        type=_non_negative_float,
        default=0.0,
        help="extra Gaussian noise on the inputs, in data units",
    )
    p.add_argument(
        "--target-sparsity",
        type=_sparsity,
        default=None,
        help="final sparsity for the baselines (one value, or one per layer)",
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
    g = p.add_argument_group("network and optimization")
    g.add_argument("--hidden", type=_widths, default=tuple(net.hidden), help="e.g. 64,64")
    g.add_argument("--activation", default=net.activation)
    g.add_argument("--epochs", type=_positive_int, default=tc.epochs)
    g.add_argument("--batch-size", type=_positive_int, default=tc.batch_size)
    g.add_argument("--lr", type=float, default=tc.lr)
    g.add_argument("--weight-decay", type=_non_negative_float, default=tc.weight_decay)
    g.add_argument("--early-stopping", type=_positive_int, default=tc.early_stopping)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    c = p.add_argument_group("connection appraisal (method ca)")
    c.add_argument("--tau", type=float, default=ca.tau)
    c.add_argument("--patience", type=_positive_int, default=ca.patience)
    c.add_argument("--criterion", choices=("activity", "magnitude", "taylor"), default=ca.criterion)
    c.add_argument(
        "--consistency", choices=("consecutive", "window", "leaky"), default=ca.consistency
    )
    c.add_argument("--beta", type=float, default=ca.beta)
    c.add_argument("--min-density", type=float, default=ca.min_density)
    c.add_argument("--stop-after-val-rises", type=int, default=ca.stop_after_val_rises)
    p.set_defaults(handler=_run_train, parser=p)


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from dataclasses import replace

    from service.atomic import write_atomic
    from training.config import CAConfig, NetworkConfig, TrainConfig
    from training.data import load_dataset
    from training.experiment import RunConfig, run_experiment
    from training.spec import load_spec

    try:
        ca = replace(
            CAConfig(),
            tau=args.tau,
            patience=args.patience,
            criterion=args.criterion,
            consistency=args.consistency,
            beta=args.beta,
            min_density=args.min_density,
            stop_after_val_rises=args.stop_after_val_rises,
        )
        dense_best = None
        if args.dense_reference is not None:
            ref = json.loads(args.dense_reference.read_text(encoding="utf-8"))
            dense_best = float(ref["best_val_loss"])
        cfg = RunConfig(
            method=args.method,
            seed=args.seed,
            noise=args.noise,
            target_sparsity=args.target_sparsity,
            network=NetworkConfig(hidden=args.hidden, activation=args.activation),
            train=TrainConfig(
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                weight_decay=args.weight_decay,
                early_stopping=args.early_stopping,
                seed=args.seed,
                progress=not args.quiet,
            ),
            ca=ca,
            dense_best_val_loss=dense_best,
        )
        from training.experiment import make_pruner

        make_pruner(cfg)  # fail on inconsistent options before reading any data
    except (ValueError, KeyError, OSError) as exc:
        parser.error(str(exc))
    spec = load_spec(args.spec)
    dataset = load_dataset(spec, args.data, noise_sigma=args.noise, seed=args.seed)
    report = run_experiment(dataset, cfg)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**report.metrics, "spec": str(args.spec), "data": str(args.data)}
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_atomic(out / "history.json", json.dumps(report.result.history_dicts()) + "\n")
    _save_checkpoint(report, out / "checkpoint.pt")
    _print_summary(metrics)
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
    return 0


def _add_registry_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="model registry root (default: $SOFTSENSOR_REGISTRY, else ./models)",
    )


def _open_registry(args: argparse.Namespace) -> Any:
    from service.registry import Registry
    from service.settings import Settings

    root: Path = args.registry if args.registry is not None else Settings().registry
    return Registry(root)


def _add_retrain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "retrain",
        help="train a challenger on new data; promote it only if clearly better than the champion",
        description="Exit codes: 0 done (promoted or kept), 1 failed, 2 usage error, "
        "3 challenger rejected by its sanity checks.",
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
        help="relative RMSE improvement required to promote (default 0.02)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where the JSON and markdown report go (default ./reports)",
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
    )
    json_path, md_path = write_report(report, args.report_dir)
    print(
        f"{args.name}: {report.decision} (champion {report.champion_rmse}, challenger "
        f"{report.challenger_rmse}); report {json_path}, {md_path}"
    )
    return EXIT_REJECTED if report.decision == "rejected" else EXIT_DONE


def _add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the registry's champion models over HTTP (uvicorn)",
        description="Settings not given here come from SOFTSENSOR_* environment variables.",
    )
    _add_registry_option(p)
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--workers", type=_positive_int, default=None, help="processes (default 1)")
    p.add_argument("--state-dir", type=Path, default=None, help="lab-result store directory")
    p.set_defaults(handler=_run_serve, parser=p)


def _run_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import os

    import uvicorn

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
        "service.asgi:create",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        access_log=False,
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
    if args.action == "promote":
        registry.verify(args.name, args.version)
        registry.promote(args.name, args.version)
        print(f"{args.name}: champion is now {args.version}")
        return 0
    version = registry.rollback(args.name)
    print(f"{args.name}: rolled back; champion is now {version}")
    return 0


def _save_checkpoint(report: Any, path: Path) -> None:
    import io

    import torch

    from service.atomic import write_atomic

    buf = io.BytesIO()
    torch.save(
        {
            "state_dict": report.result.model.state_dict(),
            "x_mean": report.result.x_scaler.mean_,
            "x_scale": report.result.x_scaler.scale_,
            "y_mean": report.result.y_scaler.mean_,
            "y_scale": report.result.y_scaler.scale_,
            "metrics": report.metrics,
        },
        buf,
    )
    write_atomic(path, buf.getvalue())


def _print_summary(m: dict[str, Any]) -> None:
    rows = [
        ("method", m["method"]),
        ("seed", m["seed"]),
        ("noise", m["noise"]),
        ("test RMSE", f"{m['test_rmse']:.4f}"),
        ("test MAE", f"{m['test_mae']:.4f}"),
        ("test R2", f"{m['test_r2']:.3f}"),
        ("validation RMSE", f"{m['val_rmse']:.4f}"),
        ("pruning rate", f"{m['pruning_rate']:.1%}"),
        ("per layer", ", ".join(f"{r:.0%}" for r in m["pruning_rate_per_layer"])),
        ("neurons removed", ", ".join(str(n) for n in m["neurons_removed"])),
        ("inputs removed", ", ".join(m["inputs_removed"]) or "none"),
        ("parameters", f"{m['params_before']} -> {m['params_after']}"),
        ("epochs (best)", f"{m['epochs']} ({m['best_epoch']})"),
        ("epochs to target", m["epochs_to_target"] if m["epochs_to_target"] else "n/a"),
        ("train seconds", f"{m['train_seconds']:.1f}"),
    ]
    if "test_truth_rmse" in m:
        rows[4:4] = [
            ("test RMSE vs truth", f"{m['test_truth_rmse']:.4f}"),
            ("test R2 vs truth", f"{m['test_truth_r2']:.3f}"),
        ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _add_simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate", help="simulate Skogestad's Column A and write historian data + its spec"
    )
    p.add_argument("--days", type=_positive_float, default=7.0, help="days of operation")
    p.add_argument("--seed", type=int, default=0)
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
    from service.registry import RegistryError
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
