"""The data plane: everything the HTTP layer calls, composed from one part per responsibility.

Routes parse and call; this module wires the parts (MLServer's layering): the served models
(``service.scoring.slots``), the live state per (model, stream) (``service.state.streams``), the
predict path (``service.scoring.scorer``), lab results (``service.lab.labs``) and the durable
store (``service.lab.store``). It owns their lifecycle and the one place where a stream's state
is made: fresh, or rebuilt from the store, and moved to the served model version.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Sequence
from typing import Any

from service.api.schemas import LabRequest, LabResponse, PredictRequest, StoredLab
from service.contracts.errors import NotReadyError, ServiceError
from service.contracts.registry import Registry
from service.lab.bias import BiasFilter, replay
from service.lab.errors import StoreUnavailableError
from service.lab.groupcommit import GroupCommit
from service.lab.labs import LabDesk
from service.lab.statestore import SavedState, StateStore, open_store
from service.monitoring.alarms import ResidualAlarm
from service.monitoring.metrics import ServiceMetrics
from service.parts import Parts
from service.plant.tagmaps import TagMaps, load_tag_maps
from service.scoring.batcher import Batchers
from service.scoring.scorer import Scorer
from service.scoring.slots import ModelSlot, ModelSlots
from service.settings import Settings
from service.state.streams import StreamState, StreamStore, new_monitors, rebind

logger = logging.getLogger("softsensor")


class SoftSensorService:
    """Built by the app factory, started in its lifespan."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models = ModelSlots(settings, metrics)
        self.store: StateStore | None = None
        self.streams = StreamStore(settings.max_streams)
        # Read before anything starts: a bad file stops the start, naming file and key.
        self.tag_maps: TagMaps = load_tag_maps(settings.tag_maps)
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        parts = Parts(
            settings, self.models, self.stream, self._store, metrics, self.sync_labs, self._replay
        )
        self.scorer = Scorer(parts)
        self.labs = LabDesk(parts)
        self.log_writer: GroupCommit | None = None
        self.batchers = Batchers(
            self.scorer.score_many,
            self._commit,
            self._model_of,
            settings.coalesce_requests,
            settings.coalesce_rows,
            metrics.batch_requests,
        )
        metrics.watch(
            lambda: list(self.streams),
            lambda: [s.model for s in self.models.slots.values()],
            lambda: list(self.models.served),
        )

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the store and load every served model's champion; failures leave not-ready."""
        s = self.settings
        self.store = open_store(
            s.store_url, pool_size=s.state_pool_size, timeout_s=s.state_timeout_s
        )
        log = self.scorer.log
        self.log_writer = GroupCommit(
            log.write, "prediction-log", write_now=log.write_now, after=log.checkpoint
        )
        self.models.start()
        # Streams with lab results come back at once: their bias, alarms and analyzer age
        # are on /metrics after a restart, not only once they send again.
        for slot in list(self.models.slots.values()):
            for name in self.store.streams(slot.model.name)[: self.settings.max_streams]:
                self.stream(slot, name)
        if self.store.shared:
            self._refresher = threading.Thread(
                target=self._refresh_forever, args=(self._stop,), name="lab-refresh", daemon=True
            )
            self._refresher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=10)
            self._refresher = None
        if self.log_writer is not None:
            self.log_writer.close()
            self.log_writer = None
        if self.store is not None:
            self.store.close()

    def labs_store(self) -> StateStore:
        """The open store (503 before it is)."""
        return self._store()

    def _store(self) -> StateStore:
        if self.store is None:
            raise NotReadyError("the lab-result store is not open yet")
        return self.store

    # ---- models ------------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        return self.models.registry

    @property
    def served(self) -> list[str]:
        return self.models.served

    @property
    def slots(self) -> dict[str, ModelSlot]:
        return self.models.slots

    @property
    def ready(self) -> bool:
        return self.models.ready

    def slot(self, name: str | None) -> ModelSlot:
        return self.models.slot(name)

    def default_name(self) -> str:
        return self.models.default_name()

    def _commit(self, log: list[Any]) -> Awaitable[None] | None:
        """The scored predictions made durable before their answers go out: None once they
        are (the loop wrote them itself), else what to await (the writer thread's commit)."""
        if not log:
            return None
        if self.log_writer is None:
            raise NotReadyError("the lab-result store is not open yet")
        try:
            pending = self.log_writer.write(log)
        except StoreUnavailableError as exc:
            self._unlogged(log, exc)
            return None
        return None if pending is None else self._committed(pending, log)

    async def _committed(self, pending: concurrent.futures.Future[None], log: list[Any]) -> None:
        try:
            await asyncio.wrap_future(pending)
        except StoreUnavailableError as exc:
            self._unlogged(log, exc)

    def _unlogged(self, log: list[Any], exc: StoreUnavailableError) -> None:
        """Requests that need no state are answered while the database is away; a lab
        result for one of their rows will find no estimate (stored as unmatched). Any
        other request's answer is the store's error: ``exc`` is raised again."""
        if not self._stateless(log):
            raise exc
        rows = sum(len(row[2]) for row in log if not isinstance(row, SavedState))
        self.metrics.unlogged.inc(rows)
        logger.warning("prediction log unavailable, %d stateless rows unlogged: %s", rows, exc)

    def _stateless(self, log: list[Any]) -> bool:
        """Whether every row of ``log`` is of a request that named no stream."""
        default = self.settings.default_stream
        return all(not isinstance(row, SavedState) and row[1] == default for row in log)

    def _model_of(self, req: PredictRequest) -> str:
        """The model a request is for, to pick its batcher; a name not served (or none at
        all) still gets a batcher, and the scorer answers it with its error."""
        if req.model is not None:
            return req.model
        try:
            return self.models.default_name()
        except ServiceError:
            return ""

    def refresh(self, name: str) -> str | None:
        return self.models.refresh(name)

    def reload(self, name: str) -> str:
        return self.models.reload(name)

    def watch_once(self) -> None:
        self.models.watch_once()

    # ---- streams -----------------------------------------------------------------------

    def stream(self, slot: ModelSlot, name: str) -> StreamState:
        """The state of stream ``name`` of the slot's model, on the slot's version."""
        state = self.streams.get(slot.model.name, name, lambda: self._new_stream(slot, name))
        if state.monitors.version != slot.model.version:
            monitors = new_monitors(
                slot.model, self.settings.frozen_after_s, self.settings.drift_window
            )
            rebind(state, slot.model, slot.bias_config, monitors)
        return state

    def _new_stream(self, slot: ModelSlot, name: str) -> StreamState:
        """A stream first seen (or seen again): its lab history replayed from the store."""
        model = slot.model
        monitors = new_monitors(model, self.settings.frozen_after_s, self.settings.drift_window)
        state = StreamState(model.name, name, BiasFilter(slot.bias_config), monitors)
        if self.store is None:
            return state
        self._replay(slot, state)
        last = self.store.predictions.latest(model.name, name)
        if last is not None:
            state.advance(last)
        return state

    def _replay(self, slot: ModelSlot, state: StreamState) -> None:
        """The stream's bias and analyzer age rebuilt from its stored lab results, oldest
        first: the same accepted results through the same filter give the same bias on
        every replica."""
        assert self.store is not None
        # The count first: a change stored between the two reads makes the count older than
        # the history, so the next refresh replays again (never the reverse).
        count = self.store.lab_counts(slot.model.name).get(state.stream, 0)
        history = self.store.history(slot.model.name, state.stream)
        with state.lock:  # the bias path, so the residual alarm sees each result's bias
            state.bias, state.residual = BiasFilter(slot.bias_config), ResidualAlarm()
            state.last_lab_sample = state.last_lab_value = state.last_residual = None
            replay(state.bias, history, state.take_lab)
            state.lab_count = count

    def sync_labs(self, slot: ModelSlot, states: Sequence[StreamState] | None = None) -> None:
        """With shared state: streams whose stored lab results changed (another replica
        stored some) get their bias replayed. ``states``: these only, else every stream of
        the slot's model held here."""
        store = self.store
        if store is None or not store.shared:
            return
        counts = store.lab_counts(slot.model.name)
        if states is None:
            states = [s for s in self.streams if s.model == slot.model.name]
        for state in states:
            if counts.get(state.stream, 0) != state.lab_count:
                self._replay(slot, state)

    def _refresh_forever(self, stop: threading.Event) -> None:
        """Every ``state_refresh_s``, the biases other replicas moved (the stated delay)."""
        while not stop.wait(self.settings.state_refresh_s):
            for slot in list(self.models.slots.values()):
                try:
                    with slot.lab_lock:
                        self.sync_labs(slot)
                except Exception as exc:  # the database away: the next round tries again
                    logger.warning("refreshing lab results of %s failed: %s", slot.model.name, exc)

    # ---- requests ----------------------------------------------------------------------

    def predict(self, req: PredictRequest) -> dict[str, Any]:
        """Estimates for the request's rows, as a JSON-ready payload; a problem is raised."""
        answer = self.scorer.predict_many([req])[0]
        if isinstance(answer, ServiceError):
            raise answer
        return answer

    def predict_many(self, reqs: Sequence[PredictRequest]) -> list[dict[str, Any] | ServiceError]:
        return self.scorer.predict_many(reqs)

    def add_lab_results(self, req: LabRequest) -> LabResponse:
        return self.labs.add(req)

    def list_lab_results(
        self, model: str | None, since: float | None, limit: int, stream: str | None = None
    ) -> list[StoredLab]:
        return self.labs.list(model, stream, since, limit)
