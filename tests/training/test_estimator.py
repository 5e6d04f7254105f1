"""The estimator family: a linear path beside the hidden layers, started at ridge and pruned
by CA too; the run that ends at its linear model; target transforms inside the graph;
ensembles as one graph; the baselines and what the card and report say about them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from service.contracts.registry import Registry
from tests.conftest import TINY_SPEC, write_tiny_csv
from training.appraisal import CAPruner
from training.card_markdown import render_markdown
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.ensemble import merge
from training.evaluation import fit_ridge
from training.experiment import RunConfig, run_experiment
from training.export import run_onnx
from training.network import MaskedMLP
from training.pruning import prune_connections
from training.publish import export_run, publish
from training.shrink import shrink
from training.spec import load_spec

FAST = TrainConfig(epochs=20, batch_size=8, lr=3e-3, progress=False)
NO_REFIT = replace(FAST, refit=False)  # the first fit itself, as validation judged it


def _tiny(tmp_path: Path, spec_text: str = TINY_SPEC, n: int = 80) -> Dataset:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(spec_text, encoding="utf-8")
    return load_dataset(load_spec(spec), write_tiny_csv(tmp_path / "tiny.csv", n=n))


def test_the_family_contains_the_linear_model() -> None:
    """Started at a linear model, the network computes exactly it (chain output zero)."""
    torch.manual_seed(0)
    model = MaskedMLP(5, 1, NetworkConfig(hidden=(8, 4)))
    w, b = torch.randn(5), torch.tensor([0.3])
    model.start_at_linear(w, b)
    x = torch.randn(32, 5)
    with torch.no_grad():
        assert torch.allclose(model(x).ravel(), x @ w + b, atol=1e-6)


def test_training_starts_at_the_ridge_solution(tmp_path: Path) -> None:
    """Before the first step the run's validation RMSE is ridge's (alpha by validation)."""
    ds = _tiny(tmp_path)
    report = run_experiment(
        ds, RunConfig(network=NetworkConfig(hidden=(8,)), train=NO_REFIT, members=1)
    )
    ridge = fit_ridge(ds.train.x, ds.train.y, ds.validation.x, ds.validation.y)
    ridge_val = float(np.sqrt(np.mean((ridge.predict(ds.validation.x) - ds.validation.y) ** 2)))
    assert report.result.start_val_rmse == pytest.approx(ridge_val, rel=1e-3)


def test_a_run_that_cannot_beat_ridge_on_validation_ends_at_it(tmp_path: Path) -> None:
    """A learning rate that wrecks training: nothing after pruning beats the ridge start, so
    the result is the linear model itself, with the hidden chain removed."""
    ds = _tiny(tmp_path)
    cfg = RunConfig(
        network=NetworkConfig(hidden=(8,)),
        train=TrainConfig(epochs=10, batch_size=8, lr=5.0, progress=False, refit=False),
        members=1,
    )
    report = run_experiment(ds, cfg)
    assert report.result.ended_linear and report.metrics["ended_linear"] == 1
    assert not report.shrunk.has_chain
    assert report.metrics["val_rmse"] == pytest.approx(report.result.start_val_rmse, rel=1e-6)
    exported = export_run(ds, report)
    graph = onnx.load_from_string(exported.onnx_bytes).graph
    assert {n.op_type for n in graph.node} <= {"Sub", "MatMul", "Add", "Constant"}
    rows = ds.test.x[:, exported.inputs_kept]
    np.testing.assert_allclose(
        run_onnx(exported.onnx_bytes, rows), report.predict(ds.test.x), atol=1e-5
    )


def _ca_on(model: MaskedMLP, **knobs: object) -> tuple[CAPruner, torch.optim.Optimizer]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pruner = CAPruner(CAConfig(patience=1, max_prune_fraction=1.0, **knobs))  # type: ignore[arg-type]
    pruner.start(model, opt, 100)
    pruner.schedule = type(pruner.schedule)(100, 0, 100)  # appraise from the first epoch
    return pruner, opt


def test_ca_appraises_the_linear_path_and_may_empty_the_chain() -> None:
    """With a linear path, the output keeps its strongest *linear* input; the chain's output
    layer can lose every connection, and clean-up then removes the whole chain."""
    torch.manual_seed(0)
    model = MaskedMLP(5, 1, NetworkConfig(hidden=(4,)))
    pruner, opt = _ca_on(model, tau=10.0)
    chain_out, linear = model.chain_layers()[-1], model.linear
    assert linear is not None and model.masked_layers()[-1] is linear
    pruner.scores_[1].copy_(torch.tensor([[0.1, 0.2, 0.05, 0.3]]))
    pruner.scores_[2].copy_(torch.tensor([[0.1, 0.9, 0.2, 0.3, 0.4]]))
    pruner.end_epoch(0, model, opt, 1.0)
    assert chain_out.mask.sum() == 0
    assert linear.mask.tolist() == [[0.0, 1.0, 0.0, 0.0, 0.0]]
    net = shrink(model)
    assert not net.has_chain and net.inputs_kept == [1]


def test_an_input_is_deselected_only_when_both_paths_drop_it() -> None:
    torch.manual_seed(0)
    model = MaskedMLP(4, 1, NetworkConfig(hidden=(3,)))
    first, linear = model.chain_layers()[0], model.linear
    assert linear is not None
    chain_drop = torch.zeros_like(first.mask, dtype=torch.bool)
    chain_drop[:, 0] = chain_drop[:, 1] = True  # inputs 0 and 1 leave the chain
    prune_connections(first, chain_drop, None)
    prune_connections(linear, torch.tensor([[True, False, False, True]]), None)  # 0 and 3
    x = np.random.default_rng(0).normal(size=(50, 4))
    with torch.no_grad():
        before = model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    net = shrink(model)
    assert net.inputs_kept == [1, 2, 3]  # 1 via the linear path, 3 via the chain
    np.testing.assert_allclose(net.predict(x), before, atol=1e-5)


def test_merged_members_compute_their_mean() -> None:
    """The ensemble is one network: chains side by side, output layers and paths averaged."""
    torch.manual_seed(0)
    nets, outs = [], []
    x = np.random.default_rng(1).normal(size=(40, 6))
    for k in range(3):
        model = MaskedMLP(6, 1, NetworkConfig(hidden=(5, 4)))
        first = model.chain_layers()[0]
        drop = torch.zeros_like(first.mask, dtype=torch.bool)
        drop[:, k] = True  # each member drops another input from its chain
        prune_connections(first, drop, None)
        if k == 2:  # and one ends linear
            last = model.chain_layers()[-1]
            prune_connections(last, last.mask.bool(), None)
        with torch.no_grad():
            outs.append(model(torch.as_tensor(x, dtype=torch.float32)).double().numpy())
        nets.append(shrink(model))
    merged = merge(nets)
    np.testing.assert_allclose(merged.predict(x), np.mean(outs, axis=0), atol=1e-5)
    assert merged.weights[1].shape == (8, 10)  # two chains of (5, 4) side by side
    assert np.count_nonzero(merged.weights[1]) <= 2 * 5 * 4  # block-diagonal


LOG_SPEC = TINY_SPEC.replace(
    "target: {name: q, unit: mol%, range: [-100, 100], analyzer_delay: 2}",
    "target: {name: q, unit: mol%, range: [-5, 100], analyzer_delay: 2, transform: TRANSFORM}",
)


@pytest.mark.parametrize("transform", ["log", "logit"])
def test_target_transform_is_inverted_inside_the_graph(tmp_path: Path, transform: str) -> None:
    """The network learns the transformed target; the graph ends with its inverse, so the
    service still gets engineering units, equal to torch's, and never beyond the bound."""
    ds = _tiny(tmp_path, LOG_SPEC.replace("TRANSFORM", transform))
    cfg = RunConfig(network=NetworkConfig(hidden=(8,)), train=FAST, members=2)
    report = run_experiment(ds, cfg)
    assert report.metrics["target_transform"] == transform
    assert "ridge_transformed" in report.metrics["baseline"]
    exported = export_run(ds, report)
    ops = {n.op_type for n in onnx.load_from_string(exported.onnx_bytes).graph.node}
    assert ("Exp" if transform == "log" else "Sigmoid") in ops
    rows = np.vstack([ds.validation.x, ds.test.x])
    onnx_out = run_onnx(exported.onnx_bytes, rows[:, exported.inputs_kept])
    np.testing.assert_allclose(onnx_out, report.predict(rows), rtol=1e-4, atol=1e-4)
    far = rows * 50.0  # far outside training: the inverse still respects the declared range
    assert np.all(run_onnx(exported.onnx_bytes, far[:, exported.inputs_kept]) > -5.0)


