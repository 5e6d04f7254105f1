"""Lab and analyzer results: matched per stream, stored whole or not at all, then applied.

A result names its stream (or is the model's default stream's) and is compared only with
the estimate that stream was given for its sample time (the prediction log, on disk). Its
sample time is judged on the stream's data clock: late when the stream has moved on by more
than ``lab_max_age_s``, refused (422) when it lies after the stream's latest data. The
request's results are decided in time order on copies of their streams' bias filters,
stored in one durable transaction, and only then applied to the live state: a request that
fails or is killed midway changes nothing, and a retry is answered as before.
"""

from __future__ import annotations

import builtins
import math
import time
from dataclasses import dataclass

from service.api.admin_schemas import VoidRequest, VoidResponse
from service.api.schemas import LabOutcome, LabRequest, LabResponse, LabResult, StoredLab
from service.contracts.errors import BadInputError, ConflictError, ModelNotFoundError
from service.lab.bias import BiasFilter
from service.lab.records import LabRecord
from service.parts import Parts
from service.scoring.slots import ModelSlot
from service.state.clock import TimeRules, from_posix, to_posix
from service.state.streams import StreamState

NO_ESTIMATE = "no estimate near this sample time"


@dataclass
class _Item:
    index: int
    result: LabResult
    state: StreamState
    sample_time: float
    result_time: float | None = None


@dataclass
class _Decided:
    item: _Item
    record: LabRecord | None  # None: a retry of a stored result
    bias: float  # the stream's bias after this result
    known: LabRecord | None = None


