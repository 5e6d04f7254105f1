"""A real server process on loopback: `softsensor serve`, HTTP keep-alive, the pointer watcher."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.ports import free_port
from tests.service.conftest import Published, copy_version, tiny_records

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(registry_copy: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOFTSENSOR_WATCH_INTERVAL_S": "0.2",
        "SOFTSENSOR_LAB_MAX_AGE_S": "1e10",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--registry",
            str(registry_copy),
            "--state-dir",
            str(tmp_path / "state"),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.1)
        else:
            raise AssertionError("server did not become ready in 60 s")
        yield url, registry_copy
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_real_server_predicts_stores_and_picks_up_a_new_champion(
    server: tuple[str, Path], published: Published
) -> None:
    url, root = server
    records = tiny_records(published.data, 0, 10)
    with httpx.Client(base_url=url, timeout=10) as client:  # one keep-alive connection
        r = client.post("/v1/predict", json={"records": records})
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        assert len(rows) == 10 and r.json()["model_version"] == published.version
        lab = {
            "results": [
                {"sample_time": records[9]["timestamp"], "value": rows[9]["estimate"] + 0.01}
            ]
        }
        outcome = client.post("/v1/lab-results", json=lab).json()["outcomes"][0]
        assert outcome["accepted"] and outcome["bias"] > 0
        assert "softsensor_bias" in client.get("/metrics").text
        # a new version becomes champion on disk: the watcher swaps it in, no request needed
        copy_version(root, published.version, "v2").promote("tiny", "v2")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if client.get("/v1/models").json()[0]["version"] == "v2":
                break
            time.sleep(0.1)
        r = client.post("/v1/predict", json={"records": records[:3]})
        assert r.json()["model_version"] == "v2"
        assert r.json()["bias"] == pytest.approx(outcome["bias"])  # the bias survives a swap
        assert (
            client.post(
                "/v1/predict", content=b"{", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )


def test_serving_never_imports_torch() -> None:
    """The serving image has no torch: the service and the serve command must not need it."""
    code = (
        "import sys, importlib, pkgutil, service, service.cli.main as cli\n"
        "for m in pkgutil.iter_modules(service.__path__):\n"
        "    importlib.import_module(f'service.{m.name}')\n"
        "cli.build_parser()\n"
        "bad = [m for m in ('torch', 'pandas', 'onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
