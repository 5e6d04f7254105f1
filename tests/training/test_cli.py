"""The softsensor command: outputs, summary, and usage errors instead of tracebacks."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli.main import main


def test_train_writes_metrics_history_and_checkpoint(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CA run writes metrics.json with the promised fields, the history and a checkpoint."""
    spec, data = tiny
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--spec",
            str(spec),
            "--data",
            str(data),
            "--method",
            "ca",
            "--seed",
            "2",
            "--noise",
            "0.01",
            "--epochs",
            "12",
            "--hidden",
            "8,4",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ca" and metrics["seed"] == 2 and metrics["noise"] == 0.01
    assert metrics["pruner"]["tau"] == 0.5 and metrics["pruner"]["patience"] == 3
    history = json.loads((out / "history.json").read_text())
    assert len(history) == metrics["members"] and len(history[0]) == metrics["epochs"]
    assert (out / "checkpoint.pt").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "test RMSE" in printed and f"{metrics['test_rmse']:.4g}" in printed
    ridge = metrics["baseline"]["ridge"]["test"]["analyzer"]["rmse"]
    assert f"{ridge:.4g}" in printed and "ridge regression" in printed
    assert "Inputs kept:" in printed


def test_dense_reference_sets_epochs_to_target(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    spec, data = tiny
    common = ["--spec", str(spec), "--data", str(data), "--epochs", "8", "--hidden", "8", "--quiet"]
    assert main(["train", *common, "--method", "dense", "--out", str(tmp_path / "d")]) == 0
    ref = tmp_path / "d" / "metrics.json"
    assert (
        main(
            [
                "train",
                *common,
                "--method",
                "gmp",
                "--target-sparsity",
                "0.5",
                "--dense-reference",
                str(ref),
                "--out",
                str(tmp_path / "g"),
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert m["epochs_to_target"] is None or 1 <= m["epochs_to_target"] <= m["epochs"]
    # clean-up may remove more (connections of neurons left dead), never less
    assert m["pruning_rate"] >= 0.5 - 1e-9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "prune-it-all"], "invalid choice"),
        (["--noise", "-1"], "must be >= 0"),
        (["--target-sparsity", "1.5"], "sparsity must be in"),
        (["--epochs", "ten"], "argument --epochs: must be an integer, got 'ten'"),
        (["--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
        (["--method", "gmp"], "needs a target sparsity"),
        (["--tau", "-2"], "argument --tau: must be >= 0, got '-2'"),
        (["--lr", "fast"], "argument --lr: must be a number, got 'fast'"),
        (["--seed", "x"], "argument --seed: must be an integer, got 'x'"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_options_are_usage_errors(
    tiny: tuple[Path, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    """Exit code 2 and a one-line reason on stderr, never a traceback."""
    spec, data = tiny
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "train",
            "--spec",
            str(spec),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "positive_int" not in proc.stderr and "invalid integer" not in proc.stderr


def test_every_train_option_has_help_and_shows_its_default() -> None:
    """`softsensor train --help` explains each flag; knobs show their default value."""
    from service.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    text = train.format_help()
    for action in train._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings[0]} has no help text"
    for flag, default in (
        ("--seed", "0"),
        ("--hidden", "64,64"),
        ("--epochs", "100, and a run still improving"),
        ("--step-budget", "10000"),
        ("--tau", "0.5"),
        ("--patience", "3"),
        ("--members", "5"),
        ("--weight-decay", "0.003"),
    ):
        block = text.split(f"\n  {flag} ", 1)[1].split("\n  --", 1)[0]
        assert f"(default: {default}" in " ".join(block.split()), flag


def test_bad_data_is_a_clean_error(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data problem exits 1 with the file, column and row; nothing is written."""
    spec, data = tiny
    data.write_text(data.read_text().replace("time,a,b,q", "time,a,b,qq"))
    out = tmp_path / "o"
    assert main(["train", "--spec", str(spec), "--data", str(data), "--out", str(out)]) == 1
    assert "column 'q': missing" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_quickstart_path_simulate_then_train_estimates_the_truth(tmp_path: Path) -> None:
    """The README's main job: a week of simulated column, CA training, R2 >= 0.9 vs truth."""
    data = tmp_path / "column_a.csv"
    assert main(["simulate", "--days", "7", "--seed", "0", "--out", str(data)]) == 0
    out = tmp_path / "ca"
    spec = tmp_path / "column_a.yaml"
    assert (
        main(["train", "--spec", str(spec), "--data", str(data), "--out", str(out), "--quiet"]) == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_truth_r2"] >= 0.9
    assert m["pruning_rate"] > 0.3
    # the network beats ridge regression against the true composition
    assert m["test_truth_rmse"] < m["baseline"]["ridge"]["test"]["truth"]["rmse"]


def test_simulate_refuses_a_yaml_data_path(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "simulate",
            "--days",
            "0.1",
            "--out",
            str(tmp_path / "x.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "--out is the data file" in proc.stderr
