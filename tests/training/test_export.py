"""ONNX export: checker passes, onnxruntime agrees with torch, pruned structure is gone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from service.cli.main import main
from service.contracts.card import ModelCard
from service.contracts.registry import Registry
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.experiment import RunConfig, RunReport, run_experiment
from training.export import ExportError, export_onnx, run_onnx
from training.pruning import prune_connections
from training.publish import export_run, publish
from training.spec import load_spec


@pytest.fixture
def trained(tiny: tuple[Path, Path]) -> tuple[Dataset, RunReport]:
    spec, data = tiny
    ds = load_dataset(load_spec(spec), data)
    cfg = RunConfig(
        network=NetworkConfig(hidden=(16, 8)),
        # a random start and two members: a pruned chain, a linear path, and an ensemble
        train=TrainConfig(epochs=30, batch_size=8, lr=3e-3, progress=False, start_at_linear=False),
        ca=CAConfig(tau=0.8, stop_after_val_rises=0),
        members=2,
    )
    return ds, run_experiment(ds, cfg)


def test_export_passes_checker_and_matches_torch(trained: tuple[Dataset, RunReport]) -> None:
    """full_check passes; onnxruntime equals torch on validation and test within 1e-5 x range."""
    ds, report = trained
    exported = export_run(ds, report)
    model = onnx.load_from_string(exported.onnx_bytes)
    onnx.checker.check_model(model, full_check=True)
    rows = np.vstack([ds.validation.x, ds.test.x])
    torch_out = report.predict(rows)
    onnx_out = run_onnx(exported.onnx_bytes, rows[:, exported.inputs_kept])
    y = np.concatenate([ds.train.y, ds.validation.y, ds.test.y])
    assert np.max(np.abs(onnx_out - torch_out)) <= 1e-5 * np.ptp(y)
    assert exported.max_parity_error <= 1e-5 * np.ptp(y)


def test_removed_neurons_and_inputs_are_gone_from_the_graph(
    trained: tuple[Dataset, RunReport],
) -> None:
    """MatMul weight shapes are the shrunk ones; the input has only the kept features."""
    ds, report = trained
    exported = export_run(ds, report)
    graph = onnx.load_from_string(exported.onnx_bytes).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            shapes[node.output[0]] = tuple(node.attribute[0].sparse_tensor.dims)
    expected = [w.T.shape for w in report.shrunk.weights]
    assert [shapes[f"W{i}"] for i in range(len(expected))] == expected
    n_in = graph.input[0].type.tensor_type.shape.dim[1].dim_value
    assert n_in == len(report.shrunk.inputs_kept) == expected[0][0]
    assert expected[0][1] < 16 or expected[1][1] < 8  # tau 0.8 removes neurons


def test_sparse_storage_is_used_where_smaller() -> None:
    """A mostly-zero matrix is stored sparsely, and the graph still computes the same."""
    from training.scaling import Standardizer
    from training.shrink import dense_architecture, shrink

    torch.manual_seed(0)
    from training.network import MaskedMLP

    model = MaskedMLP(40, 1, NetworkConfig(hidden=(30,), linear_path=False))
    layer = model.masked_layers()[0]
    drop = torch.rand(layer.mask.shape, generator=torch.Generator().manual_seed(0)) < 0.9
    drop[:, 0] = False  # every neuron keeps an input and every input stays in use
    drop[0, :] = False
    prune_connections(layer, drop, None)
    x = np.random.default_rng(0).normal(size=(64, 40))
    xs, ys = Standardizer().fit(x), Standardizer().fit(np.arange(64.0))
    dense = dense_architecture(model)
    net = shrink(model)
    with torch.no_grad():
        z = torch.as_tensor(xs.transform(x), dtype=torch.float32)
        ref = ys.inverse_transform(model(z).double().numpy()).ravel()
    exported = export_onnx(net, dense, xs, ys, x, ref, tolerance=1e-4)
    assert "W0" in exported.sparse_initializers
    assert len(exported.onnx_bytes) < 0.6 * exported.dense_onnx_bytes


def test_export_refuses_a_graph_that_disagrees(trained: tuple[Dataset, RunReport]) -> None:
    """If onnxruntime and torch disagree, export fails and returns nothing."""
    ds, report = trained
    e = report.ensemble
    rows = ds.test.x
    wrong = report.predict(rows) + 1.0
    with pytest.raises(ExportError, match="disagrees with torch"):
        export_onnx(report.shrunk, report.dense, e.x_scaler, e.y_scaler, rows, wrong, 1e-5)


def test_export_refuses_a_collapsed_network(trained: tuple[Dataset, RunReport]) -> None:
    """With the first hidden layer and the linear path gone, no input reaches the output."""
    ds, report = trained
    r = report.result
    model = r.model
    for layer in (model.chain_layers()[0], model.linear):
        assert layer is not None
        prune_connections(layer, torch.ones_like(layer.mask, dtype=torch.bool), None)
    from training.shrink import dense_architecture, shrink

    dense = dense_architecture(model)
    with pytest.raises(ExportError, match="no longer connects any input"):
        export_onnx(shrink(model), dense, r.x_scaler, r.y_scaler, ds.test.x, ds.test.y, 1.0)


def test_publish_writes_a_verified_version_and_champion(
    trained: tuple[Dataset, RunReport], tmp_path: Path
) -> None:
    """The card training writes is the card the registry (and so the service) accepts."""
    ds, report = trained
    registry = Registry(tmp_path / "models")
    first = publish(ds, report, registry, "tiny")
    assert first.champion and registry.champion("tiny") == first.version
    card = registry.verify("tiny", first.version)
    assert isinstance(card, ModelCard)
    assert [f.name for f in card.features] == [
        ds.feature_names[i] for i in first.exported.inputs_kept
    ]
    assert card.onnx_bytes == len((first.path / "model.onnx").read_bytes())
    assert card.pruning.config["tau"] == 0.8
    assert set(card.residual_quantiles) >= {"0.05", "0.5", "0.95"}
    assert (first.path / "card.md").read_text().startswith(f"# tiny {first.version}")
    second = publish(ds, report, registry, "tiny", version="v2")
    assert not second.champion and registry.champion("tiny") == first.version


def test_models_cli_list_show_promote_rollback(
    trained: tuple[Dataset, RunReport], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, report = trained
    root = tmp_path / "models"
    registry = Registry(root)
    v1 = publish(ds, report, registry, "tiny", version="v1").version
    publish(ds, report, registry, "tiny", version="v2")
    reg = ["--registry", str(root)]
    assert main(["models", "promote", *reg, "tiny", "v2"]) == 0
    assert registry.champion("tiny") == "v2"
    assert main(["models", "list", *reg]) == 0
    assert "* tiny v2" in capsys.readouterr().out
    assert main(["models", "rollback", *reg, "tiny"]) == 0
    assert registry.champion("tiny") == v1
    capsys.readouterr()
    assert main(["models", "show", *reg, "tiny", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["card"]["version"] == v1
    assert [h["action"] for h in shown["history"]] == ["promote", "promote", "rollback"]
    assert main(["models", "promote", *reg, "tiny", "v9"]) == 1
    assert "v9" in capsys.readouterr().err


def test_train_register_uses_the_environment_registry(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--register writes into $SOFTSENSOR_REGISTRY when --registry is not given."""
    spec, data = tiny
    root = tmp_path / "env-models"
    monkeypatch.setenv("SOFTSENSOR_REGISTRY", str(root))
    code = main(
        [
            "train",
            "--spec",
            str(spec),
            "--data",
            str(data),
            "--epochs",
            "10",
            "--hidden",
            "8",
            "--quiet",
            "--out",
            str(tmp_path / "o"),
            "--register",
            "tiny",
        ]
    )
    assert code == 0
    assert Registry(root).champion("tiny") is not None


