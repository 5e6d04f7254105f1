"""Sensor drift from analytical redundancy: each sensor against what the others say it reads.

Tray temperatures (and the flows that set them) are strongly related: at any moment the
other sensors predict a sensor's reading to within a little more than its own noise. A
transmitter drifting away from the truth leaves the others behind, so its residual moves
long before its reading looks unusual on its own (the PCA residual of
``service.scoring.validity`` mixes every sensor's error into every column and sees it
later). The card's ``calibration.redundancy`` block (``training.redundancy``) holds the
prediction weights and every threshold; this module is the detector the service runs on
each row of each (model, stream):

1. the residual of every signal against the others' readings and their smoothed values:
   one small matrix product per row (the smoothing averages the other sensors' noise away,
   the readings follow what moves at once, such as flows set in ratio);
2. its departure from a slow baseline (an EWMA: a healthy sensor wanders over days, and
   that is not a fault), standardized by its held-out spread and clipped (a one-sample
   spike is not a drift, and must neither trip the test nor drag the baseline);
3. a short EWMA of the departure: the signal drifts once it has exceeded its limit for
   ``on_delay`` rows in a row (an alarm on-delay: a transient of the column, such as a feed
   step the other sensors follow with a lag, crosses the limit for minutes, a drift stays
   over it), and until it falls below ``release`` of it (a deadband: one drift, one alarm).

The baseline moves with clipped steps, so a drift is eventually absorbed, but far later
than the test rings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.card import SensorRedundancy


def _decay(samples: float) -> float:
    return math.exp(-1.0 / samples)


@dataclass(frozen=True)
class RedundancyModel:
    """The card's redundancy block as arrays, for the raw signals a stream sends."""

    signals: tuple[str, ...]
    columns: NDArray[np.intp]  # index of each signal among the stream's raw signals
    mean: FloatArray
    scale: FloatArray
    weights: FloatArray  # [2m, m]: on the readings, then on their smoothed values
    smooth: float  # per-row decay of the regressors' EWMA
    baseline: float  # ... of the residual's baseline
    fast: float  # ... of the departure's average
    clip: float
    sd: FloatArray
    limit: FloatArray
    release: float
    on_delay: int = 1  # rows over the limit before a signal is flagged

    @classmethod
    def from_card(
        cls, block: SensorRedundancy, raw_signals: tuple[str, ...]
    ) -> RedundancyModel | None:
        """None when the stream's raw signals lack one the block needs."""
        if any(s not in raw_signals for s in block.signals):
            return None
        return cls(
            signals=tuple(block.signals),
            columns=np.array([raw_signals.index(s) for s in block.signals], dtype=np.intp),
            mean=np.array(block.mean),
            scale=np.array(block.scale),
            weights=np.array(block.weights),
            smooth=_decay(block.smooth_samples),
            baseline=_decay(block.baseline_samples),
            fast=_decay(block.fast_samples),
            clip=block.clip_sd,
            sd=np.array(block.residual_sd),
            limit=np.array(block.limit),
            release=block.release,
            on_delay=block.on_delay_samples,
        )


class RedundancyDrift:
    """One stream's redundancy detector: per signal, the smoothed reading, the residual's
    baseline, the departure's average and whether it is flagged."""

    def __init__(self, model: RedundancyModel) -> None:
        self.model = model
        m = len(model.signals)
        self.smoothed: FloatArray | None = None
        self.base = np.zeros(m)
        self.average = np.zeros(m)
        self.flagged = np.zeros(m, dtype=bool)
        self.over = np.zeros(m)  # rows in a row over the limit

    def state(self) -> FloatArray | None:
        """[5, m] (None before the first row): what a snapshot carries to another replica."""
        if self.smoothed is None:
            return None
        return np.vstack([self.smoothed, self.base, self.average, self.flagged, self.over])

    def restore(self, saved: FloatArray | None) -> None:
        """Continue from a snapshot's ``state()`` (None or a foreign shape: start afresh)."""
        m = len(self.model.signals)
        if saved is None or saved.shape != (5, m):
            self.smoothed, self.base, self.average = None, np.zeros(m), np.zeros(m)
            self.flagged, self.over = np.zeros(m, dtype=bool), np.zeros(m)
            return
        self.smoothed, self.base, self.average = (saved[i].copy() for i in range(3))
        self.flagged, self.over = saved[3] > 0.5, saved[4].copy()

    def ratios(self) -> FloatArray:
        """Each signal's statistic over its limit, now (0 before the first row)."""
        return np.asarray(np.abs(self.average) / self.model.limit)

    def observe(
        self, values: FloatArray, keep: NDArray[np.bool_] | None = None
    ) -> NDArray[np.bool_]:
        """Per row of raw ``values`` [n, S], which signals are flagged after it [n, m].
        Rows not in ``keep`` (a value missing, invalid or out of range) move nothing and
        repeat the flags before them."""
        model = self.model
        with np.errstate(invalid="ignore", over="ignore"):
            z = (values[:, model.columns] - model.mean) / model.scale
        ok = np.asarray(np.isfinite(z).all(axis=1))
        if keep is not None:
            ok = ok & keep
        out = np.empty(z.shape, dtype=bool)
        for i, usable in enumerate(ok.tolist()):
            if usable:
                self._step(z[i])
            out[i] = self.flagged
        return out

    def _step(self, z: FloatArray) -> None:
        model = self.model
        if self.smoothed is None:  # the first row: every average starts at its value
            self.smoothed = z.copy()
            self.base = z - np.concatenate([z, z]) @ model.weights
        self.smoothed += (1.0 - model.smooth) * (z - self.smoothed)
        residual = z - np.concatenate([z, self.smoothed]) @ model.weights
        step = np.clip((residual - self.base) / model.sd, -model.clip, model.clip)
        self.base += (1.0 - model.baseline) * step * model.sd
        self.average += (1.0 - model.fast) * (step - self.average)
        ratio = np.abs(self.average) / model.limit
        self.over = np.where(ratio > 1.0, self.over + 1.0, 0.0)
        self.flagged = (self.over >= model.on_delay) | (self.flagged & (ratio > model.release))
