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
from training.errors import DataError, SpecError
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


def _local_export(
    tmp_path: Path, start: str, hours: int, spec_extra: str = ""
) -> tuple[Path, Path]:
    """The tiny series every 10 minutes from ``start`` as a Berlin clock shows it (no
    offset), as historians export local time: over 25 October the hour 02:00-03:00 is
    written twice."""
    clock = pd.date_range(start, periods=hours * 6, freq="10min", tz="Europe/Berlin")
    rng = np.random.default_rng(1)
    a = np.cumsum(rng.normal(size=len(clock))) * 0.3
    b = rng.normal(size=len(clock))
    q = 0.5 * a + 0.2 * b + rng.normal(scale=0.05, size=len(clock))
    shown = clock.tz_localize(None).strftime("%d.%m.%Y %H:%M")
    rows = zip(shown, a, b, q, strict=True)
    lines = ["time,a,b,q"] + [f"{t},{x:.6f},{v:.6f},{y:.6f}" for t, x, v, y in rows]
    data = tmp_path / "local.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = tmp_path / "local.yaml"
    extra = ", dayfirst: true" + spec_extra
    spec.write_text(
        TINY_SPEC.replace("timestamp: time}", f"timestamp: time{extra}}}"), encoding="utf-8"
    )
    return spec, data


def test_local_times_over_the_end_of_summer_time_read_in_the_plant_zone(tmp_path: Path) -> None:
    """Without a zone the repeated hour is out of order, and the error says what to name;
    with ``source.timezone`` the rows are ten minutes apart in UTC across the change."""
    spec, data = _local_export(tmp_path, "2026-10-24 12:00", 24)
    with pytest.raises(DataError, match=r"end of summer time.*source\.timezone") as caught:
        load_dataset(load_spec(spec), data)
    assert "'25.10.2026 02:00'" in str(caught.value)
    spec, data = _local_export(tmp_path, "2026-10-24 12:00", 24, ", timezone: Europe/Berlin")
    ds = load_dataset(load_spec(spec), data)
    assert ds.timestamps is not None
    stamps = pd.to_datetime(pd.Series(ds.timestamps), utc=True)
    assert set(stamps.diff().dropna()) == {pd.Timedelta(minutes=10)}
    assert stamps.iloc[-1] == pd.Timestamp("2026-10-25 09:50", tz="UTC")  # 10:50 in winter
    # from 12:00 summer time to 10:50 winter time: 23 h 50 min, a row every 10 minutes
    assert stamps.iloc[-1] - stamps.iloc[0] == pd.Timedelta(minutes=10) * (len(stamps) - 1)
    assert len(stamps) > 140


def test_a_local_time_the_zone_skips_is_refused_by_its_cell(tmp_path: Path) -> None:
    spec, data = _local_export(tmp_path, "2026-03-28 12:00", 24, ", timezone: Europe/Berlin")
    lines = data.read_text(encoding="utf-8").splitlines()
    lines[90] = "29.03.2026 02:30" + lines[90][16:]  # the hour the clocks skip that night
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"2026-03-29 02:30:00 is a nonexistent time.*Berlin"):
        load_dataset(load_spec(spec), data)


def test_a_time_zone_that_does_not_exist_is_refused_by_name(tmp_path: Path) -> None:
    spec, _ = _local_export(tmp_path, "2026-10-24 12:00", 2, ", timezone: Europe/Berlinn")
    with pytest.raises(SpecError, match=r"source\.timezone 'Europe/Berlinn' is not a time zone"):
        load_spec(spec)
