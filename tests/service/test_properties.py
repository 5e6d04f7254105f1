"""Property-based tests (hypothesis; profile "ci" in conftest.py: derandomized, 60 examples)
for feature assembly, the drift statistics and the bias filter."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.contracts.features import DerivedSignal, FeaturePlan, LagFeature
from service.lab.bias import BiasConfig, BiasFilter
from service.monitoring.drift import RollingWindow, bin_counts, psi
from service.scoring.rows import forward_fill

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def plans(draw: st.DrawFn) -> tuple[FeaturePlan, np.ndarray]:
    """A plan over 1..4 measured signals, maybe a derived one, lags 0..4, and a series."""
    n_signals = draw(st.integers(1, 4))
    signals = tuple(f"s{i}" for i in range(n_signals))
    derived: tuple[DerivedSignal, ...] = ()
    if draw(st.booleans()):
        weights = {s: draw(st.floats(-2, 2, allow_nan=False)) for s in signals[:2]}
        derived = (DerivedSignal("d", weights, draw(st.floats(-5, 5, allow_nan=False))),)
    names = list(signals) + [d.name for d in derived]
    features = tuple(
        dict.fromkeys(
            LagFeature(draw(st.sampled_from(names)), draw(st.integers(0, 4)))
            for _ in range(draw(st.integers(1, 6)))
        )
    )
    length = draw(st.integers(0, 12))
    values = draw(arrays(np.float64, (length, n_signals), elements=finite))
    return FeaturePlan(signals, derived, features), values


@given(plans())
def test_assembly_equals_the_definition_row_by_row(case: tuple[FeaturePlan, np.ndarray]) -> None:
    """Row k, column j is signal_j at time (history + k - lag_j), derived signals computed
    as offset + sum(weight * source): the vectorized gather equals the plain loop."""
    plan, values = case
    x = plan.assemble(values)
    assert x.shape == (max(len(values) - plan.history, 0), len(plan.features))

    def signal(name: str, t: int) -> float:
        if name in plan.signals:
            return float(values[t, plan.signals.index(name)])
        d = next(d for d in plan.derived if d.name == name)
        return d.offset + sum(w * signal(s, t) for s, w in d.weights.items())

    for k in range(len(x)):
        for j, f in enumerate(plan.features):
            expected = signal(f.signal, plan.history + k - f.lag)
            assert math.isclose(x[k, j], expected, rel_tol=1e-9, abs_tol=1e-6)


@given(plans(), st.data())
def test_stacked_series_assemble_as_each_padded_alone(
    case: tuple[FeaturePlan, np.ndarray], data: st.DataObject
) -> None:
    """``assemble_at`` over short series stacked in one matrix (the requests that arrive
    together) gives, for each series, what ``assemble`` gives for that series alone, padded
    in front with copies of its first row."""
    plan, values = case
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    bounds = [(a, b) for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True) if b > a]
    at = [t for a, b in bounds for t in range(a, b)]
    first = [a for a, b in bounds for _ in range(a, b)]
    x = plan.assemble_at(values, np.array(at, dtype=np.intp), np.array(first, dtype=np.intp))
    alone = [
        plan.assemble(np.vstack([np.repeat(values[a : a + 1], plan.history, axis=0), values[a:b]]))
        for a, b in bounds
    ]
    expected = np.vstack(alone) if alone else np.zeros((0, len(plan.features)))
    assert x.shape == expected.shape
    assert np.allclose(x, expected, rtol=1e-12, atol=1e-9)


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 15), st.integers(1, 3)),
        elements=st.one_of(finite, st.just(np.nan)),
    ),
    st.data(),
)
def test_forward_fill_carries_the_last_value_seen(values: np.ndarray, data: st.DataObject) -> None:
    fallbacks = data.draw(arrays(np.float64, values.shape[1], elements=finite))
    filled = forward_fill(values, fallbacks)
    for j in range(values.shape[1]):
        last = fallbacks[j]
        for i in range(len(values)):
            if not np.isnan(values[i, j]):
                last = values[i, j]
            assert filled[i, j] == last


edges_strategy = st.lists(finite, min_size=2, max_size=8, unique=True).map(sorted)


@given(edges_strategy, st.lists(st.one_of(finite, st.just(math.nan)), max_size=60))
def test_bin_counts_count_every_value_once(edges: list[float], values: list[float]) -> None:
    """Every non-NaN value lands in exactly one bin (outer bins open); NaN in none; the
    interior agrees with np.histogram."""
    counts = bin_counts(values, edges)
    real = np.array([v for v in values if not math.isnan(v)])
    assert len(counts) == len(edges) - 1 and counts.sum() == len(real)
    inside = real[(real >= edges[0]) & (real <= edges[-1])]
    clipped = np.clip(real, edges[0], edges[-1])
    assert np.array_equal(counts, np.histogram(clipped, bins=edges)[0])
    assert len(inside) <= counts.sum()


counts_strategy = st.lists(st.integers(0, 1000), min_size=2, max_size=10)


@given(counts_strategy, st.data())
def test_psi_is_non_negative_zero_on_itself_and_symmetric(
    reference: list[int], data: st.DataObject
) -> None:
    """PSI >= 0; PSI(p, p) = 0 (and any multiple of p); PSI(p, q) = PSI(q, p) when neither
    has an empty bin (the floor breaks symmetry only there)."""
    if sum(reference) == 0:
        reference = [*reference[:-1], 1]
    window = data.draw(
        st.lists(st.integers(0, 1000), min_size=len(reference), max_size=len(reference))
    )
    value = psi(reference, window)
    assert value >= 0 and math.isfinite(value)
    assert psi(reference, reference) == 0.0
    assert math.isclose(psi(reference, [3 * c for c in reference]), 0.0, abs_tol=1e-12)
    if all(reference) and all(window):
        assert math.isclose(value, psi(window, reference), rel_tol=1e-9, abs_tol=1e-12)


@given(
    st.integers(1, 20),
    st.lists(st.lists(finite, min_size=0, max_size=30), max_size=8),
)
def test_rolling_window_keeps_the_newest_values_in_order(
    capacity: int, batches: list[list[float]]
) -> None:
    window = RollingWindow(capacity)
    reference: deque[float] = deque(maxlen=capacity)
    for batch in batches:
        window.extend(batch)
        reference.extend(batch)
        assert window.values().tolist() == list(reference) and len(window) == len(reference)


CONFIG = BiasConfig(max_abs_bias=1.0, max_residual=2.5, gain=0.3, trust=0.8, low=-10, high=10)
result = st.tuples(
    st.floats(-12, 12, allow_nan=False),  # lab value (some out of the valid range)
    st.floats(-10, 10, allow_nan=False),  # estimate
    st.floats(0, 1e6, allow_nan=False),  # sample time
)


@given(st.lists(result, max_size=40))
def test_bias_filter_stays_bounded_and_follows_its_rule(events: list[tuple[float, ...]]) -> None:
    """Whatever arrives: |bias| <= max_abs_bias; a rejected result changes nothing; an
    accepted one moves the bias by exactly k (residual - bias), clipped; accepted sample
    times strictly increase; preview always agrees with update."""
    bias = BiasFilter(CONFIG)
    now = 2e6
    k = CONFIG.gain * CONFIG.trust
    last_time = -math.inf
    for value, estimate, t in events:
        before = bias.bias
        preview = bias.preview(value, estimate, t, now)
        decision = bias.update(value, estimate, t, now)
        assert preview == decision
        assert abs(bias.bias) <= CONFIG.max_abs_bias
        assert decision.residual == value - estimate
        if decision.accepted:
            expected = min(max(before + k * (value - estimate - before), -1.0), 1.0)
            assert math.isclose(bias.bias, expected, rel_tol=1e-12, abs_tol=1e-12)
            assert t > last_time and -10 <= value <= 10 and abs(value - estimate) <= 2.5
            last_time = t
        else:
            assert bias.bias == before and decision.reason is not None


@given(st.lists(result, max_size=40))
def test_replaying_accepted_results_restores_the_bias(events: list[tuple[float, ...]]) -> None:
    """What the service does at start-up: replaying only the accepted results, in order,
    gives the bias the live filter ended with."""
    live = BiasFilter(CONFIG)
    accepted = [e for e in events if live.update(e[0], e[1], e[2], 2e6).accepted]
    replay = BiasFilter(CONFIG)
    for value, estimate, t in accepted:
        assert replay.update(value, estimate, t, 2e6).accepted
    assert replay.bias == live.bias and replay.last_sample_time == live.last_sample_time
