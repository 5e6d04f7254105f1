"""What the request handlers of the data plane share: one object, built by the data plane."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from service.clock import TimeRules
from service.metrics import ServiceMetrics
from service.settings import Settings
from service.slots import ModelSlot, ModelSlots
from service.store import LabStore
from service.streams import StreamState


@dataclass(frozen=True)
class Parts:
    """The served models, the way to a stream's state and to the store, metrics and the
    time rules, as ``service.scoring`` and ``service.labs`` use them."""

    settings: Settings
    slots: ModelSlots
    stream: Callable[[ModelSlot, str], StreamState]  # the state, on the slot's version
    store: Callable[[], LabStore]  # the open store (503 before it is)
    metrics: ServiceMetrics
    rules: TimeRules = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        rules = TimeRules(s.predict_max_future_s, s.stream_max_jump_s, s.lab_max_future_s)
        object.__setattr__(self, "rules", rules)