class LabDesk:
    """``POST`` and ``GET /v1/lab-results``."""

    def __init__(self, parts: Parts) -> None:
        self.settings = parts.settings
        self.slots = parts.slots
        self._stream = parts.stream
        self._store = parts.store
        self._sync = parts.sync
        self.metrics = parts.metrics
        self.rules = parts.rules
        self._replay = parts.replay

    def add(self, req: LabRequest) -> LabResponse:
        """Check, decide, store durably (one transaction), then update biases and alarms."""
        slot = self.slots.slot(req.model)
        now = time.time()
        items = []
        window = self._delay_window(slot)
        for i, result in enumerate(req.results):
            stream = result.stream or req.stream or self.settings.default_stream
            state = self._stream(slot, stream)
            t = to_posix(result.sample_time)
            self.rules.check_lab(t, state.clock, now, f"results[{i}].sample_time")
            known = None if result.result_time is None else to_posix(result.result_time)
            if known is not None:
                check_delay(t, known, now, window, f"results[{i}].result_time", self.rules)
            items.append(_Item(i, result, state, t, known))
        items.sort(key=lambda item: item.sample_time)
        states = list({id(item.state): item.state for item in items}.values())
        streams = [state.stream for state in states]
        # Other processes sharing the store decide on these streams only after this one:
        # each result is decided on the bias of every result stored before it.
        with slot.lab_lock, self._store().serialized(slot.model.name, streams):
            self._sync(slot, states)
            decided, filters = self._decide(slot, items, now)
            records = [d.record for d in decided if d.record is not None]
            self._store().add_many(records)  # durable before anything changes or is said
            for state, bias in filters.items():
                state.bias = bias
            for d in decided:
                if d.record is not None:
                    d.item.state.take_lab(d.record)
                    d.item.state.lab_count += 1
        outcomes = [self._outcome(slot, d) for d in decided]  # in sample-time order
        return LabResponse(model=slot.model.name, outcomes=outcomes)

    def _decide(
        self, slot: ModelSlot, items: list[_Item], now: float
    ) -> tuple[list[_Decided], dict[StreamState, BiasFilter]]:
        """Each result's record (or its stored twin), deciding on copies of the filters."""
        name, store = slot.model.name, self._store()
        filters: dict[StreamState, BiasFilter] = {}
        decided = []
        for item in items:
            result, state = item.result, item.state
            known = store.get(name, item.sample_time, state.stream)
            if known is not None:
                if known.value != result.value:
                    raise ConflictError(
                        f"lab result for {name} stream {state.stream!r} at "
                        f"{from_posix(item.sample_time).isoformat()} is already stored with "
                        f"value {known.value}, not {result.value}"
                    )
                current = filters.get(state, state.bias).bias
                decided.append(_Decided(item, None, current, known))
                continue
            bias = filters.get(state)
            if bias is None:
                live = state.bias
                bias = BiasFilter(
                    live.config, bias=live.bias, last_sample_time=live.last_sample_time
                )
                filters[state] = bias
            estimate = store.predictions.find(
                name, item.sample_time, self.settings.lab_match_tolerance_s, state.stream
            )
            accepted, residual = False, None
            reason: str | None = NO_ESTIMATE
            if estimate is not None:
                clock = state.clock if math.isfinite(state.clock) else now
                decision = bias.update(result.value, estimate, item.sample_time, clock)
                accepted, reason, residual = decision.accepted, decision.reason, decision.residual
            record = LabRecord(
                name,
                item.sample_time,
                result.value,
                now,
                estimate,
                residual,
                accepted,
                reason,
                state.stream,
                item.result_time,
            )
            decided.append(_Decided(item, record, bias.bias))
        return decided, filters

    def _outcome(self, slot: ModelSlot, d: _Decided) -> LabOutcome:
        state = d.item.state
        r = d.record or d.known
        assert r is not None
        if d.record is None:
            kind = "duplicate"
        else:
            kind = "accepted" if r.accepted else ("unmatched" if r.estimate is None else "rejected")
        self.metrics.lab_results.labels(slot.model.name, kind).inc()
        return LabOutcome(
            stream=state.stream,
            sample_time=from_posix(d.item.sample_time),
            stored=d.record is not None,
            accepted=r.accepted,
            reason=r.reason,
            estimate=r.estimate,
            residual=r.residual,
            bias=d.bias,
        )

    def list(
        self, model: str | None, stream: str | None, since: float | None, limit: int
    ) -> list[StoredLab]:
        return [
            StoredLab(
                model=r.model,
                stream=r.stream,
                sample_time=from_posix(r.sample_time),
                value=r.value,
                received=from_posix(r.received),
                estimate=r.estimate,
                residual=r.residual,
                accepted=r.accepted,
                reason=r.reason,
                result_time=None if r.result_time is None else from_posix(r.result_time),
            )
            for r in self.records(model, stream, since, limit)
        ]

    def records(
        self, model: str | None, stream: str | None, since: float | None, limit: int
    ) -> builtins.list[LabRecord]:
        """The stored results of a served model (newest first), as the store keeps them."""
        name = model or self.slots.default_name()
        if name not in self.slots.served:
            raise ModelNotFoundError(None, f"model {name!r} is not served here")
        return self._store().list(name, since, limit, stream)

    def _delay_window(self, slot: ModelSlot) -> DelayWindow:
        """The analyzer's declared delay window (the card's), else the service's."""
        declared = slot.model.card.target.lab_delay
        if declared is not None:
            return DelayWindow(declared.min_s, declared.max_s, "the model card's target lab_delay")
        s = self.settings
        return DelayWindow(
            s.lab_min_delay_s,
            s.lab_max_delay_s,
            "SOFTSENSOR_LAB_MIN_DELAY_S..SOFTSENSOR_LAB_MAX_DELAY_S",
        )

    def void(self, req: VoidRequest, actor: str) -> VoidResponse:
        """Void a stored result (durably, with who and why), then replay its stream's bias
        from the results that remain: what a service that never had it would hold."""
        slot = self.slots.slot(req.model)
        state = self._stream(slot, req.stream or self.settings.default_stream)
        name, store = slot.model.name, self._store()
        with slot.lab_lock, store.serialized(name, [state.stream]):
            voided = store.void(
                name,
                state.stream,
                to_posix(req.sample_time),
                by=actor,
                reason=req.reason,
                at=time.time(),
            )
            self._replay(slot, state)
        self.metrics.lab_results.labels(name, "voided").inc()
        r = voided.record
        return VoidResponse(
            model=name,
            stream=r.stream,
            sample_time=from_posix(r.sample_time),
            value=r.value,
            voided_by=voided.voided_by,
            voided_at=from_posix(voided.voided_at),
            reason=voided.reason,
            bias=state.bias.bias,
        )


@dataclass(frozen=True)
class DelayWindow:
    """How long after its sample a result may be known, and who said so (for the message)."""

    min_s: float
    max_s: float
    source: str


def check_delay(
    sample_time: float,
    result_time: float,
    now: float,
    window: DelayWindow,
    field: str,
    rules: TimeRules,
) -> None:
    """Refuse a result known before its sample, sooner or later than the analyzer can deliver
    it, or in the future: each is a wrong time, and nothing of the request is stored."""
    delay = result_time - sample_time
    if delay < 0:
        raise BadInputError(
            f"{field}: {from_posix(result_time).isoformat()} lies {-delay:.0f} s before the "
            f"sample time {from_posix(sample_time).isoformat()}: a result cannot be known "
            "before its sample is drawn"
        )
    if result_time - now > rules.lab_max_future_s:
        raise BadInputError(
            f"{field}: {from_posix(result_time).isoformat()} lies {result_time - now:.0f} s in "
            f"the future of the service's clock (limit {rules.lab_max_future_s:g} s)"
        )
    for too, limit, ok in (
        ("sooner", window.min_s, delay >= window.min_s),
        ("later", window.max_s, delay <= window.max_s),
    ):
        if not ok:
            raise BadInputError(
                f"{field}: known {delay:.0f} s after its sample, {too} than the analyzer's "
                f"{'minimum' if too == 'sooner' else 'maximum'} delay of {limit:g} s "
                f"({window.source}): a wrong sample time or result time"
            )
