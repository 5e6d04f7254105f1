"""The retraining job: decisions, reports, exit codes, and a registry that survives SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.cli.main import main
from service.contracts.registry import Registry
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import load_dataset
from training.experiment import RunConfig, run_experiment
from training.publish import publish
from training.retrain import retrain, run_config_from_card
from training.simulator import simulate
from training.spec import load_spec

QUICK = RunConfig(
    network=NetworkConfig(hidden=(16, 16)),
    train=TrainConfig(epochs=12, batch_size=64, progress=False),
    ca=CAConfig(tau=0.6),
)


@pytest.fixture(scope="module")
def column(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two days of simulated column: (spec, data)."""
    data, spec = simulate(2, 5, tmp_path_factory.mktemp("col") / "col.csv")
    return spec, data


@pytest.fixture
def registry_with_champion(column: tuple[Path, Path], tmp_path: Path) -> Registry:
    """A registry whose champion was trained with a quick recipe (12 epochs)."""
    spec, data = column
    ds = load_dataset(load_spec(spec), data)
    registry = Registry(tmp_path / "models")
    publish(ds, run_experiment(ds, QUICK), registry, "col", version="v1")
    return registry


def test_challenger_reuses_the_champions_recipe(registry_with_champion: Registry) -> None:
    card = registry_with_champion.verify("col", "v1")
    cfg = run_config_from_card(card, seed=7)
    assert cfg.network.hidden == (16, 16) and cfg.train.epochs == 12 and cfg.seed == 7
    assert cfg.method == "ca" and cfg.ca.tau == 0.6


def test_champion_kept_unless_the_challenger_is_clearly_better(
    registry_with_champion: Registry, column: tuple[Path, Path]
) -> None:
    """With a margin no model can meet, the champion stays; the challenger is still stored."""
    spec, data = column
    report = retrain(registry_with_champion, "col", load_spec(spec), data, margin=0.99, seed=1)
    assert report.decision == "kept"
    assert registry_with_champion.champion("col") == "v1"
    assert report.challenger in registry_with_champion.versions("col")
    assert report.champion_rmse is not None and report.challenger_rmse is not None
    assert all(report.checks.values())


def test_cli_promotes_and_writes_reports(
    registry_with_champion: Registry, column: tuple[Path, Path], tmp_path: Path
) -> None:
    """Margin 0 and a better-trained challenger: promoted, exit 0, JSON and markdown report."""
    spec, data = column
    reports = tmp_path / "reports"
    args = [
        "retrain",
        "--name",
        "col",
        "--spec",
        str(spec),
        "--data",
        str(data),
        "--registry",
        str(registry_with_champion.root),
        "--report-dir",
        str(reports),
        "--margin",
        "0",
    ]
    assert main(args) == 0
    (json_report,) = reports.glob("*.json")
    body = json.loads(json_report.read_text())
    assert body["decision"] in ("promoted", "kept")
    expected = body["challenger"] if body["decision"] == "promoted" else "v1"
    assert registry_with_champion.champion("col") == expected
    better = body["challenger_rmse"] < body["champion_rmse"] and body["beats_linear"]
    assert better == (body["decision"] == "promoted")
    assert set(body["linear_rmse"]) >= {"ridge"}
    assert json_report.with_suffix(".md").read_text().startswith("# Retraining col")


# A recipe that cannot learn much: two hidden neurons from random weights, no linear path.
WEAK = RunConfig(
    network=NetworkConfig(hidden=(2,), linear_path=False),
    train=TrainConfig(epochs=10, lr=1e-2, batch_size=64, progress=False, start_at_linear=False),
    members=1,
)


@pytest.fixture
def weak_champion(column: tuple[Path, Path], tmp_path: Path) -> Registry:
    """A champion of the weak recipe, trained on inputs drowned in noise: a challenger of the
    same recipe on clean data beats it, and ridge beats both."""
    spec, data = column
    ds = load_dataset(load_spec(spec), data, noise_sigma=5.0)
    registry = Registry(tmp_path / "weak")
    publish(ds, run_experiment(ds, WEAK), registry, "col", version="v1")
    return registry


