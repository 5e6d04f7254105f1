"""Bounded per-stream history for stateful lag assembly.

A historian that sends one row per sample under a ``stream`` id gets lagged features without
resending the window: the last ``keep`` rows are remembered per (model, stream), and the least
recently used streams are forgotten beyond ``max_streams``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from service.errors import ConflictError
from service.rows import Series


class StreamStore:
    """Thread-safe LRU map of (model, stream) -> recent Series."""

    def __init__(self, max_streams: int) -> None:
        self._max = max_streams
        self._data: OrderedDict[tuple[str, str], Series] = OrderedDict()
        self._lock = threading.Lock()

    def history(self, model: str, stream: str) -> Series | None:
        with self._lock:
            series = self._data.get((model, stream))
            if series is not None:
                self._data.move_to_end((model, stream))
            return series

    def check_order(self, model: str, stream: str, first_time: float) -> None:
        """A stream only moves forward: a sample at or before the last one is a conflict."""
        series = self.history(model, stream)
        if series is not None and len(series) and not first_time > series.times[-1]:
            raise ConflictError(
                f"stream {stream!r} already has data up to {series.times[-1]:.3f} s; "
                f"records must be newer (got {first_time:.3f} s)"
            )

    def append(self, model: str, stream: str, batch: Series, keep: int) -> None:
        """Remember the newest ``keep`` rows (at least one, for order checks)."""
        keep = max(keep, 1)
        with self._lock:
            old = self._data.get((model, stream))
            if old is not None and old.values.shape[1] == batch.values.shape[1]:
                merged = Series(
                    np.concatenate([old.times, batch.times]), np.vstack([old.values, batch.values])
                )
            else:
                merged = batch
            self._data[(model, stream)] = merged.tail(keep)
            self._data.move_to_end((model, stream))
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def forget(self, model: str) -> None:
        """Drop a model's streams (its raw signals changed with a new version)."""
        with self._lock:
            for key in [k for k in self._data if k[0] == model]:
                del self._data[key]

    def __len__(self) -> int:
        return len(self._data)