def test_labels_where_the_transform_is_undefined_are_left_out_and_warned(tmp_path: Path) -> None:
    """log needs y above the range's low end: such labels are counted like any outside it."""
    ds = _tiny(
        tmp_path,
        LOG_SPEC.replace("range: [-5, 100]", "range: [0, 100]").replace("TRANSFORM", "log"),
    )
    raw = np.genfromtxt(tmp_path / "tiny.csv", delimiter=",", skip_header=1)[:, 3]
    assert ds.target_out_of_range == int(np.sum(raw <= 0)) > 0
    assert "log transform also needs values above 0" in ds.warnings[0]
    assert np.all(np.concatenate([ds.train.y, ds.validation.y, ds.test.y]) > 0)


def test_every_run_reports_its_baselines(tmp_path: Path) -> None:
    """Ridge (alpha by validation) and persistence of the lagged analyzer value, on the same
    split, in metrics; the card and card.md show them beside the network, with units."""
    ds = _tiny(tmp_path)
    report = run_experiment(
        ds, RunConfig(network=NetworkConfig(hidden=(8,)), train=FAST, members=2)
    )
    block = report.metrics["baseline"]
    assert set(block) == {"ridge", "persistence"}
    assert block["persistence"]["feature"] == "q_lag2"
    np.testing.assert_allclose(
        block["persistence"]["test"]["analyzer"]["rmse"],
        np.sqrt(np.mean((ds.test.x[:, 3] - ds.test.y) ** 2)),
    )
    assert block["ridge"]["alpha"] > 0 and block["ridge"]["validation"]["analyzer"]["rows"] == len(
        ds.validation
    )
    registry = Registry(tmp_path / "models")
    card = publish(ds, report, registry, "tiny").card
    assert card.baseline["ridge"].metrics["test"].rmse == block["ridge"]["test"]["analyzer"]["rmse"]
    assert card.ensemble is not None and card.ensemble.members == 2
    assert card.lag_selection["a"].candidates == [0, 1]
    text = render_markdown(card)
    assert "RMSE (mol%)" in text and "| ridge regression, alpha" in text
    assert "| latest analyzer value (q_lag2) |" in text
    assert "Inputs kept:" in text


