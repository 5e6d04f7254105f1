"""The sensor-redundancy test, calibrated on synthetic correlated sensors and run as the
service runs it: quiet on fresh normal data, a slow ramp on one sensor flagged early and by
name, a one-sample spike ignored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.contracts.card import SensorRedundancy
from service.monitoring.redundancy import RedundancyDrift, RedundancyModel
from training.redundancy import (
    FALSE_ALARMS_PER_WEEK,
    MARGIN,
    calibrate_redundancy,
    peaks,
    tail_limit,
)

NOISE = 0.05  # per sensor, its unit
ROWS = 21 * 1440  # three weeks of minutes
NAMES = ("T1", "T2", "T3", "T4", "T5", "T6")


def _ou(rng: np.random.Generator, n: int, sd: float, tau: float) -> np.ndarray:
    phi = math.exp(-1.0 / tau)
    out = np.empty(n)
    out[0] = rng.normal(0, sd)
    shocks = rng.normal(0, sd * math.sqrt(1 - phi**2), n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def _plant(seed: int, n: int = ROWS) -> np.ndarray:
    """Six sensors driven by two slow process states, each with white noise and its own
    slow wander (days): the structure of tray temperatures."""
    rng = np.random.default_rng(seed)
    states = np.column_stack([_ou(rng, n, 1.0, 240.0), _ou(rng, n, 0.5, 600.0)])
    loads = np.array([[1.0, 0.2], [0.8, -0.5], [0.5, 0.9], [1.2, 0.4], [0.3, -1.0], [0.9, 0.7]])
    wander = np.column_stack([_ou(rng, n, 0.1, 2880.0) for _ in NAMES])
    return np.asarray(70 + states @ loads.T + wander + rng.normal(0, NOISE, (n, len(NAMES))))


@pytest.fixture(scope="module")
def block() -> SensorRedundancy:
    rows = np.arange(ROWS)
    train, validation = rows < 0.6 * ROWS, (rows >= 0.6 * ROWS) & (rows < 0.8 * ROWS)
    found = calibrate_redundancy(_plant(1), NAMES, train, validation, 60.0)
    assert found is not None
    return found


def _run(block: SensorRedundancy, values: np.ndarray) -> np.ndarray:
    model = RedundancyModel.from_card(block, NAMES)
    assert model is not None
    return RedundancyDrift(model).observe(values)


def _onsets(flags: np.ndarray) -> int:
    return int(np.sum(flags & ~np.r_[np.zeros((1, flags.shape[1]), dtype=bool), flags[:-1]]))


def test_the_block_is_calibrated_on_held_out_rows(block: SensorRedundancy) -> None:
    assert block.signals == list(NAMES)
    assert block.validation_onsets == 0
    assert block.false_alarms_per_week == FALSE_ALARMS_PER_WEEK and block.margin == MARGIN
    weights = np.array(block.weights)
    assert weights.shape == (2 * len(NAMES), len(NAMES))
    for j in range(len(NAMES)):
        assert weights[j, j] == 0 and weights[len(NAMES) + j, j] == 0
    # the residual departure is close to the sensors' noise: the others explain the rest
    spread = np.array(block.residual_sd) * np.array(block.scale)
    assert (spread < 2.5 * NOISE).all(), spread
    # a card round trip keeps it
    assert SensorRedundancy.model_validate_json(block.model_dump_json()) == block


def test_fresh_normal_operation_stays_quiet(block: SensorRedundancy) -> None:
    """Two weeks of another unit's normal operation: no alarm."""
    assert _onsets(_run(block, _plant(7, 14 * 1440))) == 0


def test_a_slow_ramp_on_one_sensor_is_flagged_by_name_early(block: SensorRedundancy) -> None:
    """0.5 per hour on T3 from row 3000: flagged T3 within 50 min (0.42, under 9 noise sd;
    the on-delay's 15 rows included),
    the others never before it."""
    values = _plant(8, 4000)
    start = 3000
    values[start:, 2] += 0.5 / 60 * np.arange(1000)
    flags = _run(block, values)
    assert not flags[:start].any()
    delay = int(np.flatnonzero(flags[start:, 2])[0])
    assert delay <= 50, delay
    first_any = int(np.flatnonzero(flags[start:].any(axis=1))[0])
    assert first_any == delay


def test_a_spike_is_not_a_drift(block: SensorRedundancy) -> None:
    """A one-sample spike of 30 noise sd on each sensor in turn: nothing flagged."""
    values = _plant(9, 3000)
    for j in range(len(NAMES)):
        values[1000 + 300 * j, j] += 30 * NOISE
    assert not _run(block, values).any()


def test_a_missing_signal_leaves_the_detector_out(block: SensorRedundancy) -> None:
    assert RedundancyModel.from_card(block, NAMES[:-1]) is None


def test_too_little_held_out_data_gives_no_block() -> None:
    rows = np.arange(3000)
    values = _plant(3, 3000)
    assert calibrate_redundancy(values, NAMES, rows < 2800, rows >= 2800, 60.0) is None
    assert calibrate_redundancy(values, NAMES, rows < 2000, rows >= 2000, None) is None


def test_the_tail_limit_extrapolates_an_exponential_tail() -> None:
    """Peaks with an exponential excess of mean 1 over their 90th percentile: the level
    exceeded once in 1e6 samples lies about ln(rate ratio) means above."""
    rng = np.random.default_rng(0)
    stat = np.zeros(200_000)
    stat[::20] = rng.exponential(1.0, 10_000)  # 10 000 separate peaks
    start = float(np.quantile(stat, 0.9))
    found = peaks(stat, start)
    level = tail_limit(stat, 1e-6)
    assert level is not None
    expected = start + np.mean(found - start) * math.log(len(found) / len(stat) / 1e-6)
    assert level == pytest.approx(expected)
    assert tail_limit(stat[:100], 1e-6) is None  # too few peaks
