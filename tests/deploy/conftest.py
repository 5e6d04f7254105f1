"""Deployment helpers: the settings and the command line the manifests must agree with."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping

import pytest

from service.cli.main import build_parser
from service.settings import Settings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"


def settings_from_env(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as the service reads them from this environment (and nothing else).

    Every key must be a SOFTSENSOR_* setting that exists: pydantic-settings ignores unknown
    keys, so a misspelt one would silently leave the default in force.
    """
    known = {f"SOFTSENSOR_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(set(env) - known)
    assert not unknown, f"not settings of service/settings.py: {unknown}"
    for key in [k for k in os.environ if k.startswith("SOFTSENSOR_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def parse_cli(args: list[str]) -> argparse.Namespace:
    """The ``softsensor`` parser's reading of ``args``; a command it rejects fails the test."""
    try:
        return build_parser().parse_args(args)
    except SystemExit as exc:  # argparse exits on a bad command line
        raise AssertionError(f"softsensor rejects: {shlex.join(args)}") from exc
