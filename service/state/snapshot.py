"""A stream's carried state as bytes, so that the next request may land on another replica.

What a stateful answer depends on besides the request is saved after each scored batch,
with the predictions (one transaction, ``service.lab.postgres``): the lag history and the
data clock, when each sensor last changed, the sensor-drift EWMAs, the redundancy test's
averages, the run of rows outside the training range, the frozen and drifting signals, the
latest corrected estimate (the residual alarm reads it). A replica about to score a stream
whose saved state carries another token than its own copy takes the saved one first: the
answers are those of a single replica. The bias is not in it: it follows from the stored lab results
(``service.dataplane``). Nor are the PSI windows, which only feed each replica's /metrics.

The format is NumPy's ``.npz`` without pickles (a database row never runs code), with the
scalars as a JSON member.
"""

from __future__ import annotations

import io
import json
import math
import uuid
from typing import Any

import numpy as np

from service.lab.statestore import PredictionStore, SavedState
from service.scoring.rows import Series
from service.state.streams import StreamState

FORMAT = 1


def save(state: StreamState) -> bytes:
    """The state's carried parts (call under ``state.lock``)."""
    m = state.monitors
    arrays: dict[str, Any] = {
        "last_value": m.changes.last_value,
        "last_change": m.changes.last_change,
    }
    if state.history is not None:
        arrays["history_times"] = state.history.times
        arrays["history_values"] = state.history.values
    levels = None if m.sensor_drift is None else m.sensor_drift.levels()
    if levels is not None:
        arrays["drift_fast"], arrays["drift_slow"] = levels
    redundancy = None if m.redundancy is None else m.redundancy.state()
    if redundancy is not None:
        arrays["redundancy"] = redundancy
    meta = {
        "format": FORMAT,
        "signals": list(m.signals),
        "clock": state.clock if math.isfinite(state.clock) else None,
        "last_time": m.changes.last_time if math.isfinite(m.changes.last_time) else None,
        "outside_run": m.outside_run,
        "frozen": m.frozen,
        "drifting": m.drifting,
        "last_estimate": state.last_estimate,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def load(state: StreamState, payload: bytes, same_version: bool) -> None:
    """Put a saved state into ``state`` (call under ``state.lock``). Saved by another model
    version (a replica not yet swapped), only the history and the clock are taken, as a
    version swap keeps them; history of another signal layout is dropped."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as saved:
        meta = json.loads(saved["meta"].tobytes())
        if meta.get("format") != FORMAT:
            raise ValueError(f"stream state format {meta.get('format')} is not {FORMAT}")
        m = state.monitors
        same_layout = tuple(meta["signals"]) == m.signals
        clock = meta["clock"]
        state.clock = -math.inf if clock is None else float(clock)
        state.history = None
        if same_layout and "history_times" in saved:
            state.history = Series(saved["history_times"], saved["history_values"])
        if not (same_version and same_layout):
            return
        m.changes.last_value = saved["last_value"].copy()
        m.changes.last_change = saved["last_change"].copy()
        last_time = meta["last_time"]
        m.changes.last_time = -math.inf if last_time is None else float(last_time)
        if m.sensor_drift is not None:
            has = "drift_fast" in saved
            levels = (saved["drift_fast"].copy(), saved["drift_slow"].copy()) if has else None
            m.sensor_drift.restore(levels)
        if m.redundancy is not None:
            m.redundancy.restore(saved["redundancy"].copy() if "redundancy" in saved else None)
        m.outside_run = int(meta["outside_run"])
        m.frozen = list(meta["frozen"])
        m.drifting = list(meta["drifting"])
        state.last_estimate = meta["last_estimate"]


def catch_up(log: PredictionStore, state: StreamState) -> None:
    """Take the stream's saved state if another replica moved it on since this one did (one
    indexed read; nothing when this replica's copy is the latest)."""
    saved = log.load_state(state.model, state.stream, state.token)
    if saved is None:
        return
    with state.lock:
        load(state, saved.payload, saved.version == state.monitors.version)
        state.token = saved.token


def saved(state: StreamState) -> SavedState:
    """The stream's state to save with its predictions, under a new token it now holds."""
    with state.lock:
        state.token = uuid.uuid4().hex
        return SavedState(
            state.model, state.stream, state.token, state.monitors.version, save(state)
        )