def test_progress_bar_shows_validation_rmse_in_the_target_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = _tiny(tmp_path)
    cfg = RunConfig(
        network=NetworkConfig(hidden=(8,)),
        train=TrainConfig(epochs=3, batch_size=8, progress=True),
        members=1,
    )
    run_experiment(ds, cfg)
    err = capsys.readouterr().err
    assert "val RMSE" in err and " mol%, pruned" in err


def test_tuning_searches_on_validation_within_its_budget(tmp_path: Path) -> None:
    """Seeded: the same budget gives the same choice; the first trial is the default."""
    from training.tuning import tune

    ds = _tiny(tmp_path)
    base = RunConfig(network=NetworkConfig(hidden=(8,)), train=FAST, members=2)
    a = tune(ds, base, seconds=60, trials=3)
    b = tune(ds, base, seconds=60, trials=3)
    assert a.params == b.params and len(a.trials) == 3
    assert a.best_val_rmse == min(t["val_rmse"] for t in a.trials)
    assert a.config.members == 2  # the search trains one network, the result all members
    first = a.trials[0]["params"]
    assert first["tau"] == 0.5 and first["lr"] == pytest.approx(FAST.lr)


def test_cli_tune_records_the_search(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    data = write_tiny_csv(tmp_path / "tiny.csv", n=80)
    from service.cli.main import main

    out = tmp_path / "run"
    args = ["train", "--spec", str(spec), "--data", str(data), "--out", str(out), "--quiet"]
    assert main([*args, "--epochs", "5", "--members", "1", "--tune", "--tune-trials", "2"]) == 0
    tuning = json.loads((out / "metrics.json").read_text())["tuning"]
    assert len(tuning["trials"]) == 2 and tuning["stopped_by"] == "trials"
