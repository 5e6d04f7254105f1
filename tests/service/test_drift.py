"""Drift statistics: PSI checked against an independent numpy computation, frozen sensors,
out-of-range counts, and the Page-Hinkley test on seeded noise with and without a shift."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from service.card import FeatureCard, ModelCard, ReferenceStats, SignalCard, ValidRange
from service.drift import (
    DriftMonitor,
    FeatureMonitor,
    PageHinkley,
    RollingWindow,
    bin_counts,
    psi,
)
from tests.service.test_registry import make_card

T0 = 1_790_000_000.0  # a POSIX time in 2026
FEATURES = ("t1", "t2")
VALID = ValidRange(low=-5.0, high=5.0)


def reference_of(name: str, values: NDArray[np.float64], bins: int = 10) -> ReferenceStats:
    """Decile bins of ``values``, built the way training builds the card's reference."""
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    counts, _ = np.histogram(values, bins=edges)
    return ReferenceStats(
        name=name,
        bin_edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
    )


def drift_card(
    features: Sequence[str] = FEATURES, seed: int = 0, target_range: ValidRange = VALID
) -> ModelCard:
    """A valid card whose features (and prediction) have N(0, 1) reference statistics."""
    rng = np.random.default_rng(seed)
    base = make_card("col", "v1", b"model")
    signals = [SignalCard(name=f, unit="degC", valid_range=VALID) for f in features]
    cards = [FeatureCard(name=f, signal=f, lag=0, unit="degC", valid_range=VALID) for f in features]
    data = base.model_dump()
    data.update(
        signals=[s.model_dump() for s in signals],
        features=[c.model_dump() for c in cards],
        reference=[reference_of(f, rng.normal(size=5000)).model_dump() for f in features],
        prediction_reference=reference_of("prediction", rng.normal(size=5000)).model_dump(),
        target={**data["target"], "valid_range": target_range.model_dump()},
        onnx_sha256=hashlib.sha256(b"model").hexdigest(),
    )
    return ModelCard.model_validate(data)


def independent_psi(reference: ReferenceStats, window: NDArray[np.float64]) -> float:
    """PSI in plain numpy: histogram on the reference edges, outer values clipped in."""
    edges = np.asarray(reference.bin_edges)
    clipped = np.clip(window, edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=edges)
    p_w = np.maximum(counts / counts.sum(), 1e-4)
    ref = np.asarray(reference.counts, dtype=float)
    p_r = np.maximum(ref / ref.sum(), 1e-4)
    return float(np.sum((p_w - p_r) * np.log(p_w / p_r)))


# --------------------------------------------------------------------------- bins and PSI


def test_bin_counts_match_histogram_and_open_outer_bins() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    values = np.array([-7.0, 0.0, 0.5, 1.0, 1.999, 2.0, 3.0, 3.5, np.inf, -np.inf, np.nan])
    # [0,1): -7, 0, 0.5, -inf   [1,2): 1, 1.999   [2,3]: 2, 3, 3.5, inf   NaN: ignored
    assert bin_counts(values, edges).tolist() == [4, 2, 4]
    rng = np.random.default_rng(1)
    inside = np.concatenate([rng.uniform(0, 3, 1000), np.repeat(edges, 5)])  # edges exactly
    expected, _ = np.histogram(inside, bins=edges)
    assert bin_counts(inside, edges).tolist() == expected.tolist()


def test_bin_counts_reproduce_reference_counts_of_discrete_signal() -> None:
    """Merged quantile edges (a signal with few distinct values) bin as training did."""
    values = np.random.default_rng(2).choice([0.0, 0.0, 0.0, 1.0, 2.5], size=3000)
    ref = reference_of("valve", values)
    assert bin_counts(values, ref.bin_edges).tolist() == ref.counts


def test_bin_counts_needs_two_edges() -> None:
    with pytest.raises(ValueError, match="edges"):
        bin_counts(np.ones(3), [1.0])


