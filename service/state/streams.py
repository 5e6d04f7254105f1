"""Live state per (model, stream): a stream is one unit (a column) feeding a model.

Everything the service learns from a stream belongs to it alone: its lag history (so one row
per request gets lagged features), its data clock, when each of its sensors last changed,
its drift statistics, its bias and residual test, its analyzer's last word. Two units on
one model never see each other's state; a request without a stream is the model's default
stream (which keeps no lag history: such requests send their window).

The store keeps what must outlive the process (lab results, the prediction log); a stream's
state is rebuilt from it when the stream is first seen again (after a restart, or after the
least recently used streams were forgotten beyond ``max_streams``): its bias and residual
test from its accepted lab results, replayed oldest first, its clock from its newest
prediction. The bias tracks the plant, not the model: a new model version keeps it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from service.contracts.arrays import FloatArray
from service.contracts.errors import ConflictError
from service.contracts.features import gap_breaks
from service.lab.bias import BiasConfig, BiasFilter
from service.lab.records import LabRecord
from service.monitoring.alarms import AlarmConfig, ResidualAlarm, SensorDrift
from service.monitoring.changes import ChangeTracker
from service.monitoring.drift import DriftMonitor
from service.monitoring.redundancy import RedundancyDrift, RedundancyModel
from service.scoring.rows import Series
from service.scoring.runtime import LoadedModel


class DriftFeed:
    """Rows on their way to a stream's drift monitor, handed over in batches.

    Updating the monitor costs about the same for one row as for hundreds, so rows are
    collected and flushed every ``max_rows`` rows or ``max_age_s`` seconds, and before
    anything reads the monitor (a scrape).
    """

    def __init__(self, monitor: DriftMonitor, max_rows: int = 256, max_age_s: float = 1.0):
        self.monitor = monitor
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._x: list[FloatArray] = []
        self._y: list[FloatArray] = []
        self._rows = 0
        self._since = time.monotonic()
        self._lock = threading.Lock()

    def add(self, x: FloatArray, y: FloatArray) -> None:
        with self._lock:
            self._x.append(x)
            self._y.append(y)
            self._rows += len(y)
            due = self._rows >= self.max_rows or time.monotonic() - self._since > self.max_age_s
        if due:
            self.flush()

    def flush(self) -> DriftMonitor:
        with self._lock:
            if len(self._x) == 1:  # one batch (a big one, typically): no copy
                self.monitor.observe(self._x[0], self._y[0])
            elif self._x:
                self.monitor.observe(np.vstack(self._x), np.concatenate(self._y))
            self._x, self._y, self._rows = [], [], 0
            self._since = time.monotonic()
        return self.monitor


@dataclass
class Monitors:
    """The parts of a stream's state that belong to one model version (rebuilt on a swap)."""

    version: str
    signals: tuple[str, ...]  # the raw signals the lag history's columns are
    config: AlarmConfig
    drift: DriftFeed
    changes: ChangeTracker
    sensor_drift: SensorDrift | None
    # Each sensor against the others (None: the card has no redundancy block).
    redundancy: RedundancyDrift | None = None
    outside_run: int = 0  # consecutive rows with an input outside the training range
    frozen: list[str] = field(default_factory=list)  # at the stream's latest row
    drifting: list[str] = field(default_factory=list)


