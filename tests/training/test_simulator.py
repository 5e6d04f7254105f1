"""The Column A historian simulator: files the loader accepts, realistic and reproducible."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import load_dataset
from training.errors import SimulationError
from training.simulator import (
    FLOW_COLUMNS,
    AnalyzerConfig,
    Disturbance,
    OperatorConfig,
    SensorNoise,
    SimulationConfig,
    dataset_spec,
    disturbance_path,
    run,
    sensor_reading,
    simulate,
    temperature_columns,
)
from training.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SPEC = REPO / "training" / "specs" / "column_a.yaml"


@pytest.fixture(scope="module")
def one_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, spec) of one simulated day with the default configuration."""
    out = tmp_path_factory.mktemp("sim") / "column_a.csv"
    return simulate(1, seed=11, out=out)


def test_simulate_writes_csv_and_spec_the_loader_accepts(one_day: tuple[Path, Path]) -> None:
    """The CSV and the spec beside it load through load_dataset unchanged."""
    data, spec_path = one_day
    assert data.suffix == ".csv"
    assert spec_path == data.with_suffix(".yaml")
    ds = load_dataset(load_spec(spec_path), data)
    assert ds.rows_read == 1440
    # One analyzer result per 10 min, the first 20 rows lost to lags, ~2 % missed cycles.
    assert 125 <= ds.rows_used <= 142
    assert len(ds.train) > len(ds.feature_names)
    assert ds.values_out_of_range == 0
    assert set(ds.train.truth) == {"true_xB", "true_xD"}
    assert ds.timestamps is not None and ds.timestamps[0].startswith("2026-01-01T00:")


def test_written_spec_is_the_shipped_spec(one_day: tuple[Path, Path]) -> None:
    """training/specs/column_a.yaml is exactly what simulate() writes for default CSV files."""
    _, spec_path = one_day
    assert load_spec(spec_path) == load_spec(SHIPPED_SPEC) == dataset_spec()


def test_shipped_spec_follows_the_analyzer_rules() -> None:
    """The target is the analyzer with its dead time in samples and never a feature."""
    spec = load_spec(SHIPPED_SPEC)
    assert spec.target.name == "analyzer_xB"
    assert spec.target.analyzer_delay == 10
    assert all(f.signal != spec.target.name for f in spec.features)
    assert spec.truth == ["true_xB", "true_xD"]


def test_parquet_output_loads(tmp_path: Path) -> None:
    """A path ending .parquet gives Parquet and a spec that says so."""
    data, spec_path = simulate(0.5, seed=2, out=tmp_path / "col.parquet")
    spec = load_spec(spec_path)
    assert spec.source.format == "parquet"
    ds = load_dataset(spec, data)
    assert ds.rows_read == 720


