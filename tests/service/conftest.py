"""Service fixtures: a registry holding a real model trained and exported by the project."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.registry import Registry
from service.settings import Settings
from tests.conftest import TINY_SPEC, write_tiny_csv
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.experiment import RunConfig, run_experiment
from training.publish import publish
from training.spec import load_spec


@dataclass
class Published:
    root: Path
    data: Path
    dataset: Dataset
    version: str


def _train(tmp: Path, seed: int = 0) -> tuple[Dataset, object]:
    spec = tmp / "tiny.yaml"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    data = write_tiny_csv(tmp / "tiny.csv", n=120, seed=seed)
    ds = load_dataset(load_spec(spec), data)
    cfg = RunConfig(
        seed=seed,
        network=NetworkConfig(hidden=(12, 8)),
        train=TrainConfig(epochs=25, batch_size=8, lr=3e-3, progress=False),
        ca=CAConfig(tau=0.5),
    )
    return ds, run_experiment(ds, cfg)


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """A registry with model 'tiny' (signals a, b and the analyzer q; lags up to 2)."""
    tmp = tmp_path_factory.mktemp("published")
    ds, report = _train(tmp)
    root = tmp / "models"
    out = publish(ds, report, Registry(root), "tiny", version="v1")  # type: ignore[arg-type]
    return Published(root, tmp / "tiny.csv", ds, out.version)


@pytest.fixture
def registry_copy(published: Published, tmp_path: Path) -> Path:
    """A private copy of the registry that a test may change."""
    import shutil

    root = tmp_path / "models"
    shutil.copytree(published.root, root)
    return root


def make_settings(root: Path, tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = {
        "registry": root,
        "state_dir": tmp_path / "state",
        "watch_interval_s": 0,
        "lab_max_age_s": 1e10,  # the test data is from January 2026
    }
    return Settings.model_validate(base | kw)


@pytest.fixture
def client(published: Published, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(published.root, tmp_path))) as c:
        yield c


def tiny_records(data: Path, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """Rows of the tiny CSV as predict records (a, b and the analyzer value q)."""
    lines = data.read_text().splitlines()[1:]
    out: list[dict[str, Any]] = []
    for line in lines[start:stop]:
        t, a, b, q = line.split(",")
        out.append({"timestamp": t, "values": {"a": float(a), "b": float(b), "q": float(q)}})
    return out


def expected_estimates(published: Published) -> dict[int, float]:
    """What the exported model gives on the rows training assembled, by data row index."""
    from service.registry import MODEL_FILE
    from training.export import run_onnx

    ds = published.dataset
    card = Registry(published.root).verify("tiny", published.version)
    cols = [ds.feature_names.index(f.name) for f in card.features]
    model = Registry(published.root).version_dir("tiny", published.version) / MODEL_FILE
    out: dict[int, float] = {}
    for part in (ds.train, ds.validation, ds.test):
        est = run_onnx(model.read_bytes(), part.x[:, cols])
        out |= dict(zip(part.index.tolist(), est.tolist(), strict=True))
    return out


__all__ = ["Published", "expected_estimates", "make_settings", "np", "tiny_records"]
