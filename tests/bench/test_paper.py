"""The paper suite end to end in --quick mode: files, CSV, plots, resume and skips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench.paper import build_parser, main
from bench.paper_run import plan
from tests.bench.digits import write_digits
from tests.conftest import DEBUTANIZER

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NETWORKS = {"dense", "ca", "small-dense", "gmp", "magnitude", "random"}


@pytest.fixture(scope="module")
def quick_suite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run the quick suite once (real debutanizer when present, fake MNIST) and twice more:
    a resume, and an MNIST-only run pointed at an empty directory."""
    root = tmp_path_factory.mktemp("paper")
    mnist = write_digits(root / "mnist")
    only = ["column_a", "mnist", *(["debutanizer"] if DEBUTANIZER.is_file() else [])]
    argv = [
        "--quick",
        "--out",
        str(root / "out"),
        "--plots",
        str(root / "plots"),
        "--mnist-dir",
        str(mnist),
        "--only",
        *only,
    ]
    first = main(argv)
    first_result = json.loads((root / "out" / "results.json").read_text(encoding="utf-8"))
    second = main(argv)
    second_result = json.loads((root / "out" / "results.json").read_text(encoding="utf-8"))
    (root / "empty").mkdir()
    skip_argv = ["--quick", "--out", str(root / "skip"), "--only", "mnist"]
    skip_argv += ["--mnist-dir", str(root / "empty")]
    skipped = main(skip_argv)
    return {
        "root": root,
        "argv": argv,
        "codes": (first, second, skipped),
        "first": first_result,
        "second": second_result,
        "skip": json.loads((root / "skip" / "results.json").read_text(encoding="utf-8")),
        "only": only,
    }


@pytest.mark.slow
def test_every_planned_run_is_written(quick_suite: dict[str, object]) -> None:
    """One JSON file per (dataset, noise, method, seed, variant) of the plan, none failed."""
    root = Path(str(quick_suite["root"]))
    assert quick_suite["codes"] == (0, 0, 0)
    args = build_parser().parse_args(list(quick_suite["argv"]))  # type: ignore[call-overload]
    jobs, skipped = plan(args, root / "out")
    assert skipped == []
    files = {p.stem for p in (root / "out" / "runs").glob("*.json")}
    assert {j.key for j in jobs} <= files
    first = quick_suite["first"]
    assert isinstance(first, dict)
    assert first["jobs"]["planned"] == len(jobs) == first["jobs"]["ran"]
    assert first["jobs"]["failed"] == {}


@pytest.mark.slow
def test_csv_has_every_method_and_dataset(quick_suite: dict[str, object]) -> None:
    """results.csv parses; each dataset has every network, tables add ridge (and persistence)."""
    root = Path(str(quick_suite["root"]))
    with (root / "out" / "results.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_dataset: dict[str, set[str]] = {}
    for row in rows:
        by_dataset.setdefault(row["dataset"], set()).add(row["method"])
        float(row["test_rmse"] or row["test_error"])
    assert set(by_dataset) == set(quick_suite["only"])  # type: ignore[call-overload]
    assert by_dataset["mnist"] == NETWORKS
    assert by_dataset["column_a"] == NETWORKS | {"ridge", "ridge_transformed"}  # log target
    if "debutanizer" in by_dataset:
        assert by_dataset["debutanizer"] == NETWORKS | {"ridge", "persistence"}
        variants = {r["variant"] for r in rows if r["dataset"] == "debutanizer"}
        assert {"default", "patience=1", "patience=5", "criterion=taylor"} <= variants
    tables = (root / "out" / "tables.md").read_text(encoding="utf-8")
    assert "### MNIST" in tables and "### Simulated Column A" in tables


@pytest.mark.slow
def test_plots_are_png_files(quick_suite: dict[str, object]) -> None:
    """Every plot the suite reports is a non-trivial PNG."""
    root = Path(str(quick_suite["root"]))
    names = {p.name for p in (root / "plots").glob("*.png")}
    expected = {
        "rmse_vs_pruning_rate.png",
        "learning_speed.png",
        "rmse_vs_noise.png",
        "connectivity_column_a.png",
        "mnist_accuracy_vs_pruning_rate.png",
    }
    assert expected <= names
    for name in names:
        data = (root / "plots" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5000


@pytest.mark.slow
def test_second_invocation_runs_nothing_new(quick_suite: dict[str, object]) -> None:
    """Resume: every run was finished, so the rerun starts zero jobs and skips them all."""
    second = quick_suite["second"]
    first = quick_suite["first"]
    assert isinstance(second, dict) and isinstance(first, dict)
    assert second["jobs"]["ran"] == 0
    assert second["jobs"]["skipped_finished"] == first["jobs"]["planned"]
    assert second["summary"] == first["summary"]


@pytest.mark.slow
def test_small_dense_matches_ca_parameter_count(quick_suite: dict[str, object]) -> None:
    """Per dataset, noise and seed the small dense net has CA's parameters within 5%."""
    runs = Path(str(quick_suite["root"])) / "out" / "runs"
    checked = 0
    for path in runs.glob("*__small-dense__*.json"):
        small = json.loads(path.read_text(encoding="utf-8"))["metrics"]
        ca_path = runs / path.name.replace("__small-dense__", "__ca__")
        ca = json.loads(ca_path.read_text(encoding="utf-8"))["metrics"]
        # dense: nothing pruned (a run that ended at its ridge start has a zeroed chain)
        assert small["params_after"] <= small["params_before"]
        if all(w == 1 for w in small["hidden"]):
            # CA ended at (almost) its linear path: no hidden layer can be that small
            assert small["params_before"] >= ca["params_after"]
            checked += 1
            continue
        assert abs(small["params_before"] - ca["params_after"]) <= 0.05 * ca["params_after"] + 30
        checked += 1
    assert checked >= 3


@pytest.mark.slow
def test_mnist_absent_is_skipped_with_a_message(
    quick_suite: dict[str, object],
) -> None:
    """An empty MNIST directory skips MNIST, says why, and runs nothing."""
    skip = quick_suite["skip"]
    assert isinstance(skip, dict)
    assert skip["jobs"]["planned"] == 0
    messages = skip["datasets_skipped"]
    assert any("MNIST skipped" in m and "nothing is downloaded" in m for m in messages)