@pytest.mark.parametrize("allow", [False, True])
def test_a_challenger_worse_than_ridge_is_not_promoted_unless_allowed(
    weak_champion: Registry, column: tuple[Path, Path], allow: bool
) -> None:
    """Ridge on the same new data beats the weak recipe's challenger: it stays unpromoted
    (and the report says why) unless --allow-worse-than-linear; then the usual rule holds."""
    spec, data = column
    report = retrain(
        weak_champion,
        "col",
        load_spec(spec),
        data,
        margin=0.0,
        seed=1,
        allow_worse_than_linear=allow,
    )
    assert report.challenger_rmse is not None and report.champion_rmse is not None
    assert report.beats_linear is False
    assert report.challenger_rmse > report.linear_rmse["ridge"]
    assert report.challenger_rmse < report.champion_rmse
    if allow:
        assert report.decision == "promoted" and weak_champion.champion("col") != "v1"
        assert any("--allow-worse-than-linear" in r for r in report.reasons)
    else:
        assert report.decision == "kept" and weak_champion.champion("col") == "v1"
        assert any("worse than ridge regression" in r for r in report.reasons)


def test_cli_fails_with_exit_1_on_bad_data(
    registry_with_champion: Registry, column: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, _ = column
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,x\n2026-01-01,1\n")
    args = [
        "retrain",
        "--name",
        "col",
        "--spec",
        str(spec),
        "--data",
        str(bad),
        "--registry",
        str(registry_with_champion.root),
        "--report-dir",
        str(tmp_path),
    ]
    assert main(args) == 1
    assert registry_with_champion.champion("col") == "v1"


@pytest.mark.slow
def test_sigkill_mid_run_leaves_registry_and_champion_intact(
    registry_with_champion: Registry, column: tuple[Path, Path], tmp_path: Path
) -> None:
    """Kill the job at several moments; every version verifies and the champion is valid."""
    spec, data = column
    registry = registry_with_champion
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    outcomes = []
    for delay in (0.5, 1.5, 2.5, 3.5, 4.5, 6.0):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "retrain",
                "--name",
                "col",
                "--spec",
                str(spec),
                "--data",
                str(data),
                "--registry",
                str(registry.root),
                "--report-dir",
                str(tmp_path / "r"),
                "--margin",
                "0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        outcomes.append(proc.wait())
        champion = registry.champion("col")
        assert champion is not None
        registry.verify("col", champion)
        for version in registry.versions("col"):
            registry.verify("col", version)
    assert -signal.SIGKILL in outcomes  # at least one run really died mid-way


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_lab_results_are_read_from_the_services_state_store(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The retraining job reads the labels the serving pods stored, from the same database,
    without the results that are no measurement (out of range, implausible, future)."""
    import contextlib

    from service.lab.statestore import add_one, open_store
    from training.retrain import read_lab_results

    url = f"sqlite:///{tmp_path / 's.db'}"
    if engine == "postgresql":
        url = request.getfixturevalue("pg_url")
    t0 = 1_767_225_600.0
    with contextlib.closing(open_store(url)) as store:
        add_one(store, "col", t0 + 60, 2.0, t0, 1.9, 0.1, True, None)
        add_one(store, "col", t0, 1.5, t0, None, None, False, None, stream="unit-b")
        add_one(store, "col", t0 + 120, 99.0, t0, None, None, False, "out_of_range")
        add_one(store, "other", t0, 7.0, t0)
    frame = read_lab_results(url, "col")
    assert frame is not None
    assert frame["value"].tolist() == [1.5, 2.0]
    assert [t.timestamp() for t in frame["timestamp"]] == [t0, t0 + 60]
