"""The card's calibration block, recomputed independently from the exported model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2

from service.contracts.card import ModelCard
from service.contracts.registry import Registry
from service.lab.bias import BiasConfig, BiasFilter
from service.monitoring.alarms import AlarmConfig, SensorDrift
from service.scoring.runtime import LoadedModel, load_model
from service.scoring.validity import InputValidity
from training.calibration import _frozen_normal, _plan, _read_rows, _spans
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.experiment import RunConfig, run_experiment
from training.export import run_onnx
from training.interval import replay_bias
from training.publish import export_run, publish
from training.simulator import simulate
from training.spec import load_spec


@pytest.fixture(scope="module")
def trained_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Dataset, LoadedModel, np.ndarray]:
    """Three simulated days of Column A, a short training, the exported model loaded, and
    the validation estimates of the networks validation judged (the served ones are refitted
    on train + validation, so their own validation errors are in sample)."""
    tmp = tmp_path_factory.mktemp("calibration")
    data, spec = simulate(3, seed=5, out=tmp / "column_a.csv")
    ds = load_dataset(load_spec(spec), data)
    cfg = RunConfig(
        network=NetworkConfig(hidden=(16, 16)),
        train=TrainConfig(epochs=30, progress=False, refit=True),
        ca=CAConfig(),
    )
    report = run_experiment(ds, cfg)
    registry = Registry(tmp / "models")
    publish(ds, report, registry, "column_a", version="v1")
    assert report.result.refit
    return ds, load_model(registry, "column_a", "v1"), report.predict_held_out(ds.validation.x)


@pytest.fixture(scope="module")
def trained(trained_run: tuple[Dataset, LoadedModel, np.ndarray]) -> tuple[Dataset, LoadedModel]:
    return trained_run[0], trained_run[1]


def _calibration(model: LoadedModel) -> object:
    assert model.card.calibration is not None
    return model.card.calibration


def _estimates(ds: Dataset, model: LoadedModel, part: str) -> np.ndarray:
    cols = [ds.feature_names.index(f.name) for f in model.card.features]
    return model.predict(getattr(ds, part).x[:, cols])


def test_replayed_bias_is_the_services_filter() -> None:
    """Results arriving ``delay`` rows after their sample, through service.lab.bias.BiasFilter."""
    rng = np.random.default_rng(2)
    index = np.arange(0, 400, 10)
    y, estimate = rng.normal(size=40), rng.normal(size=40)
    corrected, innovation, path = replay_bias(index, y, estimate, 10, 0.3)
    config = BiasConfig(max_abs_bias=1e9, max_residual=math.inf, gain=0.3)
    live = BiasFilter(config)
    for k in range(40):
        assert corrected[k] == pytest.approx(estimate[k] + live.bias)  # the bias known at t_k
        before = live.bias
        assert live.update(y[k], estimate[k], float(k), float(k)).accepted  # arrives at t_k+1
        assert innovation[k] == pytest.approx(y[k] - estimate[k] - before)
        assert path[k] == pytest.approx(live.bias)


def test_the_interval_quantiles_are_split_conformal_on_validation(
    trained_run: tuple[Dataset, LoadedModel, np.ndarray],
) -> None:
    """Recomputed from held-out estimates (the served, refitted model's own validation
    errors are in sample and would give a narrower interval): the scores' (n + 1)-corrected
    quantiles, narrowed about their median by the share of the analyzer's declared scatter,
    which takes the rest of the lab results' spread."""
    ds, model, est = trained_run
    interval = model.card.calibration.interval  # type: ignore[union-attr]
    served = _estimates(ds, model, "validation")
    assert np.sqrt(np.mean((served - ds.validation.y) ** 2)) < np.sqrt(
        np.mean((est - ds.validation.y) ** 2)
    )
    delay = ds.spec.target.analyzer_delay
    corrected, _, _ = replay_bias(ds.validation.index, ds.validation.y, est, delay, 0.3)
    scale = np.maximum(np.abs(corrected), interval.scale_floor) ** interval.scale_power
    raw = (ds.validation.y - corrected) / scale
    scores = np.sort(raw)
    n = len(scores)
    assert interval.results == n
    rep = ds.spec.target.repeatability
    assert rep is not None and interval.covers == "truth"
    noise = (rep.relative_sd * ds.validation.y) ** 2 + rep.absolute_sd**2
    upper = np.mean((raw - np.median(raw)) ** 2) * (n - 1) / chi2.ppf(0.05, n - 1)
    share = np.mean(noise / scale**2) / upper
    assert interval.analyzer_share == pytest.approx(min(share, 0.75), rel=1e-6)
    k, centre = math.sqrt(1 - interval.analyzer_share), np.median(raw)
    low, high = scores[math.floor((n + 1) * 0.025) - 1], scores[math.ceil((n + 1) * 0.975) - 1]
    assert interval.low == pytest.approx(centre + k * (low - centre), rel=1e-6)
    assert interval.high == pytest.approx(centre + k * (high - centre), rel=1e-6)
    inside = (scores >= interval.low) & (scores <= interval.high)
    assert interval.validation_coverage == pytest.approx(inside.mean())
    assert 0 <= interval.scale_power <= 1


