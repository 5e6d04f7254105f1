"""The data plane: served models, their drift and bias state, and the operations on them.

Routes parse and call; this module does the work (MLServer's layering). A served model is a
``ModelSlot``; a reload builds a new slot and swaps one dictionary entry, so a request that
already holds the old slot finishes on it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.bias import BiasConfig, BiasFilter, residual_sigma
from service.card import ModelCard
from service.coalescer import PredictCoalescer
from service.drift import DriftMonitor, PageHinkley
from service.errors import (
    BadInputError,
    ConflictError,
    ModelFaultError,
    ModelNotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    ServiceError,
    shown_names,
)
from service.metrics import ServiceMetrics
from service.registry import Registry, RegistryError
from service.rows import Assembled, Floats, Series, assemble_many
from service.runtime import LoadedModel, ModelLoadError, load_model
from service.schemas import (
    LabOutcome,
    LabRequest,
    LabResponse,
    PredictRequest,
    Stamp,
    StoredLab,
)
from service.settings import Settings
from service.store import LabStore
from service.streams import StreamStore

log = logging.getLogger("softsensor")


def to_posix(stamp: Stamp) -> float:
    """POSIX seconds from an ISO datetime (naive = UTC) or a number."""
    if isinstance(stamp, datetime):
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    return float(stamp)


def from_posix(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _floats(values: list[float | None]) -> Floats:
    """A JSON number list as floats, null as NaN; the common all-numbers case stays in C."""
    try:
        return np.asarray(values, dtype=np.float64)
    except TypeError:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _row_flags(rows: Assembled, i: int, names: tuple[str, ...], doubtful: bool) -> dict[str, Any]:
    if not doubtful:  # only its history is missing
        return {"out_of_range": [], "imputed": [], "missing_history": True}
    outside, imputed = rows.out_of_range[i].tolist(), rows.imputed[i].tolist()
    return {
        "out_of_range": [s for s, bad in zip(names, outside, strict=True) if bad],
        "imputed": [s for s, bad in zip(names, imputed, strict=True) if bad],
        "missing_history": i < rows.padded,
    }


def _non_finite(
    model: LoadedModel, rows: Assembled, estimate: Floats, history: Series | None
) -> ServiceError:
    """The error for estimates that came out NaN or infinite.

    A verified model gives finite estimates on plausible inputs (its load-time probe checks
    that), so when values outside their valid range fed a row that gives none, the values
    are to blame (a historian's 1e30 "bad value" overflows the float32 graph): a 422 naming
    the signals. The value may be a lag: an earlier row of the request, or of the stream's
    remembered history. Otherwise it is the model's fault, a 500.
    """
    bad = np.flatnonzero(~np.isfinite(estimate))
    outside = rows.out_of_range[: bad[-1] + 1].any(axis=0)  # the rows up to the last bad one
    if history is not None and len(history):
        outside |= ((history.values < model.low) | (history.values > model.high)).any(axis=0)
    if outside.any():
        names = [model.raw_signals[j] for j in np.flatnonzero(outside)]
        return BadInputError(
            f"records {bad[:5].tolist()}: values of {names} (in these records or in the "
            "history their lags use) lie so far outside their valid range that the model "
            "gives no finite estimate"
        )
    return ModelFaultError(f"model {model.name} {model.version} gave a non-finite estimate")


@dataclass
class _Part:
    """One predict request, read and checked, waiting to be scored with the others."""

    req: PredictRequest
    batch: Series
    stamps: Any  # as sent, echoed back
    history: Series | None


class PredictionLog:
    """Recent raw estimates by sample time, to match lab results arriving later."""

    def __init__(self, size: int) -> None:
        self._times: deque[float] = deque(maxlen=size)
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, times: np.ndarray, estimates: np.ndarray) -> None:
        with self._lock:
            self._times.extend(times.tolist())
            self._values.extend(estimates.tolist())

    def find(self, t: float, tolerance: float) -> float | None:
        """The estimate made closest to ``t``, if one lies within ``tolerance`` seconds."""
        with self._lock:
            if not self._times:
                return None
            times = np.fromiter(self._times, dtype=np.float64, count=len(self._times))
            i = int(np.argmin(np.abs(times - t)))
            return self._values[i] if abs(times[i] - t) <= tolerance else None


class DriftFeed:
    """Rows on their way to the drift monitor, handed over in batches.

    Updating the monitor costs about the same for one row as for hundreds, so rows are
    collected and flushed every ``max_rows`` rows or ``max_age_s`` seconds, and before
    anything reads the monitor (a scrape, a frozen-sensor check).
    """

    def __init__(self, monitor: DriftMonitor, max_rows: int = 256, max_age_s: float = 1.0):
        self.monitor = monitor
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._x: list[Floats] = []
        self._y: list[Floats] = []
        self._t: list[Floats] = []
        self._rows = 0
        self._since = time.monotonic()
        self._lock = threading.Lock()

    def add(self, x: Floats, y: Floats, t: Floats) -> None:
        with self._lock:
            self._x.append(x)
            self._y.append(y)
            self._t.append(t)
            self._rows += len(y)
            due = self._rows >= self.max_rows or time.monotonic() - self._since > self.max_age_s
        if due:
            self.flush()

    def flush(self) -> DriftMonitor:
        with self._lock:
            if len(self._x) == 1:  # one batch (a big one, typically): no copy
                self.monitor.observe(self._x[0], self._y[0], self._t[0])
            elif self._x:
                self.monitor.observe(
                    np.vstack(self._x), np.concatenate(self._y), np.concatenate(self._t)
                )
            self._x, self._y, self._t, self._rows = [], [], [], 0
            self._since = time.monotonic()
        return self.monitor


@dataclass
class ModelSlot:
    """One served model version and the live state that goes with it."""

    model: LoadedModel
    drift_feed: DriftFeed
    bias: BiasFilter
    residual_alarm: PageHinkley
    predictions: PredictionLog
    rows_counter: Any  # the Prometheus child for this model, looked up once
    last_residual: float | None = None
    last_estimate: float | None = None  # corrected, latest served
    last_lab_value: float | None = None
    last_lab_received: float | None = None  # POSIX s: an analyzer outage shows as its age
    lab_lock: threading.Lock = field(default_factory=threading.Lock)
    _frozen: tuple[float, list[str]] = (-math.inf, [])

    @property
    def bias_value(self) -> float:
        return self.bias.bias

    @property
    def drift(self) -> DriftMonitor:
        """The monitor, brought up to date."""
        return self.drift_feed.flush()

    def frozen_signals(self, now: float, limit_s: float) -> list[str]:
        """Sensors whose reading has not changed for ``limit_s``; re-evaluated once a second
        (a sensor is frozen over minutes, so a second's staleness changes nothing)."""
        checked, signals = self._frozen
        if abs(now - checked) < 1.0:
            return signals
        features = set(self.drift.frozen(now, limit_s))
        # A sensor is frozen when its current reading stops changing; lagged copies follow it.
        signals = sorted(
            {f.signal for f in self.model.features if f.lag == 0 and f.name in features}
        )
        self._frozen = (now, signals)
        return signals


class SoftSensorService:
    """Everything the HTTP layer calls. Built by the app factory, started in its lifespan."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.registry = Registry(settings.registry)
        self.slots: dict[str, ModelSlot] = {}
        self.served: list[str] = []
        self.streams = StreamStore(settings.max_streams)
        self.store: LabStore | None = None
        self._refused: dict[str, str] = {}  # name -> version last refused (log once)
        self._missing: dict[str, str] = {}  # name -> champion not (yet) in the registry
        self._reload_lock = threading.Lock()
        self.coalescer = PredictCoalescer(
            self.predict_many,
            settings.coalesce_requests,
            settings.coalesce_rows,
            metrics.batch_requests,
        )
        metrics.watch(lambda: list(self.slots.values()), lambda: list(self.served))

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the store and load every served model's champion; failures leave not-ready."""
        self.store = LabStore(self.settings.state_dir / "lab_results.sqlite")
        self.served = list(self.settings.models or self._registry_names())
        if not self.served:
            log.warning(
                "no models in registry %s: not ready until one appears", self.settings.registry
            )
        for name in self.served:
            self.refresh(name)

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()

    def _registry_names(self) -> list[str]:
        try:
            return self.registry.names()
        except (RegistryError, OSError) as exc:
            log.error("cannot list registry %s: %s", self.settings.registry, exc)
            return []

    @property
    def ready(self) -> bool:
        return bool(self.served) and all(name in self.slots for name in self.served)

    def default_name(self) -> str:
        if self.settings.default_model:
            return self.settings.default_model
        if not self.served:
            raise NotReadyError("no model is configured or registered yet")
        return self.served[0]

    def slot(self, name: str | None) -> ModelSlot:
        name = name or self.default_name()
        if name not in self.served:
            raise ModelNotFoundError(f"model {name!r} is not served here; served: {self.served}")
        slot = self.slots.get(name)
        if slot is None:
            raise NotReadyError(f"model {name!r} has no verified version loaded yet")
        return slot

    # ---- loading and hot reload --------------------------------------------------------

    def _new_slot(self, model: LoadedModel) -> ModelSlot:
        card = model.card
        previous = self.slots.get(model.name)
        if previous is not None and previous.model.raw_signals != model.raw_signals:
            self.streams.forget(model.name)  # remembered rows have the old signal layout
        if previous is not None:  # the bias tracks the plant, not the model: carry it over
            bias = BiasFilter(
                BiasConfig.from_card(card),
                bias=previous.bias.bias,
                last_sample_time=previous.bias.last_sample_time,
            )
        else:
            bias = self._restored_bias(model)
        slot = ModelSlot(
            model=model,
            drift_feed=DriftFeed(DriftMonitor(card, window=self.settings.drift_window)),
            rows_counter=self.metrics.rows.labels(model.name),
            bias=bias,
            residual_alarm=PageHinkley.from_spread(residual_sigma(card)),
            predictions=PredictionLog(self.settings.prediction_log_size),
        )
        # The analyzer's last word (an outage alarm watches its age) outlives swaps and restarts.
        if previous is not None:
            slot.last_lab_value = previous.last_lab_value
            slot.last_lab_received = previous.last_lab_received
        elif self.store is not None and (last := self.store.latest(model.name)) is not None:
            slot.last_lab_value, slot.last_lab_received = last.value, last.received
        return slot

    def _bias_config(self, card: ModelCard) -> BiasConfig:
        s = self.settings
        return BiasConfig.from_card(
            card, gain=s.lab_gain, trust=s.lab_trust, max_age_s=s.lab_max_age_s
        )

    def _restored_bias(self, model: LoadedModel) -> BiasFilter:
        """Replay the accepted lab results stored for this name, oldest first."""
        bias = BiasFilter(self._bias_config(model.card))
        if self.store is None:
            return bias
        for r in self.store.accepted(model.name):
            if r.estimate is not None:
                bias.update(r.value, r.estimate, r.sample_time, r.sample_time)
        return bias

    def refresh(self, name: str) -> str | None:
        """Load the champion of ``name`` if it is not the one served; refuse a broken one.

        Returns the version served afterwards. A refused version is logged and counted once;
        the previous version (if any) keeps serving.
        """
        with self._reload_lock:
            try:
                champion = self.registry.champion(name)
            except RegistryError as exc:
                self._refuse(name, "?", str(exc))
                return self._served_version(name)
            current = self._served_version(name)
            if champion is None:
                if current is None:
                    log.warning("model %s: no champion in %s; not ready", name, self.registry.root)
                return current
            if champion == current or self._refused.get(name) == champion:
                return current
            try:
                loaded = load_model(self.registry, name, champion)
            except ModelLoadError as exc:
                cause = exc.__cause__
                if isinstance(cause, RegistryError) and cause.status == 404:
                    self._await_version(name, champion, current)  # retried at every pass
                else:
                    self._refuse(name, champion, exc.detail)
                return current
            self.slots[name] = self._new_slot(loaded)
            self._refused.pop(name, None)
            self._missing.pop(name, None)
            self.metrics.reloads.labels(name).inc()
            log.info("model %s: serving version %s (was %s)", name, champion, current)
            return champion

    def _served_version(self, name: str) -> str | None:
        slot = self.slots.get(name)
        return None if slot is None else slot.model.version

    def _refuse(self, name: str, version: str, reason: str) -> None:
        if self._refused.get(name) != version:
            log.error("model %s: refused version %s: %s", name, version, reason)
            self.metrics.reload_refusals.labels(name).inc()
        self._refused[name] = version

    def _await_version(self, name: str, version: str, current: str | None) -> None:
        """The pointer names a version the registry does not hold (yet): a pointer copied
        ahead of its version, or a version deleted. Unlike a broken version this one is
        retried at every watcher pass (it may still arrive); logged and counted once."""
        if self._missing.get(name) != version:
            log.error(
                "model %s: champion pointer names version %s, which is not in registry %s; "
                "%s until it appears or the pointer changes",
                name,
                version,
                self.registry.root,
                "NOT READY" if current is None else f"still serving {current}",
            )
            self.metrics.reload_refusals.labels(name).inc()
        self._missing[name] = version

    def reload(self, name: str) -> str:
        """Explicit reload: like refresh, but a refusal is an error for the caller."""
        if name not in self.served:
            raise ModelNotFoundError(f"model {name!r} is not served here")
        self._refused.pop(name, None)
        version = self.refresh(name)
        champion = self.registry.champion(name)
        if version is None or version != champion:
            raise ModelLoadError(
                f"model {name!r}: version {champion} was refused; still serving {version}"
            )
        return version

    def watch_once(self) -> None:
        """One pass of the pointer watcher: pick up new champions (and new names)."""
        if not self.settings.models:
            for name in self._registry_names():
                if name not in self.served:
                    self.served.append(name)
        for name in list(self.served):
            self.refresh(name)

    # ---- prediction ----------------------------------------------------------------------

    def _series(self, model: LoadedModel, req: PredictRequest) -> tuple[Series, Any]:
        """The request's rows as a [n, S] matrix in the model's signal order, and the
        timestamps as sent (echoed back unchanged)."""
        known = model.known_signals
        names = model.raw_signals
        if req.records is not None:
            n = len(req.records)
            self._check_rows(n)
            needed = model.raw_signal_set
            table = []
            for i, rec in enumerate(req.records):
                got = rec.values
                keys = got.keys()
                if not keys <= known or not needed <= keys:
                    unknown, missing = sorted(keys - known), sorted(needed - keys)
                    raise BadInputError(
                        f"records[{i}].values: unknown signals {shown_names(unknown)}, "
                        f"missing signals {missing} for model {model.name!r} (send null for a "
                        "value that is not available)"
                    )
                table.append([got[s] for s in names])
            try:
                values = np.array(table, dtype=np.float64)
            except TypeError:  # a null somewhere: not available, imputed later
                values = np.array(
                    [[np.nan if v is None else v for v in row] for row in table], dtype=np.float64
                )
            stamps: list[Any] = [r.timestamp for r in req.records]
        else:
            columns = req.columns or {}
            unknown, missing = sorted(columns.keys() - known), sorted(set(names) - columns.keys())
            if unknown or missing:
                raise BadInputError(
                    f"columns: unknown signals {shown_names(unknown)}, missing signals {missing} "
                    f"for model "
                    f"{model.name!r}"
                )
            n = len(columns[names[0]]) if names else 0
            self._check_rows(n)
            by_signal = np.empty((len(names), n))  # contiguous per signal, then viewed [n, S]
            for j, s in enumerate(names):
                by_signal[j] = _floats(columns[s])
            values = by_signal.T
            if isinstance(req.timestamp, np.ndarray):  # read in bulk: numbers, all finite
                return Series(self._in_order(req.timestamp), values), req.timestamp
            stamps = list(req.timestamp) if req.timestamp is not None else [None] * n
        return Series(self._times(model, stamps, n), values), stamps

    def _check_rows(self, n: int) -> None:
        if n == 0:
            raise BadInputError("no rows: send at least one record")
        if n > self.settings.max_batch_rows:
            raise PayloadTooLargeError(
                f"{n} rows exceed the limit of {self.settings.max_batch_rows} per request"
            )

    def _times(self, model: LoadedModel, stamps: list[Any], n: int) -> Floats:
        given = n - stamps.count(None)
        if given == 0:
            if n > 1 and model.history > 0:
                raise BadInputError(
                    "timestamp: required for more than one row when the model uses lags"
                )
            return np.array([time.time()] * n)
        if given != n:
            raise BadInputError("timestamp: give it for every row or for none")
        try:  # POSIX seconds throughout: one C-level conversion
            times = np.asarray(stamps, dtype=np.float64)
        except TypeError:
            times = np.array([to_posix(s) for s in stamps], dtype=np.float64)
        return self._in_order(times)

    @staticmethod
    def _in_order(times: Floats) -> Floats:
        steps = np.diff(times)
        bad = np.flatnonzero(steps <= 0)
        if bad.size:
            what = "duplicated" if steps[bad[0]] == 0 else "earlier than the row before"
            raise BadInputError(f"timestamp[{int(bad[0]) + 1}]: {what}; rows must be in time order")
        return times

    def predict(self, req: PredictRequest) -> dict[str, Any]:
        """Estimates for the request's rows, as a JSON-ready payload (records or columns,
        like the request); a problem with the request is raised."""
        answer = self.predict_many([req])[0]
        if isinstance(answer, ServiceError):
            raise answer
        return answer

    def predict_many(self, reqs: Sequence[PredictRequest]) -> list[dict[str, Any] | ServiceError]:
        """Answers for requests that arrived together, each exactly what it gets alone.

        The requests for one model are assembled and scored in one onnxruntime call: for
        one-row requests the fixed cost of a call outweighs the row. A request's mistake
        is its own answer (an error), not its neighbours'. A stream named twice is the only
        order that matters: its second request needs the first one's rows, so everything
        gathered before it is finished first.
        """
        answers: list[dict[str, Any] | ServiceError | None] = [None] * len(reqs)
        groups: dict[int, tuple[ModelSlot, list[tuple[int, _Part]]]] = {}
        streams: set[tuple[str, str]] = set()
        for i, req in enumerate(reqs):
            try:
                slot = self.slot(req.model)
                key = (slot.model.name, req.stream or "")
                if req.stream is not None and key in streams:
                    for group in groups.values():
                        self._score(*group, answers)
                    groups, streams = {}, set()
                part = self._part(slot.model, req)
            except ServiceError as exc:
                answers[i] = exc
                continue
            if req.stream is not None:
                streams.add(key)
            groups.setdefault(id(slot), (slot, []))[1].append((i, part))
        for group in groups.values():
            self._score(*group, answers)
        done = [a for a in answers if a is not None]
        if len(done) != len(reqs):
            raise RuntimeError("a predict request was left without an answer")
        return done

    def _part(self, model: LoadedModel, req: PredictRequest) -> _Part:
        batch, stamps = self._series(model, req)
        history = None
        if req.stream is not None:
            self.streams.check_order(model.name, req.stream, float(batch.times[0]))
            history = self.streams.history(model.name, req.stream)
        return _Part(req, batch, stamps, history)

    def _score(
        self,
        slot: ModelSlot,
        items: list[tuple[int, _Part]],
        answers: list[dict[str, Any] | ServiceError | None],
    ) -> None:
        """Assemble and score one model's requests together, then answer each."""
        model = slot.model
        rows = assemble_many(model, [(p.batch, p.history) for _, p in items])
        estimate = model.predict(rows.x)
        if not np.isfinite(estimate).all():  # refuse only the requests it happened to
            for (i, p), part, (a, b) in zip(items, rows.parts, rows.bounds, strict=True):
                if not np.isfinite(estimate[a:b]).all():
                    answers[i] = _non_finite(model, part, estimate[a:b], p.history)
        # Then each request as if it came alone: the frozen-sensor check in its answer sees
        # the drift state its predecessors left, no more.
        scored, imputed = 0, []
        for (i, p), part, (a, b) in zip(items, rows.parts, rows.bounds, strict=True):
            if p.req.stream is not None:  # also when refused: the samples happened, the stream
                # moves on, and an absurd value leaves its history after ``history`` samples
                self.streams.append(model.name, p.req.stream, part.filled, model.history)
            if answers[i] is not None:  # refused above
                continue
            pad = part.padded  # padded rows hold invented history: not evidence of drift
            if pad < b - a:
                slot.drift_feed.add(part.x[pad:], estimate[a + pad : b], p.batch.times[pad:])
            slot.predictions.add(p.batch.times, estimate[a:b])
            answers[i] = self._answer(slot, p, part, estimate[a:b], rows.doubtful[a:b])
            scored += b - a
            if rows.holes:
                imputed.append(part.imputed.sum(axis=0))
        slot.rows_counter.inc(scored)
        if imputed:  # a sensor or the analyzer not reporting
            for j, count in enumerate(np.sum(imputed, axis=0).tolist()):
                if count:
                    self.metrics.imputed.labels(model.name, model.raw_signals[j]).inc(count)

    def _answer(
        self,
        slot: ModelSlot,
        p: _Part,
        rows: Assembled,
        estimate: Floats,
        doubtful: NDArray[np.bool_],
    ) -> dict[str, Any]:
        """One request's JSON-ready answer: records or columns, like the request."""
        model = slot.model
        req, stamps = p.req, p.stamps
        bias = slot.bias.bias
        lo_key, hi_key = self.settings.interval_quantiles
        q = model.card.residual_quantiles
        q_low, q_high = q.get(lo_key, 0.0), q.get(hi_key, 0.0)
        frozen = slot.frozen_signals(float(p.batch.times[-1]), self.settings.frozen_after_s)
        n, padded = len(estimate), rows.padded
        flagged = list(range(padded))  # lags padded: always flagged
        if padded < n:
            flagged += (np.flatnonzero(doubtful[padded:]) + padded).tolist()
        names = model.raw_signals
        head = {
            "model": model.name,
            "model_version": model.version,
            "unit": model.card.target.unit,
            "bias": bias,
        }
        if req.columns is not None:
            corrected = estimate + bias
            slot.last_estimate = float(corrected[-1])
            flags = [_row_flags(rows, i, names, doubtful[i]) | {"row": i} for i in flagged]
            return head | {
                "timestamp": stamps if req.timestamp is not None else None,
                # Arrays, not lists: the JSON writer (orjson) renders them without making a
                # Python float per value.
                "estimate": estimate,
                "estimate_corrected": corrected,
                "interval_low": corrected + q_low,
                "interval_high": corrected + q_high,
                "frozen": frozen,
                "flags": flags,
            }
        # Records: a dictionary per row is built anyway, so the arithmetic rides along in
        # Python floats (the same IEEE additions as the array form, without its per-call cost).
        quiet = {"out_of_range": [], "frozen": frozen, "imputed": [], "missing_history": False}
        flag_of = {i: _row_flags(rows, i, names, doubtful[i]) | {"frozen": frozen} for i in flagged}
        version = model.version
        out = []
        for i, e in enumerate(estimate.tolist()):
            c = e + bias
            out.append(
                {
                    "timestamp": stamps[i],
                    "estimate": e,
                    "estimate_corrected": c,
                    "interval": (c + q_low, c + q_high),
                    "model_version": version,
                    "flags": flag_of.get(i, quiet),
                }
            )
        slot.last_estimate = out[-1]["estimate_corrected"]
        return head | {"rows": out}

    # ---- lab results -----------------------------------------------------------------------

    def add_lab_results(self, req: LabRequest) -> LabResponse:
        """Store each result durably, then (if new and matched) update the bias."""
        slot = self.slot(req.model)
        name = slot.model.name
        store = self._store()
        outcomes = []
        for result in req.results:  # a conflict refuses the whole request, before any store
            stored = store.get(name, to_posix(result.sample_time))
            if stored is not None and stored.value != result.value:
                raise ConflictError(
                    f"lab result for {name} at {from_posix(stored.sample_time).isoformat()} "
                    f"is already stored with value {stored.value}, not {result.value}"
                )
        for result in sorted(req.results, key=lambda r: to_posix(r.sample_time)):
            t = to_posix(result.sample_time)
            now = time.time()
            with slot.lab_lock:
                known = store.get(name, t)
                if known is not None:
                    if known.value != result.value:
                        raise ConflictError(
                            f"lab result for {name} at {from_posix(t).isoformat()} is already "
                            f"stored with value {known.value}, not {result.value}"
                        )
                    self.metrics.lab_results.labels(name, "duplicate").inc()
                    outcomes.append(
                        LabOutcome(
                            sample_time=from_posix(t),
                            stored=False,
                            accepted=known.accepted,
                            reason=known.reason,
                            estimate=known.estimate,
                            residual=known.residual,
                            bias=slot.bias.bias,
                        )
                    )
                    continue
                estimate = slot.predictions.find(t, self.settings.lab_match_tolerance_s)
                reason: str | None
                residual: float | None
                if estimate is None:
                    accepted, reason, residual = False, "no estimate near this sample time", None
                else:
                    decision = slot.bias.preview(result.value, estimate, t, now)
                    accepted, reason, residual = (
                        decision.accepted,
                        decision.reason,
                        decision.residual,
                    )
                store.add(name, t, result.value, now, estimate, residual, accepted, reason)
                if accepted and estimate is not None:
                    slot.bias.update(result.value, estimate, t, now)
                slot.last_lab_value = result.value
                slot.last_lab_received = now
                if residual is not None:
                    slot.last_residual = residual
                    if accepted:
                        slot.residual_alarm.update(residual)
                outcome = (
                    "accepted" if accepted else ("unmatched" if estimate is None else "rejected")
                )
                self.metrics.lab_results.labels(name, outcome).inc()
                outcomes.append(
                    LabOutcome(
                        sample_time=from_posix(t),
                        stored=True,
                        accepted=accepted,
                        reason=reason,
                        estimate=estimate,
                        residual=residual,
                        bias=slot.bias.bias,
                    )
                )
        return LabResponse(model=name, outcomes=outcomes)

    def list_lab_results(
        self, model: str | None, since: float | None, limit: int
    ) -> list[StoredLab]:
        name = model or self.default_name()
        if name not in self.served:
            raise ModelNotFoundError(f"model {name!r} is not served here")
        return [
            StoredLab(
                model=r.model,
                sample_time=from_posix(r.sample_time),
                value=r.value,
                received=from_posix(r.received),
                estimate=r.estimate,
                residual=r.residual,
                accepted=r.accepted,
                reason=r.reason,
            )
            for r in self._store().list(name, since, limit)
        ]

    def _store(self) -> LabStore:
        if self.store is None:
            raise NotReadyError("the lab-result store is not open yet")
        return self.store
