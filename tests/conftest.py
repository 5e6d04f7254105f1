"""Shared fixtures: small datasets the project makes itself, the plant data when present, and
one real PostgreSQL server per test run (a fresh database per test)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.pgserver import PgServer, PgUnavailableError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEBUTANIZER = SHARED / "datasets" / "debutanizer" / "debutanizer_data.txt"
DEBUTANIZER_SPEC = REPO / "training" / "specs" / "debutanizer.yaml"


@pytest.fixture
def debutanizer_path() -> Path:
    """The real plant file; tests that need it skip with a reason when it is absent."""
    if not DEBUTANIZER.is_file():
        pytest.skip(f"debutanizer data not found at {DEBUTANIZER} (../shared/datasets absent)")
    return DEBUTANIZER


TINY_SPEC = """
name: tiny
source: {format: csv, timestamp: time}
signals:
  - {name: a, unit: degC, range: [-100, 100]}
  - {name: b, unit: kg/h, range: [-100, 100]}
derived:
  - {name: ab, unit: mixed, range: [-100, 100], combine: {a: 0.5, b: 0.5}}
target: {name: q, unit: mol%, range: [-100, 100], analyzer_delay: 2}
features:
  - {signal: a, lags: [0, 1]}
  - {signal: ab, lags: [0]}
  - {signal: q, lags: [2]}
split: {train: 0.6, validation: 0.2, test: 0.2}
"""


def write_tiny_csv(path: Path, n: int = 60, seed: int = 0) -> Path:
    """A small, learnable, time-stamped series: q depends on a, b and its own past."""
    rng = np.random.default_rng(seed)
    a = np.cumsum(rng.normal(size=n)) * 0.3
    b = rng.normal(size=n)
    q = 0.5 * a + 0.2 * b + rng.normal(scale=0.05, size=n)
    lines = ["time,a,b,q"]
    for i in range(n):
        stamp = f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z"
        lines.append(f"{stamp},{a[i]:.6f},{b[i]:.6f},{q[i]:.6f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """(spec, data) of a small CSV with a timestamp column."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    return spec, write_tiny_csv(tmp_path / "tiny.csv")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server started once per test run in a temporary directory."""
    try:
        server = PgServer.start()
    except PgUnavailableError as exc:
        pytest.skip(f"no PostgreSQL server here: {exc}")
    try:
        yield server
    finally:
        server.destroy()


_databases = itertools.count()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the run's server, dropped after the test."""
    from pytest_postgresql.janitor import DatabaseJanitor

    name = f"t{next(_databases)}"
    janitor = DatabaseJanitor(user="postgres", host="127.0.0.1", port=pg_server.port, dbname=name)
    janitor.init()
    try:
        yield pg_server.url(name)
    finally:
        janitor.drop()
