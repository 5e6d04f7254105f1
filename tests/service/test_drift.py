"""Drift statistics: PSI checked against an independent numpy computation, and
out-of-range counts."""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque
from collections.abc import Sequence

import numpy as np
import pytest

from service.contracts.arrays import FloatArray
from service.contracts.card import FeatureCard, ModelCard, ReferenceStats, SignalCard, ValidRange
from service.monitoring.drift import DriftMonitor, RollingWindow, bin_counts, psi
from tests.service.test_registry import make_card

FEATURES = ("t1", "t2")
VALID = ValidRange(low=-5.0, high=5.0)


def reference_of(name: str, values: FloatArray, bins: int = 10) -> ReferenceStats:
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


def independent_psi(reference: ReferenceStats, window: FloatArray) -> float:
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
    for start in range(0, 1234, 100):  # batches of varying size wrap the ring buffer
        stop = start + 100
        monitor.observe(rows[start:stop], predictions[start:stop])

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


# --------------------------------------------------------------------------- range


def test_out_of_range_totals() -> None:
    card = drift_card(target_range=ValidRange(low=0.0, high=1.0))
    monitor = DriftMonitor(card, window=20)
    rows = np.array([[0.0, -5.0], [5.0, -5.1], [6.0, np.inf], [np.nan, 1.0]])
    monitor.observe(rows, np.array([0.5, 2.0, -0.1, 1.0]))
    assert monitor.out_of_range_totals() == {"t1": 1, "t2": 2}  # bounds are inclusive
    assert monitor.prediction_out_of_range_total() == 2
    assert monitor.missing_totals() == {"t1": 1, "t2": 0}
    monitor.observe(rows, np.zeros(4))
    assert monitor.out_of_range_totals() == {"t1": 2, "t2": 4}  # a counter: it accumulates


def test_drift_monitor_refuses_bad_shapes_without_changing() -> None:
    monitor = DriftMonitor(drift_card())
    with pytest.raises(ValueError, match="rows"):
        monitor.observe(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="rows"):
        monitor.observe(np.zeros(2), np.zeros(1))
    with pytest.raises(ValueError, match="predictions"):
        monitor.observe(np.zeros((3, 2)), np.zeros(2))
    assert monitor.rows_in_window == 0
    assert monitor.observed_totals() == {"t1": 0, "t2": 0}


def test_drift_monitor_concurrent_observers() -> None:
    card = drift_card()
    monitor = DriftMonitor(card, window=100)
    rows = np.array([[9.0, 0.0]] * 10)  # t1 out of range in every row

    def work(k: int) -> None:
        for _i in range(200):
            monitor.observe(rows, np.zeros(10))
            monitor.feature_psi()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert monitor.out_of_range_totals() == {"t1": 8 * 200 * 10, "t2": 0}
    assert monitor.observed_totals() == {"t1": 8 * 200 * 10, "t2": 8 * 200 * 10}
    assert monitor.rows_in_window == 100
