"""Building the model card from a finished run: the facts the service needs to trust a model."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import numpy as np

from service.contracts.arrays import FloatArray
from service.contracts.card import (
    BaselineCard,
    DataSummary,
    EnsembleCard,
    FeatureCard,
    LagSelection,
    ModelCard,
    PruningReport,
    ReferenceStats,
    RegressionMetrics,
    SignalCard,
    TargetCard,
    ValidRange,
)
from service.contracts.features import LagFeature
from training.calibration import calibrate
from training.data import Dataset
from training.evaluation import score
from training.experiment import RunReport
from training.export import ExportedModel
from training.spec import DatasetSpec

REFERENCE_BINS = 10  # deciles of the training split: PSI's customary resolution
RESIDUAL_QUANTILES = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)


def reference_stats(name: str, values: FloatArray, bins: int = REFERENCE_BINS) -> ReferenceStats:
    """Quantile bins of the training values, the reference that drift is measured against.

    Edges are the training quantiles, so each bin holds about 1/bins of the rows; repeated
    edges (discrete signals) are merged. The outer edges are the training min and max; the
    service counts values beyond them in the outer bins.
    """
    v = np.asarray(values, dtype=np.float64)
    edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:
        edges = np.array([v.min(), v.min() + 1.0])
    counts, _ = np.histogram(v, bins=edges)
    return ReferenceStats(
        name=name,
        bin_edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        mean=float(v.mean()),
        std=float(v.std()),
        min=float(v.min()),
        max=float(v.max()),
    )


def _metrics(y: FloatArray, pred: FloatArray) -> RegressionMetrics:
    s = score(y, pred)
    return RegressionMetrics(rmse=s.rmse, mae=s.mae, r2=s.r2, rows=s.rows)


def _valid(bounds: tuple[float, float]) -> ValidRange:
    return ValidRange(low=bounds[0], high=bounds[1])


def lag_selection(dataset: Dataset, inputs_kept: list[int]) -> dict[str, LagSelection]:
    """Per signal, the lags the spec offered and the lags the pruned model kept."""
    features = dataset.spec.lag_features()
    out: dict[str, LagSelection] = {}
    for i, f in enumerate(features):
        entry = out.setdefault(f.signal, LagSelection(candidates=[], kept=[]))
        entry.candidates.append(f.lag)
        if i in inputs_kept:
            entry.kept.append(f.lag)
    return out


def baseline_cards(report: RunReport) -> dict[str, BaselineCard]:
    """The run's ``baseline`` block, against the analyzer, as card entries."""
    cards = {}
    for name, entry in report.metrics["baseline"].items():
        cards[name] = BaselineCard(
            description=entry["description"],
            alpha=entry.get("alpha"),
            feature=entry.get("feature"),
            metrics={
                part: RegressionMetrics(**entry[part]["analyzer"])
                for part in ("validation", "test")
            },
        )
    return cards


def build_card(
    dataset: Dataset,
    report: RunReport,
    exported: ExportedModel,
    *,
    name: str,
    version: str,
    created: datetime,
) -> ModelCard:
    """Describe the exported model: the inputs it kept, and every signal (marking the unused)."""
    spec = dataset.spec
    features = spec.lag_features()
    kept = [features[i] for i in exported.inputs_kept]
    pred = {part: report.predict(getattr(dataset, part).x) for part in ("train", "test")}
    # Validation errors of the models that were judged on it (a refit learnt from those rows)
    pred["validation"] = report.predict_held_out(dataset.validation.x)
    residuals = dataset.validation.y - pred["validation"]
    x_train = dataset.train.x
    m = report.metrics
    return ModelCard(
        name=name,
        version=version,
        created=created,
        onnx_sha256=hashlib.sha256(exported.onnx_bytes).hexdigest(),
        onnx_bytes=len(exported.onnx_bytes),
        dense_onnx_bytes=exported.dense_onnx_bytes,
        signals=_signal_cards(spec, kept),
        features=[_feature_card(spec, f) for f in kept],
        target=_target_card(spec),
        data=_data_summary(dataset),
        reference=[
            reference_stats(f.name, x_train[:, i])
            for f, i in zip(kept, exported.inputs_kept, strict=True)
        ],
        prediction_reference=reference_stats("prediction", pred["train"]),
        metrics={
            "train": _metrics(dataset.train.y, pred["train"]),
            "validation": _metrics(dataset.validation.y, pred["validation"]),
            "test": _metrics(dataset.test.y, pred["test"]),
        },
        pruning=_pruning_report(m),
        residual_quantiles={f"{q:g}": float(np.quantile(residuals, q)) for q in RESIDUAL_QUANTILES},
        training=_training_block(m, spec),
        baseline=baseline_cards(report),
        lag_selection=lag_selection(dataset, exported.inputs_kept),
        ensemble=EnsembleCard(
            members=len(report.members),
            seeds=[r["seed"] for r in m["member_runs"]],
            pruning_rate=[r["pruning_rate"] for r in m["member_runs"]],
            ended_linear=[r["ended_linear"] for r in m["member_runs"]],
        ),
        calibration=calibrate(dataset, exported, pred["validation"]),
    )


