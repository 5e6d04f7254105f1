"""A stream's alarms, with windows and thresholds calibrated on held-out normal operation.

Four alarms per (model, stream), each judged on the stream's own data clock, so a replay
raises them exactly when live operation would:

- ``frozen``: a sensor unchanged past its frozen window: the larger of
  ``SOFTSENSOR_FROZEN_AFTER_S`` and twice the longest exact repeat that signal showed in
  the training file (an analyzer input holding its value between cycles is not frozen);
- ``drift``: the inputs leave the data the model was built from: one sensor's PCA residual
  moves (its fast EWMA departs from its slow one by more than the calibrated limit: a
  drifting or biased transmitter), or rows stay outside the training range for longer than
  held-out normal operation ever did (a new operating point);
- ``residual``: the model's error has shifted: the bias correction the analyzer demands is
  larger than any held-out normal operation needed (twice that, the card's ``bias_alarm``,
  relative to the interval's scale at the estimate: errors grow with the level); the
  correction still applies, the alarm says it is hiding a shift. As alarm management
  (ISA-18.2) asks of a noisy condition, it has an on-delay and a deadband, both counted in
  the analyzer results that move the bias: on after ``RESIDUAL_ON_RESULTS`` results in a row
  beyond the level, off once a result finds the bias below ``RESIDUAL_CLEAR`` of it;
- ``analyzer_silent``: no lab or analyzer result for longer than the card's limit after
  the last sample (a gap normal operation never showed).

The other alarms hold while their condition does and clear when it clears. The card's
``calibration.alarms`` block records every number (see ``training.calibration``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.card import ModelCard
from service.lab.bias import residual_sigma

ALARMS = ("frozen", "drift", "residual", "analyzer_silent")
FROZEN_NORMAL_FACTOR = 2.0  # a frozen window at least twice the longest normal repeat
RESIDUAL_ON_RESULTS = 3  # the residual alarm's on-delay, in consecutive results beyond it
RESIDUAL_CLEAR = 0.8  # ... and its deadband: off below this share of the alarm level
_BLOCK = 256  # rows per closed-form EWMA block (exact to ~1e-9 for time constants >= 15)


@dataclass(frozen=True)
class AlarmConfig:
    """The alarm windows and thresholds of one model version."""

    frozen_after_s: FloatArray  # per raw signal
    drift_fast: float  # samples
    drift_slow: float
    drift_limit: FloatArray | None  # per PCA column; None: no sensor-drift detector
    outside_samples: int | None  # None: no operating-point drift alarm
    bias_alarm: float  # |bias| / scale(estimate) above this: the residual alarm
    scale_floor: float  # the interval's scale: max(|estimate|, floor) ** power
    scale_power: float
    lab_silent_after_s: float | None

    @classmethod
    def from_card(
        cls, card: ModelCard, raw_signals: tuple[str, ...], frozen_after_s: float
    ) -> AlarmConfig:
        interval = card.target.sample_interval_s
        calibration = card.calibration
        calibrated = calibration.alarms if calibration is not None else None
        normal = calibrated.frozen_normal_samples if calibrated is not None else {}
        frozen = np.array(
            [
                max(frozen_after_s, FROZEN_NORMAL_FACTOR * normal.get(s, 0) * (interval or 0.0))
                for s in raw_signals
            ]
        )
        if calibration is None or calibrated is None:
            # A card from before calibration: two half-widths of the 95 % validation band
            # (four sigma), below the bias clip of three.
            half_width = NormalDist().inv_cdf(0.975) * residual_sigma(card)
            return cls(frozen, 1.0, 1.0, None, None, 2.0 * half_width, 1.0, 0.0, None)
        return cls(
            frozen_after_s=frozen,
            drift_fast=calibrated.sensor_drift_fast_samples,
            drift_slow=calibrated.sensor_drift_slow_samples,
            drift_limit=None
            if calibrated.sensor_drift_limit is None
            else np.array(calibrated.sensor_drift_limit),
            outside_samples=calibrated.outside_training_samples,
            bias_alarm=calibrated.bias_alarm,
            scale_floor=calibration.interval.scale_floor,
            scale_power=calibration.interval.scale_power,
            lab_silent_after_s=calibrated.lab_silent_after_s,
        )

    @cached_property
    def shortest_frozen_s(self) -> float:
        """The shortest frozen window: rows spanning less cannot show a frozen sensor."""
        return float(self.frozen_after_s.min()) if len(self.frozen_after_s) else math.inf

    def residual_ratio(self, bias: float, estimate: float | None) -> float:
        """``bias`` at the corrected ``estimate`` over the residual alarm's level there."""
        level = abs(estimate) if estimate is not None and math.isfinite(estimate) else 0.0
        scale = float(max(level, self.scale_floor) ** self.scale_power)
        return abs(bias) / (self.bias_alarm * scale)


