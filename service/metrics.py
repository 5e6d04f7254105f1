"""Prometheus metrics of one app, on its own registry (tests build many apps side by side).

Operations counters are updated as requests pass; drift figures are computed when Prometheus
scrapes, from the live monitors, so the prediction path does no extra statistics work.
Names follow Prometheus conventions (``_total`` counters, ``_seconds`` units, base units)
and labels stay low-cardinality: model, feature, endpoint template, status code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.drift import DriftMonitor, PageHinkley
from service.runtime import LoadedModel


class SlotView(Protocol):
    """What the drift collector reads from a served model."""

    model: LoadedModel
    residual_alarm: PageHinkley
    last_residual: float | None
    last_estimate: float | None
    last_lab_value: float | None
    last_lab_received: float | None

    @property
    def drift(self) -> DriftMonitor: ...

    @property
    def bias_value(self) -> float: ...


class DriftCollector(Collector):
    """Computes drift gauges at scrape time from the currently served models."""

    def __init__(self, slots: Callable[[], Iterable[SlotView]], served: Callable[[], list[str]]):
        self._slots = slots
        self._served = served

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        psi = GaugeMetricFamily(
            "softsensor_feature_psi",
            "Population stability index of the recent window against the training reference",
            labels=["model", "feature"],
        )
        oor = CounterMetricFamily(
            "softsensor_feature_out_of_range",
            "Values received outside the feature's valid range",
            labels=["model", "feature"],
        )
        still = GaugeMetricFamily(
            "softsensor_feature_unchanged_seconds",
            "Seconds since the feature's value last changed (a frozen sensor grows this)",
            labels=["model", "feature"],
        )
        pred_psi = GaugeMetricFamily(
            "softsensor_prediction_psi",
            "PSI of recent estimates against training",
            labels=["model"],
        )
        bias = GaugeMetricFamily(
            "softsensor_bias", "Current lab-result bias, in the target's unit", labels=["model"]
        )
        residual = GaugeMetricFamily(
            "softsensor_lab_residual",
            "Last lab value minus the raw estimate at its sample time, target unit",
            labels=["model"],
        )
        estimate = GaugeMetricFamily(
            "softsensor_estimate",
            "Latest bias-corrected estimate served, in the target's unit",
            labels=["model"],
        )
        lab = GaugeMetricFamily(
            "softsensor_lab_value",
            "Latest lab or analyzer value received, target unit",
            labels=["model"],
        )
        lab_age = GaugeMetricFamily(
            "softsensor_lab_result_age_seconds",
            "Seconds since this process last received a lab or analyzer result (an analyzer "
            "outage grows it; absent before the first)",
            labels=["model"],
        )
        alarm = GaugeMetricFamily(
            "softsensor_residual_drift_alarm",
            "1 while the Page-Hinkley test sees a shift in the lab residuals",
            labels=["model"],
        )
        info = GaugeMetricFamily(
            "softsensor_model_info",
            "The model version served",
            labels=["model", "version", "sha256"],
        )
        ready = GaugeMetricFamily(
            "softsensor_model_ready", "1 if a verified version is loaded", labels=["model"]
        )
        loaded = set()
        for slot in self._slots():
            name = slot.model.name
            loaded.add(name)
            for feature, value in slot.drift.feature_psi().items():
                psi.add_metric([name, feature], value)
            for feature, count in slot.drift.out_of_range_totals().items():
                oor.add_metric([name, feature], count)
            for feature, seconds in slot.drift.seconds_since_change(now).items():
                still.add_metric([name, feature], seconds)
            pred_psi.add_metric([name], slot.drift.prediction_psi())
            bias.add_metric([name], slot.bias_value)
            if slot.last_residual is not None:
                residual.add_metric([name], slot.last_residual)
            if slot.last_estimate is not None:
                estimate.add_metric([name], slot.last_estimate)
            if slot.last_lab_value is not None:
                lab.add_metric([name], slot.last_lab_value)
            if slot.last_lab_received is not None:
                lab_age.add_metric([name], max(now - slot.last_lab_received, 0.0))
            alarm.add_metric([name], 1.0 if slot.residual_alarm.alarm else 0.0)
            info.add_metric([name, slot.model.version, slot.model.card.onnx_sha256], 1.0)
        for name in self._served():
            ready.add_metric([name], 1.0 if name in loaded else 0.0)
        yield from (psi, oor, still, pred_psi, bias, residual, estimate, lab, lab_age, alarm)
        yield from (info, ready)


class ServiceMetrics:
    """Every metric of one app, registered on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "softsensor_http_requests",
            "HTTP requests served",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "softsensor_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["endpoint"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.rows = Counter("softsensor_predicted_rows", "Rows estimated", ["model"], registry=r)
        self.batch_requests = Histogram(
            "softsensor_predict_batch_requests",
            "Predict requests scored together in one call (those that arrived together)",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.lab_results = Counter(
            "softsensor_lab_results",
            "Lab results received, by what became of them",
            ["model", "outcome"],
            registry=r,
        )
        self.reloads = Counter(
            "softsensor_model_reloads",
            "Model versions loaded and swapped in",
            ["model"],
            registry=r,
        )
        self.reload_refusals = Counter(
            "softsensor_model_reload_refusals",
            "Model versions refused at (re)load: sha256, card, graph or test inference failed",
            ["model"],
            registry=r,
        )
        self.imputed = Counter(
            "softsensor_imputed_values",
            "Values sent as null (sensor or analyzer not reporting), carried forward",
            ["model", "signal"],
            registry=r,
        )

    def watch(
        self, slots: Callable[[], Iterable[SlotView]], served: Callable[[], list[str]]
    ) -> None:
        """Start reporting drift for the models ``slots`` returns at each scrape."""
        self.registry.register(DriftCollector(slots, served))