@dataclass(eq=False)  # identity: one object per (model, stream)
class StreamState:
    """One (model, stream): see the module docstring. ``lock`` serializes its updates."""

    model: str
    stream: str
    bias: BiasFilter
    monitors: Monitors
    history: Series | None = None
    clock: float = -math.inf  # latest data time seen (POSIX s)
    last_residual: float | None = None
    last_estimate: float | None = None  # corrected, latest served
    last_lab_value: float | None = None
    last_lab_sample: float | None = None  # data time of the newest lab sample
    residual: ResidualAlarm = field(default_factory=ResidualAlarm)
    lab_count: int = 0  # changes to its lab results accounted for (``StateStore.lab_counts``)
    token: str = ""  # the saved state this copy matches (``service.state.snapshot``)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def bias_value(self) -> float:
        return self.bias.bias

    def drift_monitor(self) -> DriftMonitor:
        """The stream's drift monitor, brought up to date."""
        return self.monitors.drift.flush()

    def unchanged_seconds(self) -> dict[str, float]:
        """Per raw signal, data-time seconds since its value last changed (NaN: never seen)."""
        m = self.monitors
        since = m.changes.seconds_since_change(self.clock)
        return dict(zip(m.signals, since.tolist(), strict=True))

    def sensor_drift(self) -> dict[str, tuple[float | None, bool]]:
        """Per sensor a drift detector watches: the redundancy test's ratio to its limit
        (None: not in that test) and whether it is flagged at the latest row."""
        m = self.monitors
        out: dict[str, tuple[float | None, bool]] = {}
        if m.redundancy is not None:
            ratios = m.redundancy.ratios().tolist()
            for name, value in zip(m.redundancy.model.signals, ratios, strict=True):
                out[name] = (value, name in m.drifting)
        for name in m.drifting:
            out.setdefault(name, (None, True))
        return out

    def check_order(self, first_time: float) -> None:
        """A stream only moves forward: a sample at or before its clock is a conflict."""
        if not first_time > self.clock:
            raise ConflictError(
                f"stream {self.stream!r} already has data up to {self.clock:.3f} s; "
                f"records must be newer (got {first_time:.3f} s)"
            )

    def lags_for(self, first_time: float, gap_s: float | None) -> Series | None:
        """The remembered rows that a request starting at ``first_time`` lags into; none
        after a gap in time (a step over ``gap_s``, the model's ``GAP_INTERVALS`` sample
        intervals; None: rows are samples): after a historian's outage the rows before it
        are not the lags the model was trained on, so the stream starts its history afresh
        and its first rows are flagged ``missing_history``, as a new stream's are."""
        old = self.history
        if old is None or not len(old) or gap_s is None:
            return old
        if first_time - float(old.times[-1]) > gap_s:
            with self.lock:
                self.history = None
            return None
        return old

    def remember(self, batch: Series, keep: int, gap_s: float | None = None) -> None:
        """Append rows to the lag history, keeping the newest ``keep`` and none before the
        last gap (a step over ``gap_s``) among them; move the clock."""
        old = self.history
        if old is not None and len(old):
            batch = Series(
                np.concatenate([old.times, batch.times]), np.vstack([old.values, batch.values])
            )
        kept = batch.tail(max(keep, 1))
        breaks = gap_breaks(kept.times, gap_s)
        if len(breaks):
            kept = kept.tail(len(kept) - int(breaks[-1]))
        self.history = kept
        self.advance(float(batch.times[-1]))

    def advance(self, t: float) -> None:
        self.clock = max(self.clock, t)

    def alarms(self) -> list[str]:
        """The alarms on now (``service.monitoring.alarms.ALARMS`` order)."""
        m = self.monitors
        on = []
        if m.frozen:
            on.append("frozen")
        outside = m.config.outside_samples is not None and m.outside_run > m.config.outside_samples
        if m.drifting or outside:
            on.append("drift")
        if self.residual.on:
            on.append("residual")
        if self.analyzer_silent():
            on.append("analyzer_silent")
        return on

    def lab_age(self) -> float | None:
        """Data time since the newest lab sample (None before the first)."""
        if self.last_lab_sample is None or not math.isfinite(self.clock):
            return None
        return max(self.clock - self.last_lab_sample, 0.0)

    def analyzer_silent(self) -> bool:
        limit = self.monitors.config.lab_silent_after_s
        age = self.lab_age()
        return limit is not None and age is not None and age > limit

    def take_lab(self, record: LabRecord) -> None:
        """Account for one stored result: its residual and the analyzer's age."""
        self.last_lab_value = record.value
        self.last_lab_sample = max(self.last_lab_sample or -math.inf, record.sample_time)
        if record.residual is not None:
            self.last_residual = record.residual
        if record.accepted and record.estimate is not None:
            corrected = record.estimate + self.bias.bias
            self.residual.observe(self.monitors.config.residual_ratio(self.bias.bias, corrected))


def new_monitors(model: LoadedModel, settings_frozen_s: float, window: int) -> Monitors:
    config = AlarmConfig.from_card(model.card, model.raw_signals, settings_frozen_s)
    return Monitors(
        version=model.version,
        signals=model.raw_signals,
        config=config,
        drift=DriftFeed(DriftMonitor(model.card, window=window)),
        changes=ChangeTracker(len(model.raw_signals)),
        sensor_drift=SensorDrift(config) if config.drift_limit is not None else None,
        redundancy=_redundancy(model),
    )


def _redundancy(model: LoadedModel) -> RedundancyDrift | None:
    calibration = model.card.calibration
    if calibration is None or calibration.redundancy is None:
        return None
    built = RedundancyModel.from_card(calibration.redundancy, model.raw_signals)
    return None if built is None else RedundancyDrift(built)


class StreamStore:
    """Thread-safe LRU map of (model, stream) -> StreamState."""

    def __init__(self, max_streams: int):
        self._max = max_streams
        self._data: OrderedDict[tuple[str, str], StreamState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: str, stream: str, create: Callable[[], StreamState]) -> StreamState:
        """The stream's state; ``create`` builds it when absent (outside the lock: it may
        read the store). The least recently used streams beyond ``max_streams`` go."""
        key = (model, stream)
        with self._lock:
            state = self._data.get(key)
            if state is not None:
                self._data.move_to_end(key)
                return state
        fresh = create()
        with self._lock:
            state = self._data.setdefault(key, fresh)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)
        return state

    def __iter__(self) -> Iterator[StreamState]:
        with self._lock:
            return iter(list(self._data.values()))

    def __len__(self) -> int:
        return len(self._data)


def rebind(state: StreamState, model: LoadedModel, bias: BiasConfig, monitors: Monitors) -> None:
    """Move a stream to a new model version: fresh monitors, the bias kept (new limits)."""
    with state.lock:
        if state.monitors.version == model.version:
            return
        if state.monitors.signals != model.raw_signals:
            state.history = None  # remembered rows have the old signal layout
        state.bias = BiasFilter(
            bias, bias=state.bias.bias, last_sample_time=state.bias.last_sample_time
        )
        state.monitors = monitors