@dataclass
class ResidualAlarm:
    """The residual alarm of one stream, moved only by the results that move its bias."""

    on: bool = False
    beyond: int = 0  # consecutive results beyond the level

    def observe(self, ratio: float) -> None:
        """Account for one result that left the bias at ``ratio`` of the alarm level."""
        if ratio > 1.0:
            self.beyond += 1
            self.on = self.on or self.beyond >= RESIDUAL_ON_RESULTS
        elif ratio < RESIDUAL_CLEAR:
            self.on, self.beyond = False, 0
        elif not self.on:  # within the deadband: an alarm not yet on starts its count again
            self.beyond = 0


def ewma_rows(
    values: FloatArray, level: FloatArray, samples: float
) -> tuple[FloatArray, FloatArray]:
    """The exponentially weighted mean after each row of ``values`` [n, m], starting from
    ``level`` [m], with a time constant of ``samples`` rows; returns (per row, last).

    One row is one update; longer batches use the closed form in blocks (a few matrix
    operations per block instead of a Python step per row).
    """
    decay = math.exp(-1.0 / samples)
    if len(values) == 1:
        last = level + (1.0 - decay) * (values[0] - level)
        return last[None, :], last
    out = np.empty_like(values)
    for start in range(0, len(values), _BLOCK):
        block = values[start : start + _BLOCK]
        powers = decay ** np.arange(1, len(block) + 1)[:, None]  # decay^(t+1)
        weighted = np.cumsum(block / powers, axis=0) * (1.0 - decay)
        out[start : start + len(block)] = powers * (level + weighted)
        level = out[start + len(block) - 1]
    return out, level.copy()


class SensorDrift:
    """Per PCA column of one stream: |fast EWMA - slow EWMA| of its standardized residual,
    over its limit (above 1: that sensor drifts). Both EWMAs start at the first residual."""

    def __init__(self, config: AlarmConfig) -> None:
        assert config.drift_limit is not None
        self.config = config
        self._fast: FloatArray | None = None
        self._slow: FloatArray | None = None

    def levels(self) -> tuple[FloatArray, FloatArray] | None:
        """Both EWMAs (None before the first residual): what another replica carries on."""
        if self._fast is None or self._slow is None:
            return None
        return self._fast, self._slow

    def restore(self, levels: tuple[FloatArray, FloatArray] | None) -> None:
        """Continue from EWMAs another replica left (``levels``)."""
        self._fast, self._slow = (None, None) if levels is None else levels

    def observe(self, residual: FloatArray, keep: NDArray[np.bool_] | None = None) -> FloatArray:
        """Ratios to the limit [n, m] after each row of ``residual`` [n, m]; rows not in
        ``keep`` (a bad value: an infinite residual would poison both means) are skipped
        and get NaN."""
        if keep is not None and not keep.all():
            out = np.full(residual.shape, np.nan)
            if keep.any():
                out[keep] = self.observe(residual[keep])
            return out
        if self._fast is None or self._slow is None:
            self._fast, self._slow = residual[0].copy(), residual[0].copy()
        fast, self._fast = ewma_rows(residual, self._fast, self.config.drift_fast)
        slow, self._slow = ewma_rows(residual, self._slow, self.config.drift_slow)
        limit = self.config.drift_limit
        assert limit is not None
        return np.asarray(np.abs(fast - slow) / limit)
