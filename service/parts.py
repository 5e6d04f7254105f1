"""What the request handlers of the data plane share: one object, built by the data plane."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from service.lab.statestore import StateStore
from service.monitoring.metrics import ServiceMetrics
from service.scoring.slots import ModelSlot, ModelSlots
from service.settings import Settings
from service.state.clock import TimeRules
from service.state.streams import StreamState


@dataclass(frozen=True)
class Parts:
    """The served models, the way to a stream's state and to the store, metrics and the
    time rules, as ``service.scoring.scorer`` and ``service.lab.labs`` use them."""

    settings: Settings
    slots: ModelSlots
    stream: Callable[[ModelSlot, str], StreamState]  # the state, on the slot's version
    store: Callable[[], StateStore]  # the open store (503 before it is)
    metrics: ServiceMetrics
    # streams' biases brought up to the shared store (another replica's lab results)
    sync: Callable[[ModelSlot, Sequence[StreamState]], None] = lambda slot, states: None
    # a stream's bias and lab accounting rebuilt from the store (after a void)
    replay: Callable[[ModelSlot, StreamState], None] = lambda slot, state: None
    rules: TimeRules = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        rules = TimeRules(s.predict_max_future_s, s.stream_max_jump_s, s.lab_max_future_s)
        object.__setattr__(self, "rules", rules)
