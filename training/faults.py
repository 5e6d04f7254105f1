"""Faults injected at known times into simulated Column A data: the replay's ground truth.

A soft sensor's flags and alarms can only be scored against faults whose start and end are
known. Each :class:`Fault` acts either on the physics (a feed move changes the column's feed
before it is simulated, so temperatures, flows and compositions all follow) or on what the
historian records (a stuck or drifting transmitter, an analyzer outage, a step in the tray
temperatures for the same compositions).

The "pressure step" is how the replay makes the analyzer see a step offset of the model: a
rise in column pressure lifts every tray's boiling point by the same few tenths of a kelvin,
so the temperatures read higher for the same compositions, the model (trained at constant
pressure) under-estimates, and only the analyzer tells the truth. This is the disturbance a
lab-bias correction exists for.

>>> faults = (Fault("stuck", 60.0, 240.0, signal="T21"),)
>>> # result = simulate_with_faults(2, seed=0, faults=faults)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from service.contracts.arrays import FloatArray
from training.errors import SimulationError
from training.simulator import (
    TARGET,
    TOP_ANALYZER,
    SimulationConfig,
    SimulationResult,
    run,
    temperature_columns,
)

FaultKind = Literal["stuck", "drift", "pressure_step", "analyzer_outage", "feed_move"]
FEED_RAMP_MINUTES = 30.0  # a feed move ramps to its new rate (and back) over this long


@dataclass(frozen=True)
class Fault:
    """One fault from ``start_min`` to ``end_min`` (minutes from the first row).

    ``signal`` names the transmitter of a ``stuck`` or ``drift`` fault. ``size`` is, by kind:
    ``drift`` the drift rate in the signal's unit per hour (the reading returns to normal at
    the end: recalibrated); ``pressure_step`` the kelvin added to every tray temperature;
    ``feed_move`` the feed rate (kmol/min) the column is moved to.
    """

    kind: FaultKind
    start_min: float
    end_min: float
    signal: str | None = None
    size: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.start_min < self.end_min:
            raise SimulationError(f"fault {self.kind}: need 0 <= start < end, got {self}")
        if self.kind in ("stuck", "drift") and not self.signal:
            raise SimulationError(f"fault {self.kind} needs the signal it acts on")
        if self.kind == "feed_move" and not self.size > 0:
            raise SimulationError("fault feed_move needs a positive feed rate as its size")

    def rows(self, sample_minutes: float, n: int) -> slice:
        """The rows it covers, clipped to a series of ``n`` rows."""
        first = min(n, round(self.start_min / sample_minutes))
        return slice(first, min(n, round(self.end_min / sample_minutes)))


def feed_adjuster(
    faults: Sequence[Fault], sample_minutes: float
) -> Callable[[str, FloatArray], FloatArray]:
    """The ``adjust`` hook of ``training.simulator.run`` that applies the feed moves."""
    moves = [f for f in faults if f.kind == "feed_move"]

    def adjust(name: str, path: FloatArray) -> FloatArray:
        if name != "feed" or not moves:
            return path
        out = path.copy()
        ramp = max(1, round(FEED_RAMP_MINUTES / sample_minutes))
        for fault in moves:
            span = fault.rows(sample_minutes, len(out))
            if span.start >= span.stop:
                continue
            # Blend the undisturbed path into the new rate and back out, over ``ramp`` rows.
            rows = np.arange(span.start, min(len(out), span.stop + ramp))
            up = np.clip((rows - span.start + 1) / ramp, 0.0, 1.0)
            down = np.clip((span.stop + ramp - rows) / ramp, 0.0, 1.0)
            weight = np.minimum(up, down)
            out[rows] = (1 - weight) * out[rows] + weight * fault.size
        return out

    return adjust


def _column(frame: pd.DataFrame, name: str) -> FloatArray:
    if name not in frame.columns:
        raise SimulationError(f"fault on {name!r}: no such signal in the data")
    return frame[name].to_numpy(dtype=np.float64, copy=True)


def apply_to_frame(frame: pd.DataFrame, faults: Sequence[Fault], cfg: SimulationConfig) -> None:
    """Apply the recorded-data faults to the historian frame, in place (truth untouched).

    Changed readings are quantised to the sensor's resolution, as the historian stores them.
    """
    temperatures = temperature_columns(cfg)

    def resolution(name: str) -> float:
        sensor = cfg.sensors.temperature if name in temperatures else cfg.sensors.flow
        return sensor.resolution

    for fault in faults:
        span = fault.rows(cfg.sample_minutes, len(frame))
        if fault.kind == "stuck":
            values = _column(frame, str(fault.signal))
            values[span] = values[span.start]
            frame[str(fault.signal)] = values
        elif fault.kind in ("drift", "pressure_step"):
            names = [str(fault.signal)] if fault.kind == "drift" else temperatures
            hours = np.arange(span.stop - span.start) * cfg.sample_minutes / 60.0
            offset = fault.size * hours if fault.kind == "drift" else fault.size
            for name in names:
                values = _column(frame, name)
                values[span] += offset
                frame[name] = np.round(values / resolution(name)) * resolution(name)
        elif fault.kind == "analyzer_outage":
            for name in (TARGET, TOP_ANALYZER):
                values = _column(frame, name)
                values[span] = np.nan
                frame[name] = values


def simulate_with_faults(
    days: float, seed: int, config: SimulationConfig | None = None, faults: Sequence[Fault] = ()
) -> SimulationResult:
    """Simulate ``days`` of Column A with ``faults`` at their known times."""
    cfg = config or SimulationConfig()
    result = run(days, seed, cfg, adjust=feed_adjuster(faults, cfg.sample_minutes))
    apply_to_frame(result.frame, faults, cfg)
    return result
