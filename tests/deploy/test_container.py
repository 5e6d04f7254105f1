"""The container images: the Dockerfile's promises, and (slow) the serving image built and run.

The slow test runs scripts/container_test.sh: build the serving image with podman (no Docker),
check torch is absent, and serve a real model from the image's read-only file system as its
non-root user. It needs root, podman, debootstrap (or the base image already imported) and
network access to Debian and PyPI; it skips with the reason when those are missing, or when
SOFTSENSOR_CONTAINER_TEST=0.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from service.settings import Settings
from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
SCRIPT = REPO / "scripts" / "container_test.sh"
BASE_IMAGE = "localhost/bookworm-min:local"


def _stage(name: str) -> str:
    """The Dockerfile text of one stage, up to the next FROM."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", text, flags=re.M | re.S)
    assert match is not None, f"no stage {name}"
    return match.group(1)


def _instruction(stage: str, keyword: str) -> list[str]:
    lines = stage.replace("\\\n", " ").splitlines()
    return [line.split(None, 1)[1] for line in lines if line.startswith(keyword + " ")]


def test_serving_dependencies_have_no_torch() -> None:
    """The project without extras (what the serving image installs) does not require torch."""
    base = [Requirement(r) for r in requires("softsensor") or []]
    plain = {r.name.lower() for r in base if r.marker is None}
    assert "onnxruntime" in plain and "fastapi" in plain
    assert not {"torch", "onnx", "pandas"} & plain
    assert "torch" in {r.name for r in base if r.marker is not None}  # only in the extra


def test_dockerfile_serving_stage() -> None:
    """Public slim default base, non-root numeric user, health check, entrypoint, volumes."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG BASE=python:3\.11-slim-bookworm$", text, flags=re.M)
    serving = _stage("serving")
    assert _instruction(serving, "USER") == ["10001:10001"]
    assert _instruction(serving, "ENTRYPOINT") == ['["/opt/venv/bin/softsensor", "serve"]']
    assert _instruction(serving, "VOLUME") == ['["/var/lib/softsensor"]']
    (health,) = _instruction(serving, "HEALTHCHECK")
    assert "/v2/health/ready" in health
    assert "COPY --from=venv-serving /opt/venv /opt/venv" in serving
    assert "pip" not in serving.replace("PIP_", "")  # nothing is installed in the final stage


def test_dockerfile_env_defaults_are_settings() -> None:
    """Every SOFTSENSOR_* default the image sets is a real setting; host 0.0.0.0, /models."""
    env = " ".join(_instruction(_stage("serving"), "ENV"))
    pairs = dict(re.findall(r"(SOFTSENSOR_[A-Z_]+)=(\S+)", env))
    known = {f"SOFTSENSOR_{name.upper()}" for name in Settings.model_fields}
    assert set(pairs) <= known
    assert pairs["SOFTSENSOR_HOST"] == "0.0.0.0"
    assert pairs["SOFTSENSOR_REGISTRY"] == "/models"
    assert pairs["SOFTSENSOR_STATE_DIR"] == "/var/lib/softsensor"


def test_dockerignore_keeps_the_context_small() -> None:
    """An allow-list: sources and metadata in; venv, runs, .git out."""
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "service",
        "training",
        "models",
    }


def _skip_reason() -> str | None:
    if os.environ.get("SOFTSENSOR_CONTAINER_TEST") == "0":
        return "SOFTSENSOR_CONTAINER_TEST=0"
    if os.geteuid() != 0:
        return "needs root (podman image mount, chroot, mount namespaces)"
    for tool in ("podman", "chroot", "unshare", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian: apt-get install podman)"
    if shutil.which("debootstrap") is None:
        known = subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False)
        if known.returncode != 0:
            return f"debootstrap not installed and no {BASE_IMAGE} image to build on"
    return None


@pytest.mark.slow
def test_serving_image_builds_and_serves_without_torch(tmp_path: Path) -> None:
    """Build the serving image, then serve a real model from it: no torch, non-root, ready."""
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(f"container test skipped: {reason}")
    report_path = tmp_path / "report.json"
    env = os.environ | {"REPORT": str(report_path), "IMAGE": "localhost/softsensor:pytest"}
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["torch"]["site_packages_dirs"] == []
    assert "No module named 'torch'" in report["torch"]["import_error"]
    assert report["pip_in_image"] is False and report["build_tools_in_image"] == []
    assert report["read_only_root"] is True
    assert report["server_process_uid"] == 10001 and report["user"] == "10001:10001"
    assert report["predict"]["status"] == 200
    assert math.isfinite(report["predict"]["estimate"])
    assert report["lab_result"]["stored"] is True
    assert report["lab_result"]["state_file_owner_uid"] == 10001
    assert report["healthcheck_passed"] is True
    assert report["hot_swap"]["served_after"] == report["hot_swap"]["to"]
    assert report["hot_swap"]["to"] != report["hot_swap"]["from"]
    assert 0 < report["size_bytes"] < 600e6
