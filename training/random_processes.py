"""The random processes behind simulated operation, each drawn from the caller's generator:
disturbance paths (steps and ramps to new levels plus a bounded slow walk), Poisson event
times, and what a historian stores for a sensor (noise, drift, stuck periods, spikes,
quantisation). The same generator state gives the same numbers, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

from service.contracts.arrays import FloatArray
from training.simulation_config import Disturbance, SensorNoise

MINUTES_PER_DAY = 1440.0


def _ou_walk(rng: np.random.Generator, n: int, sd: float, tau: float, dt: float) -> FloatArray:
    """Stationary Ornstein-Uhlenbeck samples: a random walk that is pulled back, so bounded."""
    phi = math.exp(-dt / tau)
    start = rng.normal(0.0, sd)
    shocks = rng.standard_normal(n)
    if sd == 0:
        return np.zeros(n)
    b = [sd * math.sqrt(1.0 - phi * phi)]
    out, _ = scipy.signal.lfilter(b, [1.0, -phi], shocks, zi=[phi * start])
    return np.asarray(out, dtype=np.float64)


def event_times(rng: np.random.Generator, n: int, per_day: float, dt: float) -> FloatArray:
    """Sorted sample positions of a Poisson process with ``per_day`` events per day."""
    k = int(rng.poisson(per_day * n * dt / MINUTES_PER_DAY))
    return np.sort(rng.uniform(0.0, n, k))


def disturbance_path(rng: np.random.Generator, d: Disturbance, n: int, dt: float) -> FloatArray:
    """``n`` samples of one disturbance: steps and ramps to new levels plus a slow walk."""
    walk = _ou_walk(rng, n, d.walk_sd, d.walk_hours * 60.0, dt)
    times = event_times(rng, n, d.events_per_day, dt)
    levels = rng.uniform(-d.event_size, d.event_size, times.size)
    ramps = rng.random(times.size) < d.ramp_share
    durations = rng.uniform(d.ramp_minutes[0], d.ramp_minutes[1], times.size) / dt
    level = np.zeros(n)
    for t, new, is_ramp, dur in zip(times, levels, ramps, durations, strict=True):
        i0 = int(t)
        start = level[i0]  # where the path is now, possibly in the middle of a ramp
        if is_ramp and dur >= 1.0:
            i1 = min(n, i0 + int(dur))
            frac = (np.arange(i0, i1) - i0 + 1.0) / dur
            level[i0:i1] = start + (new - start) * frac
            level[i1:] = new
        else:
            level[i0:] = new
    return np.clip(d.nominal + level + walk, d.low, d.high)


def sensor_reading(
    rng: np.random.Generator, true: FloatArray, s: SensorNoise, dt: float
) -> FloatArray:
    """What a historian stores for a sensor whose true value is ``true``.

    Noise and drift are added first, then stuck periods hold the reading at its value when
    the sensor froze, then spikes hit the samples that are not stuck, then quantisation.
    """
    n = true.size
    days = n * dt / MINUTES_PER_DAY
    noise = rng.normal(0.0, s.noise_sd, n) if s.noise_sd > 0 else np.zeros(n)
    drift = _ou_walk(rng, n, s.drift_sd, s.drift_hours * 60.0, dt)
    reading = true + noise + drift

    n_frozen = int(rng.poisson(s.frozen_per_day * days))
    starts = rng.integers(0, n, n_frozen)
    lengths = rng.uniform(s.frozen_minutes[0], s.frozen_minutes[1], n_frozen) / dt
    stuck = np.zeros(n, dtype=bool)
    for i0, length in zip(starts, lengths, strict=True):
        i1 = min(n, int(i0) + max(1, int(length)))
        reading[i0:i1] = reading[i0]
        stuck[i0:i1] = True

    hit = rng.random(n) < s.spikes_per_day * dt / MINUTES_PER_DAY
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    size = rng.uniform(0.5, 1.5, n) * s.spike_size
    spikes = hit & ~stuck
    reading[spikes] += (sign * size)[spikes]
    return np.round(reading / s.resolution) * s.resolution