def test_psi_formula() -> None:
    assert psi([10, 10], [5, 5]) == 0.0
    p_r, p_w = np.array([0.5, 0.5]), np.array([0.8, 0.2])
    assert psi([50, 50], [8, 2]) == pytest.approx(float(np.sum((p_w - p_r) * np.log(p_w / p_r))))
    assert psi([50, 50], [0, 0]) == 0.0  # empty window: no evidence
    empty_bin = psi([50, 50], [10, 0])  # floored, finite
    assert math.isfinite(empty_bin)
    assert empty_bin == pytest.approx((1 - 0.5) * math.log(2) + (1e-4 - 0.5) * math.log(2e-4))
    with pytest.raises(ValueError, match="window_counts"):
        psi([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="reference"):
        psi([0, 0], [1, 2])


def test_drift_monitor_psi_equals_independent_numpy() -> None:
    card = drift_card()
    monitor = DriftMonitor(card, window=500)
    rng = np.random.default_rng(3)
    rows = np.column_stack([rng.normal(size=1234), rng.normal(loc=1.5, size=1234)])
    rows[::97, 0] = 9.0  # some beyond the reference max: they land in the last bin
    predictions = rng.normal(loc=-0.1, size=1234)
    times = T0 + np.arange(1234.0)
    for start in range(0, 1234, 100):  # batches of varying size wrap the ring buffer
        stop = start + 100
        monitor.observe(rows[start:stop], predictions[start:stop], times[start:stop])

    got = monitor.feature_psi()
    for j, name in enumerate(FEATURES):
        expected = independent_psi(card.reference[j], rows[-500:, j])
        assert got[name] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert monitor.prediction_psi() == pytest.approx(
        independent_psi(card.prediction_reference, predictions[-500:]), rel=1e-12
    )
    assert got["t1"] < 0.1  # drawn from the reference distribution
    assert got["t2"] > 0.25  # shifted by 1.5 sigma


def test_psi_small_for_reference_draws_large_for_shift() -> None:
    card = drift_card(features=("t1",))
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        same = DriftMonitor(card)
        same.observe(rng.normal(size=(500, 1)), rng.normal(size=500))
        assert same.feature_psi()["t1"] < 0.1
        assert same.prediction_psi() < 0.1
        shifted = DriftMonitor(card)
        shifted.observe(rng.normal(loc=1.0, size=(500, 1)), rng.normal(scale=2.0, size=500))
        assert shifted.feature_psi()["t1"] > 0.25
        assert shifted.prediction_psi() > 0.25


def test_rolling_window_matches_deque() -> None:
    rng = np.random.default_rng(4)
    window, oracle = RollingWindow(37), deque[float](maxlen=37)
    assert len(window) == 0
    assert window.values().tolist() == []
    for _ in range(200):
        batch = rng.normal(size=int(rng.integers(0, 60)))
        window.extend(batch)
        oracle.extend(batch.tolist())
        assert len(window) == len(oracle)
        assert window.values().tolist() == list(oracle)
    with pytest.raises(ValueError, match="capacity"):
        RollingWindow(0)


# --------------------------------------------------------------------------- frozen, range


def monitor_of(card: ModelCard, index: int = 0) -> FeatureMonitor:
    feature = card.features[index]
    return FeatureMonitor(
        card.reference[index], feature.valid_range.low, feature.valid_range.high, window=50
    )


def test_frozen_sensor_seconds_since_change() -> None:
    m = monitor_of(drift_card())
    assert math.isnan(m.seconds_since_change(T0))  # never seen: neither fresh nor frozen
    assert not m.is_frozen(T0, 60)
    t = T0 + np.arange(0.0, 601.0)  # 1 Hz for 600 s, the same value
    m.observe(np.full(len(t), 1.25), t)
    assert m.seconds_since_change(T0 + 600) == pytest.approx(600.0)
    assert m.is_frozen(T0 + 600, 300)
    assert not m.is_frozen(T0 + 600, 900)

    m.observe(np.array([1.25 + 1e-12]), np.array([T0 + 601]))  # below tolerance: frozen
    assert m.seconds_since_change(T0 + 601) == pytest.approx(601.0)
    m.observe(np.array([1.3, 1.3, 1.3]), T0 + np.array([602.0, 603.0, 604.0]))
    assert m.seconds_since_change(T0 + 604) == pytest.approx(2.0)  # changed at 602
    assert not m.is_frozen(T0 + 604, 300)

    m.observe(np.array([7.0]), np.array([T0 + 100.0]))  # a late backfill does not revive it
    assert m.seconds_since_change(T0 + 700) == pytest.approx(98.0)
    m.observe(np.array([np.nan]), np.array([T0 + 701.0]))  # missing is not a change
    assert m.seconds_since_change(T0 + 701) == pytest.approx(99.0)
    assert m.missing_total == 1


def test_unordered_batch_is_tracked_in_time_order() -> None:
    m = monitor_of(drift_card())
    m.observe(np.array([2.0, 1.0, 1.0]), T0 + np.array([30.0, 0.0, 10.0]))
    assert m.seconds_since_change(T0 + 30) == 0.0  # 1 -> 1 -> 2 changed at +30


def oracle_seconds_since_change(
    batches: list[tuple[NDArray[np.float64], NDArray[np.float64]]], now: float
) -> list[float]:
    """Change tracking value by value in plain Python, one column at a time."""
    result = []
    for j in range(batches[0][0].shape[1]):
        last_value: float | None = None
        last_time, last_change = -math.inf, math.nan
        for x, t in batches:
            for i in sorted(range(len(t)), key=lambda i: t[i]):
                v = float(x[i, j])
                if math.isnan(v) or t[i] < last_time:
                    continue
                if last_value is None:
                    last_change = t[i]
                else:
                    with np.errstate(invalid="ignore"):
                        step = abs(v - last_value)
                    if step > 1e-9 * max(1.0, abs(v)):
                        last_change = t[i]
                last_value, last_time = v, t[i]
        result.append(max(0.0, now - last_change) if not math.isnan(last_change) else math.nan)
    return result


@pytest.mark.parametrize("seed", range(20))
def test_vectorized_change_tracking_matches_value_by_value(seed: int) -> None:
    """NaNs, repeats, sub-tolerance jitter, infinities, unordered and late batches."""
    rng = np.random.default_rng(seed)
    choices = np.array([0.0, 1.0, 1.0 + 1e-12, 2.0, np.nan, np.inf, -np.inf])
    card = drift_card(features=("a", "b", "c"))
    monitor = DriftMonitor(card, window=7)
    batches = []
    for _ in range(int(rng.integers(1, 8))):
        n = int(rng.integers(0, 6))
        x = rng.choice(choices, size=(n, 4), p=[0.3, 0.25, 0.1, 0.1, 0.15, 0.05, 0.05])
        t = T0 + rng.integers(0, 40, size=n).astype(float)
        monitor.observe(x[:, :3], x[:, 3], t)
        batches.append((x[:, :3], t))
    got = list(monitor.seconds_since_change(T0 + 50).values())
    expected = oracle_seconds_since_change(batches, T0 + 50)
    np.testing.assert_array_equal(got, expected)


def test_times_none_means_now() -> None:
    m = monitor_of(drift_card())
    before = time.time()
    m.observe(np.array([0.1, 0.2]))
    assert 0.0 <= m.seconds_since_change(time.time()) <= time.time() - before + 1e-6


def test_out_of_range_totals() -> None:
    card = drift_card(target_range=ValidRange(low=0.0, high=1.0))
    monitor = DriftMonitor(card, window=20)
    rows = np.array([[0.0, -5.0], [5.0, -5.1], [6.0, np.inf], [np.nan, 1.0]])
    monitor.observe(rows, np.array([0.5, 2.0, -0.1, 1.0]), T0 + np.arange(4.0))
    assert monitor.out_of_range_totals() == {"t1": 1, "t2": 2}  # bounds are inclusive
    assert monitor.prediction_out_of_range_total() == 2
    assert monitor.missing_totals() == {"t1": 1, "t2": 0}
    monitor.observe(rows, np.zeros(4), T0 + 10 + np.arange(4.0))
    assert monitor.out_of_range_totals() == {"t1": 2, "t2": 4}  # a counter: it accumulates


def test_drift_monitor_seconds_since_change_and_frozen() -> None:
    monitor = DriftMonitor(drift_card())
    t = T0 + np.arange(600.0)
    rows = np.column_stack([np.full(600, 3.0), np.sin(np.arange(600.0))])
    monitor.observe(rows, np.zeros(600), t)
    since = monitor.seconds_since_change(T0 + 600)
    assert since["t1"] == pytest.approx(600.0)
    assert since["t2"] == pytest.approx(1.0)
    assert monitor.frozen(T0 + 600, 300) == ["t1"]


def test_drift_monitor_refuses_bad_shapes_without_changing() -> None:
    monitor = DriftMonitor(drift_card())
    with pytest.raises(ValueError, match="rows"):
        monitor.observe(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="rows"):
        monitor.observe(np.zeros(2), np.zeros(1))
    with pytest.raises(ValueError, match="predictions"):
        monitor.observe(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="times"):
        monitor.observe(np.zeros((3, 2)), np.zeros(3), np.array([T0, T0, np.nan]))
    assert monitor.rows_in_window == 0
    assert monitor.observed_totals() == {"t1": 0, "t2": 0}


def test_drift_monitor_concurrent_observers() -> None:
    card = drift_card()
    monitor = DriftMonitor(card, window=100)
    rows = np.array([[9.0, 0.0]] * 10)  # t1 out of range in every row

    def work(k: int) -> None:
        for i in range(200):
            monitor.observe(rows, np.zeros(10), np.full(10, T0 + k * 1000 + i))
            monitor.feature_psi()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert monitor.out_of_range_totals() == {"t1": 8 * 200 * 10, "t2": 0}
    assert monitor.observed_totals() == {"t1": 8 * 200 * 10, "t2": 8 * 200 * 10}
    assert monitor.rows_in_window == 100


# --------------------------------------------------------------------------- Page-Hinkley


@pytest.mark.parametrize("mean", [None, 0.0])
def test_page_hinkley_quiet_on_noise(mean: float | None) -> None:
    for seed in range(5):
        ph = PageHinkley.from_spread(1.0, mean=mean)
        noise = np.random.default_rng(seed).normal(size=1000)
        assert not any(ph.update(float(x)) for x in noise), f"false alarm, seed {seed}"
        assert ph.statistic < ph.threshold


def samples_to_alarm(ph: PageHinkley, rng: np.random.Generator, shift: float) -> int:
    """Feed shifted noise until the alarm; the number of shifted samples it took."""
    for k in range(1, 1001):
        if ph.update(float(rng.normal() + shift)):
            return k
    return 10**6


@pytest.mark.parametrize("mean", [None, 0.0])
@pytest.mark.parametrize(("shift", "bound"), [(2.0, 20), (-2.0, 20), (1.0, 80), (-1.0, 80)])
def test_page_hinkley_detects_shift_up_and_down(
    mean: float | None, shift: float, bound: int
) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ph = PageHinkley.from_spread(1.0, mean=mean)
        for x in rng.normal(size=1000):
            assert not ph.update(float(x))
        assert samples_to_alarm(ph, rng, shift) <= bound
        assert ph.alarm
        assert ph.direction == (1 if shift > 0 else -1)


def test_page_hinkley_known_mean_detects_early_shift() -> None:
    """Sparse lab data: a shift right after min_samples, found against the known mean."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ph = PageHinkley.from_spread(1.0, mean=0.0)
        for x in rng.normal(size=30):
            ph.update(float(x))
        assert samples_to_alarm(ph, rng, 1.0) <= 80


def test_page_hinkley_latches_until_reset_and_waits_for_min_samples() -> None:
    ph = PageHinkley(delta=0.1, threshold=1.0, min_samples=5)
    assert [ph.update(100.0) for _ in range(3)] == [False, False, False]  # too few yet
    ph = PageHinkley(delta=0.1, threshold=1.0, min_samples=5, mean=0.0)
    results = [ph.update(100.0) for _ in range(5)]
    assert results == [False, False, False, False, True]
    assert ph.update(0.0)  # latched
    assert ph.count == 6
    assert ph.mean == pytest.approx(500.0 / 6)
    ph.reset()
    assert not ph.alarm
    assert ph.statistic == 0.0
    assert ph.count == 0


def test_page_hinkley_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="delta"):
        PageHinkley(delta=-1.0, threshold=1.0)
    with pytest.raises(ValueError, match="threshold"):
        PageHinkley(delta=0.1, threshold=0.0)
    with pytest.raises(ValueError, match="min_samples"):
        PageHinkley(delta=0.1, threshold=1.0, min_samples=0)
    with pytest.raises(ValueError, match="sigma"):
        PageHinkley.from_spread(0.0)
    with pytest.raises(ValueError, match="residual"):
        PageHinkley(delta=0.1, threshold=1.0).update(math.nan)
