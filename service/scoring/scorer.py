"""Scoring predict requests: rows assembled, scored, checked and judged, state moved on.

Requests that arrive together (``service.scoring.batcher``) are scored together: per model one
lag assembly, one validity assessment and one onnxruntime call, then each request is
finished as if it came alone: its stream's trackers, its rows' status, its answer. The
prediction log of the whole batch is written in one transaction before anyone is answered,
so a lab result for any answered row can be matched after a kill -9.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.api.schemas import PredictRequest
from service.contracts.arrays import FloatArray, all_finite
from service.contracts.errors import BadInputError, ModelFaultError, ServiceError
from service.lab.errors import StateUnavailableError, StoreUnavailableError
from service.monitoring.changes import ChangeTracker
from service.parts import Parts
from service.scoring.answers import Scored, columns_answer, records_answer
from service.scoring.drifting import Drifting, move_drift_detectors
from service.scoring.numbers import served_numbers
from service.scoring.parsing import read_series, row_field
from service.scoring.predictions import LogRows, PredictionWriter
from service.scoring.qualities import Qualities
from service.scoring.rows import Assembled, Series, assemble_many
from service.scoring.runtime import LoadedModel
from service.scoring.slots import ModelSlot
from service.scoring.status import (
    BAD,
    GOOD,
    STATUS_NAMES,
    UNCERTAIN,
    RowEvidence,
    SignalEvidence,
    Statuses,
    bad_outside_limit,
    decide,
    one_row,
)
from service.scoring.validity import Assessment
from service.state.snapshot import catch_up, saved
from service.state.streams import StreamState

Answer = dict[str, Any] | ServiceError
ROW_REASONS = ("missing_history", "bias_stale", "clamped")  # per-row evidence, in rules order
# per scored request its predictions; with shared state, per stateful stream its state


def _non_finite(
    model: LoadedModel, rows: Assembled, estimate: FloatArray, history: Series | None
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
    state: StreamState
    stateful: bool  # named its stream: lag history and trackers are the stream's
    batch: Series
    stamps: Any  # as sent, echoed back
    history: Series | None
    quality: Qualities  # [n, S] of the values sent; None: all good


def _names(names: Sequence[str], flags: NDArray[np.bool_]) -> list[str]:
    return [n for n, hit in zip(names, flags.tolist(), strict=True) if hit]


def _run_length(flags: NDArray[np.bool_], before: int) -> int:
    """Consecutive True values at the end of ``flags``, continuing a run of ``before``."""
    if len(flags) == 1:  # a poll's row
        return before + 1 if flags[0] else 0
    if flags.all():
        return before + len(flags)
    return int(len(flags) - 1 - np.flatnonzero(~flags)[-1])


class Scorer:
    """The predict path of the service."""

    def __init__(self, parts: Parts) -> None:
        self.settings = parts.settings
        self.slots = parts.slots
        self._stream = parts.stream
        self._store = parts.store
        self.metrics = parts.metrics
        self.rules = parts.rules
        self.log = PredictionWriter(parts.store, parts.settings.prediction_retention_s)
        self._statuses: dict[str, list[Any]] = {}  # model -> Prometheus child per status

    def _status_counters(self, model: str) -> list[Any]:
        children = self._statuses.get(model)
        if children is None:
            children = [self.metrics.statuses.labels(model, s) for s in STATUS_NAMES]
            self._statuses[model] = children
        return children

    def predict_many(self, reqs: Sequence[PredictRequest]) -> list[Answer]:
        """:meth:`score_many`, with the predictions logged durably before it returns."""
        answers, log = self.score_many(reqs)
        self.log.write(log)
        return answers

    def score_many(self, reqs: Sequence[PredictRequest]) -> tuple[list[Answer], LogRows]:
        """Answers for requests that arrived together, each exactly what it gets alone, and
        the predictions to log before any of them is sent.

        A request's mistake is its own answer (an error), not its neighbours'. A stream
        named twice is the only order that matters: its second request needs the first
        one's rows, so everything gathered before it is finished first.
        """
        log: LogRows = []
        answers: list[Answer | None] = [None] * len(reqs)
        groups: dict[int, tuple[ModelSlot, list[tuple[int, _Part]]]] = {}
        streams: set[tuple[str, str]] = set()
        for i, req in enumerate(reqs):
            try:
                slot = self.slots.slot(req.model)
                key = (slot.model.name, req.stream or "")
                if req.stream is not None and key in streams:
                    self._score_all(groups, answers, log)
                    groups, streams = {}, set()
                part = self._part(slot, req)
            except ServiceError as exc:
                answers[i] = exc
                continue
            if isinstance(part, dict):  # every row seen before, and the request skips them
                answers[i] = part
                continue
            if req.stream is not None:
                streams.add(key)
            groups.setdefault(id(slot), (slot, []))[1].append((i, part))
        self._score_all(groups, answers, log)
        done = [a for a in answers if a is not None]
        if len(done) != len(reqs):
            raise RuntimeError("a predict request was left without an answer")
        return done, log

    def _part(self, slot: ModelSlot, req: PredictRequest) -> _Part | dict[str, Any]:
        """The request read and checked, or, when it skips rows its stream has seen and
        none is left, its answer: no rows."""
        model = slot.model
        batch, (stamps, quality) = read_series(model, req, self.settings.max_batch_rows)
        stateful = req.stream is not None
        try:  # a stream first seen here, or moved on by another replica, reads the store
            state = self._stream(slot, req.stream or self.settings.default_stream)
            if stateful and self._store().shared:
                catch_up(self._store().predictions, state)
        except StoreUnavailableError as exc:  # this request's answer, not its batch's
            raise StateUnavailableError(exc.reason) from exc
        clock = state.clock if stateful else -np.inf
        if stateful and req.overlap == "skip" and not batch.times[0] > clock:
            new = int(np.searchsorted(batch.times, clock, side="right"))  # times in order
            if new == len(batch.times):
                bias = state.bias.bias
                return self._answer(model, state, req, stamps[:0], bias, _no_rows(), [])
            batch = Series(batch.times[new:], batch.values[new:])
            stamps = stamps[new:]
            quality = None if quality is None else quality[new:]
        self.rules.check_rows(batch.times, clock, time.time(), row_field(req))
        history = None
        if stateful:
            state.check_order(float(batch.times[0]))
            history = state.lags_for(float(batch.times[0]), model.gap_s)
        return _Part(req, state, stateful, batch, stamps, history, quality)

    def _score_all(
        self,
        groups: dict[int, tuple[ModelSlot, list[tuple[int, _Part]]]],
        answers: list[Answer | None],
        log: LogRows,
    ) -> None:
        for slot, items in groups.values():
            self._score(slot, items, answers, log)

    def _score(
        self,
        slot: ModelSlot,
        items: list[tuple[int, _Part]],
        answers: list[Answer | None],
        log: LogRows,
    ) -> None:
        """Assemble, assess and score one model's requests together, then finish each."""
        model = slot.model
        rows = assemble_many(model, [(p.batch, p.history) for _, p in items])
        validity = slot.validity
        drifts = any(p.stateful and p.state.monitors.sensor_drift for _, p in items)
        assessment = validity.assess(rows.x, drifts) if validity is not None else None
        clamp = validity is not None and self.settings.clamp_inputs
        estimate = model.predict(validity.clamp(rows.x) if clamp and validity else rows.x)
        if not all_finite(estimate):  # refuse only the requests it happened to
            for (i, p), part, (a, b) in zip(items, rows.parts, rows.bounds, strict=True):
                if not np.isfinite(estimate[a:b]).all():
                    answers[i] = _non_finite(model, part, estimate[a:b], p.history)
        quiet = ~rows.doubtful  # rows no batch-wide evidence flags: most of them, usually
        if assessment is not None and validity is not None:
            quiet &= (assessment.t2 <= validity.t2_limit) & (assessment.spe <= validity.spe_limit)
            quiet &= ~assessment.outside.any(axis=1)
        scored, imputed = 0, []
        counts = [0, 0, 0]  # rows by status, counted once per batch
        for (i, p), part, (a, b) in zip(items, rows.parts, rows.bounds, strict=True):
            if p.stateful:  # also when refused: the samples happened, the stream moves on,
                with p.state.lock:  # and an absurd value leaves its lags after ``history``
                    p.state.remember(part.filled, model.history, model.gap_s)
            if answers[i] is not None:  # refused above
                continue
            assessed = assessment if len(items) == 1 else _slice(assessment, a, b)
            calm = bool(quiet[a:b].all()) and p.quality is None
            answers[i] = self._finish(slot, p, part, estimate[a:b], assessed, calm, counts)
            log.append((model.name, p.state.stream, p.batch.times, estimate[a:b]))
            scored += b - a
            if rows.holes:
                imputed.append(part.imputed.sum(axis=0))
        if self._store().shared:  # the next request may land on another replica
            states = {id(p.state): p.state for _, p in items if p.stateful}
            log.extend(saved(state) for state in states.values())
        slot.rows_counter.inc(scored)
        for code, count in enumerate(counts):
            if count:
                self._status_counters(model.name)[code].inc(count)
        if imputed:  # a sensor or the analyzer not reporting
            for j, count in enumerate(np.sum(imputed, axis=0).tolist()):
                if count:
                    self.metrics.imputed.labels(model.name, model.raw_signals[j]).inc(count)

    def _track(
        self, slot: ModelSlot, p: _Part, part: Assembled, estimate: FloatArray, a: Assessment | None
    ) -> tuple[NDArray[np.bool_], Drifting | None]:
        """Move the stream's trackers on by the request's rows; per row, which signals are
        frozen and which sensors drift (None without a drift detector)."""
        state, model = p.state, slot.model
        m = state.monitors
        times = p.batch.times
        drifting = None
        with state.lock:
            if p.stateful:
                unchanged = m.changes.observe(part.filled.values, times)
            elif times[-1] - times[0] > m.config.shortest_frozen_s:
                # no stream: judged within the request's own window
                unchanged = ChangeTracker(len(model.raw_signals)).observe(part.filled.values, times)
            else:  # a window shorter than any frozen limit cannot show a frozen sensor
                unchanged = None
            if not p.stateful:
                state.advance(float(times[-1]))
            if unchanged is None:
                frozen = np.zeros(part.filled.values.shape, dtype=bool)
            else:
                with np.errstate(invalid="ignore"):  # a value not sent is imputed, not frozen
                    frozen = (unchanged > m.config.frozen_after_s) & ~part.imputed
            if p.stateful:
                m.frozen = _names(model.raw_signals, frozen[-1])
                drifting = move_drift_detectors(slot, m, part, a)
                if drifting is not None:
                    m.drifting = _names(drifting[0], drifting[1][-1])
                if a is not None:
                    m.outside_run = _run_length(np.any(a.outside, axis=1), m.outside_run)
            real = part.with_history(estimate)  # invented history is not evidence of drift
            if real is not None:
                m.drift.add(*real)
        return frozen, drifting

    def _finish(
        self,
        slot: ModelSlot,
        p: _Part,
        part: Assembled,
        estimate: FloatArray,
        a: Assessment | None,
        quiet: bool,
        counts: list[int],
    ) -> dict[str, Any]:
        """One request's trackers, statuses and JSON-ready answer. ``quiet``: no row has
        evidence from the batch-wide checks (valid range, imputation, T2, SPE, training
        range), so only the request's own evidence can make a row other than good."""
        model, state = slot.model, p.state
        frozen, drifting = self._track(slot, p, part, estimate, a)
        bias = state.bias.bias
        scored = served_numbers(
            slot.model.card, slot.interval, estimate, bias, self.settings.interval_quantiles
        )
        stale = state.analyzer_silent()
        n = len(estimate)
        signals_quiet = quiet and not frozen.any() and (drifting is None or not drifting[1].any())
        fresh = part.padded == 0 and part.after_gap is None  # every row's lags are real
        if signals_quiet and fresh and not stale and not scored[4].any():
            statuses = one_row([]) if n == 1 else Statuses(np.zeros(n, dtype=np.uint8), {})
        elif signals_quiet and n == 1:  # a poll with only its own row evidence, in Python
            hits = (part.padded > 0, stale, bool(scored[4][0]))
            statuses = one_row([r for r, hit in zip(ROW_REASONS, hits, strict=True) if hit])
        elif signals_quiet:  # only the request's own row evidence: no per-signal evidence
            statuses = decide(n, [], self._row_evidence(n, part, stale, scored[4]))
        else:
            evidence = (frozen, drifting, p.quality)
            statuses = self._statuses_of(slot, part, n, evidence, a, stale, scored[4])
        if not statuses.reasons:
            counts[GOOD] += n
        elif n == 1:
            counts[int(statuses.codes[0])] += 1
        else:
            for code, count in enumerate(np.bincount(statuses.codes, minlength=3).tolist()):
                counts[code] += count
        numbers = Scored(
            *scored[:4], statuses, None if a is None else a.t2, None if a is None else a.spe
        )
        state.last_estimate = float(numbers.corrected[-1])
        return self._answer(model, state, p.req, p.stamps, bias, numbers, state.monitors.frozen)

    @staticmethod
    def _answer(
        model: LoadedModel,
        state: StreamState,
        req: PredictRequest,
        stamps: Any,
        bias: float,
        numbers: Scored,
        frozen: list[str],
    ) -> dict[str, Any]:
        """The JSON-ready answer in the request's own layout: the timestamps as sent, the
        bias the numbers were corrected with, the stream's frozen signals."""
        head = {
            "model": model.name,
            "model_version": model.version,
            "unit": model.card.target.unit,
            "stream": state.stream,
            "bias": bias,
            "alarms": state.alarms(),
        }
        if req.columns is not None:
            shown = stamps if req.timestamp is not None else None
            return columns_answer(head, shown, frozen, numbers)
        return records_answer(head, stamps, model.version, numbers)

    def _statuses_of(
        self,
        slot: ModelSlot,
        part: Assembled,
        n: int,
        evidence: tuple[NDArray[np.bool_], Drifting | None, Qualities],
        a: Assessment | None,
        stale: bool,
        clamped: NDArray[np.bool_],
    ) -> Statuses:
        """Every piece of a request's evidence through the rules (``service.scoring.status``)."""
        names = slot.model.raw_signals
        frozen, drifting, quality = evidence
        per_signal = [
            SignalEvidence("out_of_range", names, part.out_of_range, BAD),
            SignalEvidence("imputed", names, part.imputed),
            SignalEvidence("frozen", names, frozen),
        ]
        if quality is not None:  # the historian's word on its own values
            per_signal += [
                SignalEvidence(
                    "quality_bad", names, quality == BAD, bad_above=bad_outside_limit(len(names))
                ),
                SignalEvidence("quality_uncertain", names, quality == UNCERTAIN),
            ]
        per_row = self._row_evidence(n, part, stale, clamped)
        validity = slot.validity
        if a is not None and validity is not None:
            per_signal.append(
                SignalEvidence(
                    "outside_training", validity.groups, a.outside, bad_above=slot.outside_limit
                )
            )
        if drifting is not None:
            per_signal.append(SignalEvidence("drift", *drifting))
        if a is not None and validity is not None:
            per_row[2:2] = [  # the order of the reasons: as the rules table lists them
                RowEvidence("t2", a.t2 > validity.t2_limit),
                RowEvidence("spe", a.spe > validity.spe_limit),
            ]
        return decide(n, per_signal, per_row)

    @staticmethod
    def _row_evidence(
        n: int, part: Assembled, stale: bool, clamped: NDArray[np.bool_]
    ) -> list[RowEvidence]:
        flags = (part.missing_history, np.full(n, stale), clamped)
        return [RowEvidence(r, f) for r, f in zip(ROW_REASONS, flags, strict=True)]


def _no_rows() -> Scored:
    empty = np.zeros(0)
    return Scored(empty, empty, empty, empty, Statuses(np.zeros(0, dtype=np.uint8), {}), None, None)


def _slice(a: Assessment | None, start: int, stop: int) -> Assessment | None:
    if a is None:
        return None
    residual = None if a.residual is None else a.residual[start:stop]
    return Assessment(a.outside[start:stop], a.t2[start:stop], a.spe[start:stop], residual)
