"""The lab-result bias filter: geometric convergence, clipping, and every rejection."""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import pytest

from service.contracts.card import ModelCard
from service.lab.bias import (
    FUTURE,
    IMPLAUSIBLE,
    LATE,
    OUT_OF_ORDER,
    OUT_OF_RANGE,
    BiasConfig,
    BiasFilter,
    residual_sigma,
)
from tests.service.test_registry import make_card

NOW = 1_790_000_000.0
Z975 = NormalDist().inv_cdf(0.975)


def bias_card(quantiles: dict[str, float] | None = None) -> ModelCard:
    """A card whose target ranges over 0..10 mol% with a ±0.2 95 % residual band."""
    card = make_card("col", "v1", b"model")
    data = card.model_dump()
    data["target"]["valid_range"] = {"low": 0.0, "high": 10.0}
    data["residual_quantiles"] = (
        {"0.025": -0.2, "0.5": 0.0, "0.975": 0.2} if quantiles is None else quantiles
    )
    return ModelCard.model_validate(data)


@pytest.fixture
def config() -> BiasConfig:
    return BiasConfig.from_card(bias_card())


def test_config_from_card(config: BiasConfig) -> None:
    # half-width of the 95 % band is 0.2: bias limit 3 * 0.2, residual limit 5 * 0.2
    assert config.max_abs_bias == pytest.approx(0.6)
    assert config.max_residual == pytest.approx(1.0)
    assert (config.low, config.high) == (0.0, 10.0)
    assert (config.gain, config.trust) == (0.3, 1.0)


def test_sigma_from_other_quantile_pairs() -> None:
    card = bias_card({"0.05": -1.0, "0.95": 1.0, "0.25": -0.5, "0.75": 0.4})
    assert residual_sigma(card) == pytest.approx(2.0 / (2 * NormalDist().inv_cdf(0.95)))
    assert residual_sigma(bias_card()) == pytest.approx(0.4 / (2 * Z975))
    floor = bias_card({"0.025": 0.0, "0.975": 0.0})  # a perfect fit does not freeze the filter
    assert residual_sigma(floor) == pytest.approx(1e-3 * 10.0)
    with pytest.raises(ValueError, match="residual_quantiles"):
        residual_sigma(bias_card({"0.5": 0.0, "0.9": 1.0, "p95": 2.0}))


def test_converges_geometrically_to_constant_residual(config: BiasConfig) -> None:
    f = BiasFilter(config)
    residual = 0.3
    for n in range(1, 31):
        update = f.update(5.0 + residual, 5.0, NOW - 3600 + n, NOW)
        assert update.accepted
        assert update.reason is None
        assert update.residual == pytest.approx(residual)
        assert update.bias == pytest.approx(residual * (1 - 0.7**n), rel=1e-9)
    assert f.bias == pytest.approx(residual, abs=1e-4)
    assert f.correct(5.0) == pytest.approx(5.0 + f.bias)


def test_trust_scales_the_gain(config: BiasConfig) -> None:
    f = BiasFilter(dataclasses.replace(config, trust=0.5))
    for n in range(1, 6):
        assert f.update(5.5, 5.0, NOW - 100 + n, NOW).bias == pytest.approx(0.5 * (1 - 0.85**n))


def test_trust_zero_means_no_update(config: BiasConfig) -> None:
    f = BiasFilter(dataclasses.replace(config, trust=0.0), bias=0.1)
    for n in range(10):
        update = f.update(5.5, 5.0, NOW - 100 + n, NOW)
        assert update.accepted  # a valid result, stored and reported...
        assert update.bias == 0.1  # ...that does not move the bias
    assert f.bias == 0.1


def test_bias_is_clipped(config: BiasConfig) -> None:
    f = BiasFilter(config)
    for n in range(50):
        update = f.update(5.9, 5.0, NOW - 100 + n, NOW)  # residual 0.9 < max_residual 1.0
        assert update.accepted
        assert abs(update.bias) <= config.max_abs_bias
    assert f.bias == pytest.approx(0.6)
    for n in range(50):
        f.update(4.1, 5.0, NOW - 40 + n * 0.5, NOW)
    assert f.bias == pytest.approx(-0.6)
    assert BiasFilter(config, bias=5.0).bias == pytest.approx(0.6)  # a restored bias too


@pytest.mark.parametrize(
    ("lab", "estimate", "sample_time", "reason"),
    [
        (-0.1, 0.2, NOW - 60, OUT_OF_RANGE),  # lab value below the target's range
        (10.5, 9.9, NOW - 60, OUT_OF_RANGE),  # above it
        (5.0, 5.0, NOW + 3600, FUTURE),  # local time sent as UTC
        (5.0, 5.0, NOW - 86_400 - 1, LATE),
        (5.0, 5.0, NOW - 7200, OUT_OF_ORDER),  # before the last accepted one
        (5.0, 5.0, NOW - 3600, OUT_OF_ORDER),  # the same sample again
        (6.5, 5.0, NOW - 60, IMPLAUSIBLE),  # residual 1.5 > 1.0
        (3.5, 5.0, NOW - 60, IMPLAUSIBLE),
    ],
)
def test_rejections_leave_the_bias_unchanged(
    config: BiasConfig, lab: float, estimate: float, sample_time: float, reason: str
) -> None:
    f = BiasFilter(config)
    first = f.update(5.2, 5.0, NOW - 3600, NOW)
    assert first.accepted
    before = f.bias
    update = f.update(lab, estimate, sample_time, NOW)
    assert not update.accepted
    assert update.reason == reason
    assert update.detail
    assert update.residual == pytest.approx(lab - estimate)
    assert update.bias == before
    assert f.bias == before
    assert f.last_sample_time == NOW - 3600


def test_small_clock_skew_is_tolerated(config: BiasConfig) -> None:
    assert BiasFilter(config).update(5.1, 5.0, NOW + 60, NOW).accepted


def test_restored_state_and_reset(config: BiasConfig) -> None:
    f = BiasFilter(config, bias=0.2, last_sample_time=NOW - 60)
    assert f.update(5.0, 5.0, NOW - 120, NOW).reason == OUT_OF_ORDER
    f.reset()
    assert (f.bias, f.last_sample_time) == (0.0, None)
    assert f.update(5.0, 5.0, NOW - 120, NOW).accepted


def test_non_finite_inputs_name_the_field(config: BiasConfig) -> None:
    f = BiasFilter(config)
    for kwargs, field in (
        ({"lab_value": math.nan}, "lab_value"),
        ({"estimate": math.inf}, "estimate"),
        ({"sample_time": math.nan}, "sample_time"),
        ({"now": math.nan}, "now"),
    ):
        args = {"lab_value": 5.0, "estimate": 5.0, "sample_time": NOW, "now": NOW, **kwargs}
        with pytest.raises(ValueError, match=field):
            f.update(**args)
    assert f.bias == 0.0
    with pytest.raises(ValueError, match="bias"):
        BiasFilter(config, bias=math.nan)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gain": 0.0}, "gain"),
        ({"gain": 1.5}, "gain"),
        ({"trust": -0.1}, "trust"),
        ({"trust": 1.1}, "trust"),
        ({"max_abs_bias": -1.0}, "max_abs_bias"),
        ({"max_residual": 0.0}, "max_residual"),
        ({"max_residual": math.nan}, "max_residual"),
        ({"max_age_s": 0.0}, "max_age_s"),
        ({"low": 10.0, "high": 0.0}, "low"),
    ],
)
def test_config_is_validated(config: BiasConfig, change: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(config, **change)
