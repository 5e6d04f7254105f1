"""Prometheus metrics of one app, on its own registry (tests build many apps side by side).

Operations counters are updated as requests pass; drift figures are computed when Prometheus
scrapes, from the live monitors, so the prediction path does no extra statistics work.
Names follow Prometheus conventions (``_total`` counters, ``_seconds`` units, base units)
and labels stay bounded: model, stream (at most ``SOFTSENSOR_MAX_STREAMS``), feature,
alarm, endpoint template, status code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.monitoring.alarms import ALARMS
from service.monitoring.drift import DriftMonitor
from service.scoring.runtime import LoadedModel


class StreamView(Protocol):
    """What the drift collector reads from a stream (``service.state.streams.StreamState``)."""

    model: str
    stream: str
    clock: float
    last_residual: float | None
    last_estimate: float | None
    last_lab_value: float | None

    def drift_monitor(self) -> DriftMonitor: ...

    def unchanged_seconds(self) -> dict[str, float]: ...

    def sensor_drift(self) -> dict[str, tuple[float | None, bool]]: ...

    def alarms(self) -> list[str]: ...

    def lab_age(self) -> float | None: ...

    @property
    def bias_value(self) -> float: ...


_PER_FEATURE, _PER_STREAM = ("model", "stream", "feature"), ("model", "stream")
# short name -> (counter?, metric name, help, labels): what the collector fills at a scrape
_FAMILIES: dict[str, tuple[bool, str, str, tuple[str, ...]]] = {
    "psi": (
        False,
        "softsensor_feature_psi",
        "Population stability index of the stream's recent window against the training "
        "reference (a diagnostic: near its maximum on a few hours of normal operation)",
        _PER_FEATURE,
    ),
    "oor": (
        True,
        "softsensor_feature_out_of_range",
        "Values received outside the feature's valid range",
        _PER_FEATURE,
    ),
    "still": (
        False,
        "softsensor_feature_unchanged_seconds",
        "Data-time seconds since the signal's value last changed on the stream (a frozen "
        "sensor grows this)",
        _PER_FEATURE,
    ),
    "redundancy": (
        False,
        "softsensor_sensor_redundancy_ratio",
        "The sensor's residual against the other sensors (its departure from its baseline, "
        "averaged) over the limit calibrated on held-out normal operation; above 1 it drifts",
        _PER_FEATURE,
    ),
    "drifting": (
        False,
        "softsensor_sensor_drifting",
        "1 while the stream's drift detectors flag the sensor (rows say drift:<signal>; the "
        "drift alarm is on)",
        _PER_FEATURE,
    ),
    "pred_psi": (
        False,
        "softsensor_prediction_psi",
        "PSI of recent estimates against training",
        _PER_STREAM,
    ),
    "bias": (
        False,
        "softsensor_bias",
        "Current lab-result bias, in the target's unit",
        _PER_STREAM,
    ),
    "residual": (
        False,
        "softsensor_lab_residual",
        "Last lab value minus the raw estimate at its sample time, target unit",
        _PER_STREAM,
    ),
    "estimate": (
        False,
        "softsensor_estimate",
        "Latest bias-corrected estimate served, in the target's unit",
        _PER_STREAM,
    ),
    "lab": (
        False,
        "softsensor_lab_value",
        "Latest lab or analyzer value received, target unit",
        _PER_STREAM,
    ),
    "lab_age": (
        False,
        "softsensor_lab_result_age_seconds",
        "Data-time seconds from the stream's newest lab sample to its latest row (an "
        "analyzer outage grows it; absent before the first result)",
        _PER_STREAM,
    ),
    "alarm": (
        False,
        "softsensor_alarm",
        "1 while the stream's alarm is on: frozen, drift, residual, analyzer_silent "
        "(thresholds calibrated on held-out normal operation, judged on data time)",
        (*_PER_STREAM, "alarm"),
    ),
    "clock": (
        False,
        "softsensor_stream_data_time_seconds",
        "The stream's latest data time (POSIX seconds)",
        _PER_STREAM,
    ),
    "info": (
        False,
        "softsensor_model_info",
        "The model version served",
        ("model", "version", "sha256"),
    ),
    "ready": (False, "softsensor_model_ready", "1 if a verified version is loaded", ("model",)),
}


def _families() -> dict[str, Any]:
    """A fresh family of each gauge and counter the collector fills, by short name."""
    return {
        key: (CounterMetricFamily if counter else GaugeMetricFamily)(name, text, labels=labels)
        for key, (counter, name, text, labels) in _FAMILIES.items()
    }


class DriftCollector(Collector):
    """Computes drift gauges at scrape time from the live streams of the served models."""

    def __init__(
        self,
        streams: Callable[[], Iterable[StreamView]],
        models: Callable[[], Iterable[LoadedModel]],
        served: Callable[[], list[str]],
    ):
        self._streams = streams
        self._models = models
        self._served = served

    def collect(self) -> Iterator[Metric]:
        f = _families()
        psi, oor, still, pred_psi, bias = f["psi"], f["oor"], f["still"], f["pred_psi"], f["bias"]
        residual, estimate, lab, lab_age = f["residual"], f["estimate"], f["lab"], f["lab_age"]
        alarm, clock, info, ready = f["alarm"], f["clock"], f["info"], f["ready"]
        ratio, drifting = f["redundancy"], f["drifting"]
        for s in self._streams():
            key = [s.model, s.stream]
            monitor = s.drift_monitor()
            for feature, value in monitor.feature_psi().items():
                psi.add_metric([*key, feature], value)
            for feature, count in monitor.out_of_range_totals().items():
                oor.add_metric([*key, feature], count)
            for signal, seconds in s.unchanged_seconds().items():
                still.add_metric([*key, signal], seconds)
            for signal, (share, flagged) in s.sensor_drift().items():
                if share is not None:
                    ratio.add_metric([*key, signal], share)
                drifting.add_metric([*key, signal], 1.0 if flagged else 0.0)
            pred_psi.add_metric(key, monitor.prediction_psi())
            bias.add_metric(key, s.bias_value)
            optional: tuple[tuple[GaugeMetricFamily, float | None], ...] = (
                (residual, s.last_residual),
                (estimate, s.last_estimate),
                (lab, s.last_lab_value),
                (lab_age, s.lab_age()),
                (clock, s.clock if math.isfinite(s.clock) else None),
            )
            for gauge, number in optional:
                if number is not None:
                    gauge.add_metric(key, number)
            on = s.alarms()
            for name in ALARMS:
                alarm.add_metric([*key, name], 1.0 if name in on else 0.0)
        loaded = set()
        for model in self._models():
            loaded.add(model.name)
            info.add_metric([model.name, model.version, model.card.onnx_sha256], 1.0)
        for name in self._served():
            ready.add_metric([name], 1.0 if name in loaded else 0.0)
        yield from (
            psi,
            oor,
            still,
            ratio,
            drifting,
            pred_psi,
            bias,
            residual,
            estimate,
            lab,
            lab_age,
            alarm,
        )
        yield from (clock, info, ready)


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
        self.unlogged = Counter(
            "softsensor_unlogged_rows",
            "Rows answered while the state database was unavailable, not in the prediction log",
            registry=r,
        )
        self.imputed = Counter(
            "softsensor_imputed_values",
            "Values sent as null (sensor or analyzer not reporting), carried forward",
            ["model", "signal"],
            registry=r,
        )
        self.statuses = Counter(
            "softsensor_rows_by_status",
            "Rows estimated, by status (good, uncertain, bad)",
            ["model", "status"],
            registry=r,
        )

    def watch(
        self,
        streams: Callable[[], Iterable[StreamView]],
        models: Callable[[], Iterable[LoadedModel]],
        served: Callable[[], list[str]],
    ) -> None:
        """Start reporting the live streams' drift and the served models at each scrape."""
        self.registry.register(DriftCollector(streams, models, served))