def test_the_interval_covers_the_truth_not_the_next_reading(
    trained_run: tuple[Dataset, LoadedModel, np.ndarray],
) -> None:
    """On validation the interval holds the true composition near 95 % of the time (84
    results here: a coverage measured on so few has a spread of 2-3 %), and fewer of the
    noisy analyzer readings: it promises the truth. The plant replay measures it on more."""
    ds, model, est = trained_run  # held-out estimates, as calibrated
    interval = model.card.calibration.interval  # type: ignore[union-attr]
    truth = ds.validation.truth[ds.spec.target.truth or ""]
    corrected, _, _ = replay_bias(
        ds.validation.index, ds.validation.y, est, ds.spec.target.analyzer_delay, 0.3
    )
    scale = np.maximum(np.abs(corrected), interval.scale_floor) ** interval.scale_power
    low, high = corrected + interval.low * scale, corrected + interval.high * scale
    on_truth = float(np.mean((truth >= low) & (truth <= high)))
    on_lab = float(np.mean((ds.validation.y >= low) & (ds.validation.y <= high)))
    assert 0.88 <= on_truth <= 0.99, on_truth
    assert on_lab < on_truth


def test_t2_and_spe_limits_are_the_validation_99_percent(
    trained: tuple[Dataset, LoadedModel],
) -> None:
    """The service's own T2/SPE on the validation span's rows: 1 % of them above each limit;
    every row of the training file inside the training range."""
    ds, model = trained
    card = model.card
    assert card.calibration is not None
    validity = InputValidity(card, card.calibration)
    plan, _ = _plan(ds, _kept(ds, model))
    rows = _read_rows(ds, plan)
    _, val = _spans(ds, rows)
    a = validity.assess(rows.x[val])
    for stat, limit in ((a.t2, validity.t2_limit), (a.spe, validity.spe_limit)):
        assert np.mean(stat > limit) == pytest.approx(0.01, abs=1.5 / len(stat) + 1e-3)
    assert not validity.assess(rows.x).outside.any()
    pca = card.calibration.inputs
    assert pca.explained >= 0.99 or len(pca.components) == len(pca.features) - 1
    assert len(pca.features) == len({card.features[0].signal, *(f.signal for f in card.features)})


def test_the_alarms_are_quiet_on_held_out_normal_data(
    trained_run: tuple[Dataset, LoadedModel, np.ndarray],
) -> None:
    """Replayed through the service's detectors, the validation rows stay below half of each
    limit (the limits are twice the largest value seen there)."""
    ds, model, est = trained_run
    card: ModelCard = model.card
    assert card.calibration is not None
    config = AlarmConfig.from_card(card, model.raw_signals, 600.0)
    plan, _ = _plan(ds, _kept(ds, model))
    rows = _read_rows(ds, plan)
    _, val = _spans(ds, rows)
    residual = InputValidity(card, card.calibration).assess(rows.x[val]).residual
    assert residual is not None
    if config.drift_limit is not None:
        assert SensorDrift(config).observe(residual).max() <= 0.5 + 1e-9
    corrected, _, bias = replay_bias(
        ds.validation.index, ds.validation.y, est, ds.spec.target.analyzer_delay, 0.3
    )
    interval = card.calibration.interval
    scale = np.maximum(np.abs(corrected), interval.scale_floor) ** interval.scale_power
    assert np.max(np.abs(bias) / scale) <= 0.5 * card.calibration.alarms.bias_alarm + 1e-9
    assert BiasConfig.from_card(card).max_abs_bias >= card.calibration.alarms.bias_clip


def test_frozen_normal_repeats_ignore_rare_stuck_periods() -> None:
    """An analyzer input holding each value 9 intervals is normal at 9; a noisy sensor with
    two stuck stretches of 60 in 20,000 samples is normal at 0 or 1."""
    rng = np.random.default_rng(0)
    held = np.repeat(rng.normal(size=2000), 10)
    noisy = rng.normal(size=20_000).round(2)
    noisy[5000:5060] = noisy[5000]
    noisy[9000:9060] = noisy[9000]
    raw = np.column_stack([held, noisy])
    normal = _frozen_normal(raw, ["q", "T"])
    assert normal["q"] == 9 and normal["T"] <= 1


def _kept(ds: Dataset, model: LoadedModel) -> list[int]:
    """The exported model's features, as indices into the spec's features."""
    return [ds.feature_names.index(f.name) for f in model.card.features]


def test_calibration_uses_the_onnx_graph(tmp_path: Path) -> None:
    """The card's estimates are the ONNX graph's: export and onnxruntime agree with torch."""
    from tests.conftest import TINY_SPEC, write_tiny_csv

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    ds = load_dataset(load_spec(spec), write_tiny_csv(tmp_path / "tiny.csv", n=120))
    report = run_experiment(ds, RunConfig(train=TrainConfig(epochs=5, progress=False)))
    exported = export_run(ds, report)
    x = ds.validation.x[:, exported.inputs_kept]
    assert run_onnx(exported.onnx_bytes, x) == pytest.approx(
        report.result.predict(ds.validation.x), abs=1e-4
    )
