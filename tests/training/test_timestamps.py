"""Dates written day first or month first (04.01.2026): read the way the file's times run
forward, or as the spec says; ISO dates as they say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY_SPEC
from training.data import load_dataset
from training.errors import DataError
from training.spec import load_spec
from training.timestamps import read_times

START = datetime(2026, 1, 1, tzinfo=UTC)


def _tiny(tmp_path: Path, first_day: int, fmt: str, spec_extra: str = "") -> tuple[Path, Path]:
    """The tiny series, one row an hour for five days from ``first_day`` January."""
    rng = np.random.default_rng(0)
    n = 120
    a = np.cumsum(rng.normal(size=n)) * 0.3
    b = rng.normal(size=n)
    q = 0.5 * a + 0.2 * b + rng.normal(scale=0.05, size=n)
    t0 = START + timedelta(days=first_day - 1)
    lines = ["time,a,b,q"] + [
        f"{(t0 + timedelta(hours=i)).strftime(fmt)},{a[i]:.6f},{b[i]:.6f},{q[i]:.6f}"
        for i in range(n)
    ]
    data = tmp_path / "tiny.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        TINY_SPEC.replace("timestamp: time}", f"timestamp: time{spec_extra}}}"), encoding="utf-8"
    )
    return spec, data


def _first_and_last(spec: Path, data: Path) -> tuple[str, str]:
    ds = load_dataset(load_spec(spec), data)
    assert ds.timestamps is not None
    return ds.timestamps[0][:10], ds.timestamps[-1][:10]


def test_day_first_dates_read_as_the_file_runs_forward(tmp_path: Path) -> None:
    """10.01 to 14.01: month first, 10.01 would be 1 October and 13.01 go back in time."""
    spec, data = _tiny(tmp_path, 10, "%d.%m.%Y %H:%M")
    assert _first_and_last(spec, data) == ("2026-01-10", "2026-01-14")


def test_month_first_dates_read_as_the_file_runs_forward(tmp_path: Path) -> None:
    spec, data = _tiny(tmp_path, 10, "%m/%d/%Y %H:%M")
    assert _first_and_last(spec, data) == ("2026-01-10", "2026-01-14")


def test_dates_that_run_forward_either_way_are_refused_until_the_spec_says(
    tmp_path: Path,
) -> None:
    """1 to 5 January written day first runs forward month first too (as 1 January to
    1 May): the load stops and names the setting; with it, the dates are right."""
    spec, data = _tiny(tmp_path, 1, "%d.%m.%Y %H:%M")
    with pytest.raises(DataError, match=r"source\.dayfirst") as caught:
        load_dataset(load_spec(spec), data)
    assert "'02.01.2026 00:00'" in str(caught.value)  # the first cell read two ways
    day, _ = _tiny(tmp_path, 1, "%d.%m.%Y %H:%M", ", dayfirst: true")
    assert _first_and_last(day, data) == ("2026-01-01", "2026-01-05")


def test_iso_dates_are_read_as_they_say_whatever_the_spec_declares() -> None:
    raw = pd.Series(["2026-04-01T00:00:00Z", "2026-04-02 00:00"])
    times, read = read_times(raw, dayfirst=True)
    assert [t.isoformat()[:10] for t in times] == ["2026-04-01", "2026-04-02"]
    assert read is True
    assert read_times(raw)[1] is None  # nothing to decide