def _signal_cards(spec: DatasetSpec, kept: list[LagFeature]) -> list[SignalCard]:
    """Every signal of the spec, measured then derived, marked used if the model reads it."""
    needed = {f.signal for f in kept}
    for d in reversed(spec.derived):  # a derived signal needs its sources
        if d.name in needed:
            needed |= set(d.combine)
    return [
        SignalCard(
            name=s.name,
            unit=s.unit,
            valid_range=_valid(s.range),
            description=s.description,
            used=s.name in needed,
        )
        for s in spec.signals
    ] + [
        SignalCard(
            name=d.name,
            unit=d.unit,
            valid_range=_valid(d.range),
            description=d.description,
            derived_from=dict(d.combine),
            derived_offset=d.offset,
            used=d.name in needed,
        )
        for d in spec.derived
    ]


def _feature_card(spec: DatasetSpec, f: LagFeature) -> FeatureCard:
    signal = spec.describe(f.signal)
    return FeatureCard(
        name=f.name, signal=f.signal, lag=f.lag, unit=signal.unit, valid_range=_valid(signal.range)
    )


def _target_card(spec: DatasetSpec) -> TargetCard:
    return TargetCard(
        name=spec.target.name,
        unit=spec.target.unit,
        valid_range=_valid(spec.target.range),
        analyzer_delay_samples=spec.target.analyzer_delay,
        lab_delay=spec.target.lab_delay,
        sample_interval_s=spec.source.sample_interval_s,
        transform=spec.target.transform,
    )


def _data_summary(dataset: Dataset) -> DataSummary:
    return DataSummary(
        source=dataset.source,
        sha256=dataset.sha256,
        rows_read=dataset.rows_read,
        rows_used=dataset.rows_used,
        rows_train=len(dataset.train),
        rows_validation=len(dataset.validation),
        rows_test=len(dataset.test),
        first_time=dataset.timestamps[0] if dataset.timestamps else None,
        last_time=dataset.timestamps[-1] if dataset.timestamps else None,
        noise_sigma=dataset.noise_sigma,
        values_out_of_range=dataset.values_out_of_range,
        values_filled=dataset.values_filled,
        target_out_of_range=dataset.target_out_of_range,
    )


def _pruning_report(m: dict[str, Any]) -> PruningReport:
    return PruningReport(
        method=m["method"],
        config=dict(m["pruner"]),
        pruning_rate=m["pruning_rate"],
        pruning_rate_per_layer=m["pruning_rate_per_layer"],
        neurons_removed=m["neurons_removed"],
        inputs_removed=m["inputs_removed"],
        params_before=m["params_before"],
        params_after=m["params_after"],
    )


def _training_block(m: dict[str, Any], spec: DatasetSpec) -> dict[str, Any]:
    """The recipe as run: what ``retrain`` reads back to train a challenger the same way."""
    return {
        "seed": m["seed"],
        "noise": m["noise"],
        "network": m["network"],
        "optimizer": m["training"],
        "epochs": m["epochs"],
        "best_epoch": m["best_epoch"],
        "train_seconds": m["train_seconds"],
        "cleanup": m["cleanup"],
        "spec": spec.model_dump(mode="json"),
    }