def test_train_promote_serves_the_version_it_trained(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run twice into one registry (a newcomer running the quickstart again): without
    --promote the second version waits beside the first champion; with it, it is the
    champion, and the history says who and why. --promote alone is refused."""
    spec, data = tiny
    root = tmp_path / "models"

    def train(out: str, *extra: str) -> int:  # a seed per run: versions differ in content
        seed = str(ord(out))
        base = ["train", "--spec", str(spec), "--data", str(data), "--epochs", "10", "--seed", seed]
        base += ["--hidden", "8", "--quiet", "--out", str(tmp_path / out)]
        return main([*base, "--registry", str(root), *extra])

    assert train("a", "--register", "tiny") == 0
    registry = Registry(root)
    first = registry.champion("tiny")
    assert train("b", "--register", "tiny") == 0
    assert registry.champion("tiny") == first
    capsys.readouterr()
    assert train("c", "--register", "tiny", "--promote") == 0
    said = capsys.readouterr().out
    newest = said.split("registered tiny ", 1)[1].split()[0]
    assert registry.champion("tiny") == newest != first
    assert "now champion" in said
    change = registry.history("tiny")[-1]
    assert change.action == "promote" and "--promote" in (change.reason or "")
    with pytest.raises(SystemExit):
        train("d", "--promote")
    assert "--promote needs --register" in capsys.readouterr().err
