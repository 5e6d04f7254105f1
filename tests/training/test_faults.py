"""Faults injected at known times into simulated Column A data."""

from __future__ import annotations

import numpy as np
import pytest

from training.errors import SimulationError
from training.faults import Fault, simulate_with_faults
from training.simulator import SimulationConfig, run, temperature_columns


@pytest.fixture(scope="module")
def days() -> tuple[object, object]:
    faults = (
        Fault("stuck", 60, 180, signal="T21"),
        Fault("drift", 200, 320, signal="T13", size=0.6),
        Fault("pressure_step", 400, 500, size=0.3),
        Fault("analyzer_outage", 520, 640),
        Fault("feed_move", 700, 900, size=1.25),
    )
    return run(1, seed=4), simulate_with_faults(1, seed=4, faults=faults)


def test_each_fault_acts_where_and_when_it_is_declared(days: tuple[object, object]) -> None:
    """Stuck, drift, pressure step and outage change the recorded data in their window only;
    outside every window the data equal the fault-free run's."""
    clean, faulty = (r.frame for r in days)  # type: ignore[attr-defined]
    assert (faulty.T21[60:180] == faulty.T21[60]).all() and faulty.T21[180] == clean.T21[180]
    drift = (faulty.T13 - clean.T13)[200:320].to_numpy()
    assert drift[0] == pytest.approx(0, abs=0.006) and drift[-1] == pytest.approx(1.19, abs=0.01)
    for name in temperature_columns(SimulationConfig()):
        step = (faulty[name] - clean[name])[400:500]
        assert np.allclose(step, 0.3, atol=0.006)
    assert faulty.analyzer_xB[520:640].isna().all() and clean.analyzer_xB[520:640].notna().any()
    quiet = np.r_[0:60, 330:400, 510:520, 650:700]
    for name in ("T03", "T13", "T21", "F", "analyzer_xB", "true_xB"):
        assert clean[name].iloc[quiet].equals(faulty[name].iloc[quiet])


def test_a_feed_move_changes_the_physics(days: tuple[object, object]) -> None:
    """The feed move is simulated: the feed reaches its new rate and the compositions follow."""
    clean, faulty = (r.frame for r in days)  # type: ignore[attr-defined]
    feed = days[1].inputs[:, 2]  # type: ignore[attr-defined]
    assert feed[730:900] == pytest.approx(1.25) and feed[930] == pytest.approx(
        clean.F[930], abs=0.05
    )
    assert not np.allclose(faulty.true_xB[760:900], clean.true_xB[760:900], atol=0.01)


def test_a_fault_needs_a_window_and_its_signal() -> None:
    with pytest.raises(SimulationError, match="start < end"):
        Fault("stuck", 10, 10, signal="T03")
    with pytest.raises(SimulationError, match="signal"):
        Fault("drift", 0, 10, size=1.0)