def test_files_are_written_atomically(tmp_path: Path) -> None:
    """Overwriting works and leaves no temporary files behind."""
    out = tmp_path / "col.csv"
    simulate(0.1, seed=1, out=out)
    simulate(0.1, seed=2, out=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["col.csv", "col.yaml"]


def test_same_seed_same_output_different_seed_different() -> None:
    """Every random draw comes from one Generator seeded by the caller."""
    a = run(0.25, seed=5).frame
    b = run(0.25, seed=5).frame
    c = run(0.25, seed=6).frame
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    """Reproducible down to the file bytes (what a data hash in a model card relies on)."""
    first, _ = simulate(0.2, seed=3, out=tmp_path / "a.csv")
    second, _ = simulate(0.2, seed=3, out=tmp_path / "b.csv")
    assert first.read_bytes() == second.read_bytes()


def test_analyzer_reports_every_period_after_the_dead_time() -> None:
    """Results appear at rows sample + dead time, one per cycle, close to the truth then."""
    res = run(0.5, seed=4)
    frame = res.frame
    reported = np.flatnonzero(frame["analyzer_xB"].notna().to_numpy())
    assert reported.size >= 0.9 * (720 - 10) / 10
    assert np.all(reported % 10 == 0) and reported.min() >= 10
    sampled = frame["true_xB"].to_numpy()[reported - 10]
    readings = frame["analyzer_xB"].to_numpy()[reported]
    assert np.allclose(readings, sampled, rtol=0.1, atol=0.03)
    assert frame[temperature_columns(SimulationConfig())].notna().all().all()


def test_timestamps_follow_start_and_interval() -> None:
    """ISO 8601 UTC stamps from the configured start at the configured interval."""
    cfg = SimulationConfig(start="2026-03-01T06:00:00+01:00", sample_minutes=0.5)
    frame = run(0.01, seed=0, config=cfg).frame
    assert frame["timestamp"].iloc[0] == "2026-03-01T05:00:00Z"
    assert frame["timestamp"].iloc[1] == "2026-03-01T05:00:30Z"
    assert dataset_spec(cfg).target.analyzer_delay == 20


def test_disturbances_stay_in_bounds_and_move() -> None:
    """Steps, ramps and the walk are clipped to the bounds and do change the value."""
    d = Disturbance(1.0, 0.9, 1.1, 0.05, 2.0, 6.0, 0.2)
    path = disturbance_path(np.random.default_rng(0), d, 20_000, 1.0)
    assert path.min() >= 0.9 and path.max() <= 1.1
    assert path.std() > 0.02


def test_sensor_artefacts_appear_as_configured() -> None:
    """Noise of the given size, stuck runs, spikes and quantisation on a constant signal."""
    s = SensorNoise(0.05, 0.0, 48.0, 20.0, 2.0, 10.0, (20.0, 40.0), 0.01)
    true = np.full(14_400, 70.0)  # ten days of minutes
    reading = sensor_reading(np.random.default_rng(1), true, s, 1.0)
    steps = np.diff(reading)
    assert np.allclose(reading, np.round(reading, 2))
    assert 0.04 < np.median(np.abs(reading - 70.0)) / 0.6745 < 0.06  # robust noise sd
    assert (np.abs(reading - 70.0) > 0.9).sum() > 100  # ~200 spikes of 1-3 K
    runs = np.flatnonzero(np.concatenate([[1], steps != 0, [1]]))
    assert np.diff(runs).max() >= 20  # a stuck period of at least 20 minutes


def test_column_stays_physical_and_compositions_vary() -> None:
    """Two days: holdups and flows positive, compositions in (0, 1), x_B moves."""
    res = run(2, seed=8)
    x, m = res.states[:, :41], res.states[:, 41:]
    assert x.min() > 0 and x.max() < 1 and m.min() > 0
    assert (res.frame[list(FLOW_COLUMNS)] > 0).all().all()
    xb = res.frame["true_xB"]
    assert xb.max() / xb.min() > 1.5


def test_unphysical_operation_is_refused() -> None:
    """A feed far below what the boilup and reflux need empties the reboiler: clear error."""
    cfg = SimulationConfig(
        feed=Disturbance(0.3, 0.3, 0.3, 0.0, 1.0, 0.0, 0.0),
        operator=OperatorConfig(feed_ratio=False, corrects=False, moves_per_day=0.0),
    )
    with pytest.raises(SimulationError, match=r"physical range at minute 0 .* B -0\.2"):
        run(0.05, seed=0, config=cfg)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (SimulationConfig(analyzer=AnalyzerConfig(period_minutes=2.5)), "analyzer period"),
        (SimulationConfig(sample_minutes=0.001), "whole number of seconds"),
        (SimulationConfig(feature_lags_minutes=(0.0, 1.5), sample_minutes=1.0), "feature lag"),
        (
            SimulationConfig(sensors=dataclasses.replace(SimulationConfig().sensors, trays=(0,))),
            "trays",
        ),
    ],
)
def test_inconsistent_configuration_is_refused(config: SimulationConfig, match: str) -> None:
    """Intervals that are not whole samples, or trays that do not exist, fail up front."""
    with pytest.raises(SimulationError, match=match):
        run(0.1, seed=0, config=config)


def test_yaml_output_path_is_refused(tmp_path: Path) -> None:
    """The spec goes to <out>.yaml, so the data file itself cannot be YAML."""
    with pytest.raises(SimulationError, match="YAML"):
        simulate(0.1, seed=0, out=tmp_path / "x.yaml")


@pytest.mark.slow
def test_seven_days_fast_varied_and_loadable(tmp_path: Path) -> None:
    """A default week (10,080 rows; how long it takes is for a benchmark, not a test);
    x_B spans its realistic range; loads."""
    data, spec_path = simulate(7, seed=0, out=tmp_path / "column_a.csv")
    ds = load_dataset(load_spec(spec_path), data)
    assert ds.rows_read == 10_080
    assert 950 <= ds.rows_used <= 1006
    xb = pd.read_csv(data, usecols=["true_xB", "true_xD"])
    assert xb["true_xB"].min() < 0.5 and xb["true_xB"].max() > 2.5  # mol %
    assert xb["true_xD"].min() > 90.0 and xb["true_xD"].max() < 100.0
