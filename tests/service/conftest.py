"""Service fixtures: a registry holding a real model trained and exported by the project."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pytest
from fastapi.testclient import TestClient

from bench.ports import free_port
from service.api.app import create_app
from service.contracts.registry import Registry
from service.settings import Settings
from tests.conftest import TINY_SPEC, write_tiny_csv
from tests.service.engines import state_url, store  # noqa: F401 (the store on each engine)
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.experiment import RunConfig, run_experiment
from training.publish import publish
from training.spec import load_spec

# Property-based tests run a fixed, modest set of examples: derandomized (the same cases on
# every run and machine, so CI is stable), no example database, no per-example deadline (a
# loaded CI box is slow, not wrong). HYPOTHESIS_PROFILE=thorough explores more.
hypothesis.settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, max_examples=60
)
hypothesis.settings.register_profile("thorough", deadline=None, max_examples=2_000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class Published:
    root: Path
    data: Path
    dataset: Dataset
    version: str


def _train(tmp: Path, seed: int = 0, spec_text: str = TINY_SPEC) -> tuple[Dataset, object]:
    spec = tmp / "tiny.yaml"
    spec.write_text(spec_text, encoding="utf-8")
    data = write_tiny_csv(tmp / "tiny.csv", n=120, seed=seed)
    ds = load_dataset(load_spec(spec), data)
    cfg = RunConfig(
        seed=seed,
        network=NetworkConfig(hidden=(12, 8)),
        train=TrainConfig(epochs=25, batch_size=8, lr=3e-3, progress=False),
        ca=CAConfig(tau=0.5),
    )
    return ds, run_experiment(ds, cfg)


def publish_tiny(tmp: Path, spec_text: str = TINY_SPEC) -> Published:
    """The tiny model trained on ``spec_text``, registered as tiny v1 under ``tmp/models``."""
    ds, report = _train(tmp, spec_text=spec_text)
    root = tmp / "models"
    out = publish(ds, report, Registry(root), "tiny", version="v1")  # type: ignore[arg-type]
    return Published(root, tmp / "tiny.csv", ds, out.version)


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """A registry with model 'tiny' (signals a, b and the analyzer q; lags up to 2)."""
    return publish_tiny(tmp_path_factory.mktemp("published"))


# The tiny model with a longer memory: signal a at lags 0, 1 and 6 (history 6 rows).
LONG_SPEC = TINY_SPEC.replace("{signal: a, lags: [0, 1]}", "{signal: a, lags: [0, 1, 6]}")


@pytest.fixture(scope="session")
def published_long(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """A registry with model 'tiny' whose lags reach 6 rows back (one-row streams need them)."""
    return publish_tiny(tmp_path_factory.mktemp("published_long"), LONG_SPEC)


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


def copy_version(root: Path, source: str, version: str) -> Registry:
    """Register the model of ``source`` again as ``version`` (a good new version to swap in)."""
    registry = Registry(root)
    src = registry.version_dir("tiny", source)
    files = {f: (src / f).read_bytes() for f in ("model.onnx", "card.json", "card.md")}
    card = json.loads(files["card.json"])
    card["version"] = version
    files["card.json"] = json.dumps(card).encode()
    registry.write_version("tiny", version, files)
    return registry


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
    from service.contracts.registry import MODEL_FILE
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


__all__ = [
    "Published",
    "ServerProcess",
    "copy_version",
    "expected_estimates",
    "free_port",
    "make_settings",
    "np",
    "publish_tiny",
    "serving",
    "start_server",
    "tiny_records",
]


# ---- a real `softsensor serve` process on loopback (kill tests, fuzzing, log capture) -------

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServerProcess:
    """A `softsensor serve` child whose output goes to a file, so it survives a SIGKILL."""

    proc: Any  # subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_until(self, path: str, status: int = 200, timeout: float = 60.0) -> None:
        """Poll ``path`` until it answers ``status``; fail with the server's output if it dies."""
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == status:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{path} did not answer {status} in {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        """SIGTERM and wait (a killed process is only reaped)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)


def start_server(
    registry: Path,
    state: Path,
    log: Path,
    env: dict[str, str] | None = None,
    *,
    debug: bool = False,
) -> ServerProcess:
    """Start `softsensor serve` (the CLI entry point, one uvicorn worker) on a free port.

    Its environment is this process's plus ``env``; nothing waits for readiness, since some
    tests start it on purpose with nothing to serve. ``debug`` runs uvicorn itself on the
    same app factory at log level debug with its access log on: everything that could be
    logged is.
    """
    import os
    import subprocess
    import sys

    port = free_port()
    full = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOFTSENSOR_WATCH_INTERVAL_S": "0",
        "SOFTSENSOR_LAB_MAX_AGE_S": "1e10",
        **(env or {}),
    }
    if debug:
        full |= {"SOFTSENSOR_REGISTRY": str(registry), "SOFTSENSOR_STATE_DIR": str(state)}
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.api.asgi:create"]
        cmd += ["--port", str(port), "--log-level", "debug"]
    else:
        cmd = [sys.executable, "-m", "service.cli", "serve", "--registry", str(registry)]
        cmd += ["--state-dir", str(state), "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=full, stdout=out, stderr=subprocess.STDOUT)
    return ServerProcess(proc, f"http://127.0.0.1:{port}", log)


@contextlib.contextmanager
def serving(
    registry: Path, tmp: Path, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A real `softsensor serve` on ``registry`` (state and log under ``tmp``), ready;
    stopped on leaving."""
    proc = start_server(registry, tmp / "state", tmp / "server.log", env)
    try:
        proc.wait_until("/v2/health/ready")
        yield proc
    finally:
        proc.stop()
