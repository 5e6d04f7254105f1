"""Days of Column A operation as a plant historian records them: the soft sensor's test bench.

The physics is :mod:`training.column` (Skogestad's Column A, LV configuration with P level
loops). This module adds what makes a historian export realistic, all drawn from one
``numpy.random.Generator`` seeded by the caller, so a seed reproduces a file bit for bit:

* **Operation.** Feed rate, feed composition and feed liquid fraction wander as bounded
  slow random walks (Ornstein-Uhlenbeck) with occasional steps and ramps to new levels.
  Reflux and boilup follow the feed through ratio (feed-forward) control, as in most DCS
  installations, and the operator moves their set points now and then: unprompted moves
  (throughput/energy trims of both, or cut moves of the boilup alone) and, every few hours,
  a cautious trim of the boilup from the two analyzers when one product is clearly more
  off-spec than the other. Without that slow operator feedback an LV column drifts far out
  of specification within a day (x_B moves 70 % for a 1 % feed change); with it, x_B
  swings over about a decade (0.2 to 5 mol %) the way a loosely supervised column does,
  which is what a soft sensor must cope with.
* **Sensors.** Tray temperatures (degC) and the flows F, L, V, D, B (kmol/min) carry
  Gaussian noise, a slow drift, occasional single-sample spikes and stuck (frozen) periods,
  then are quantised to the historian's resolution. No sensor value is NaN.
* **Analyzers.** A gas chromatograph on each product draws a sample every ``period_minutes``
  and reports it ``dead_minutes`` later (mol % light component), with relative and absolute
  noise and occasional missed cycles; the historian shows NaN between reports. The bottoms
  analyzer ``analyzer_xB`` is the training target; ``true_xB``/``true_xD`` are the noise-free
  compositions at each row's own time, for evaluation only.

Inputs are held constant over each sample interval (zero-order hold, as a DCS applies
them) and the column is integrated interval by interval with the fixed-step Rosenbrock
method ROS2 of :meth:`training.column.ColumnModel.advance`; see that module for why. A week
of 1-minute samples (10,080 rows) takes about 5 s on one core.

>>> # data, spec = simulate(7, seed=1, out=Path("column_a.csv"))
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.signal
import yaml

from service.contracts.arrays import FloatArray
from service.contracts.atomic import write_atomic
from training.column import ColumnModel, ColumnParams, SteadyStateError
from training.errors import SimulationError
from training.spec import DatasetSpec

_MINUTES_PER_DAY = 1440.0
_KELVIN = 273.15


@dataclass(frozen=True)
class Disturbance:
    """A bounded disturbance: nominal + occasional level changes + a slow random walk."""

    nominal: float  # value with no disturbance
    low: float  # hard bounds: the sum is clipped into [low, high]
    high: float
    walk_sd: float  # stationary standard deviation of the random walk (Ornstein-Uhlenbeck)
    walk_hours: float  # correlation time of the random walk, hours
    events_per_day: float  # mean number of level changes (steps or ramps) per day
    event_size: float  # a level change moves to nominal + U(-event_size, event_size)
    ramp_share: float = 0.5  # share of level changes that are ramps rather than steps
    ramp_minutes: tuple[float, float] = (30.0, 240.0)  # duration range of a ramp

    def __post_init__(self) -> None:
        if not self.low <= self.nominal <= self.high:
            raise SimulationError(f"nominal {self.nominal} outside [{self.low}, {self.high}]")
        if min(self.walk_sd, self.events_per_day, self.event_size) < 0 or self.walk_hours <= 0:
            raise SimulationError("disturbance sizes and rates must be >= 0, walk_hours > 0")


@dataclass(frozen=True)
class OperatorConfig:
    """How reflux and boilup set points move (the column's only manipulated inputs)."""

    feed_ratio: bool = True  # L and V are set as ratios to the feed (feed-forward control)
    # Lag of the ratio stations' feed signal, min: a filtered flow, as DCSs use, and it keeps
    # a sudden feed step from boiling the 0.5-kmol reboiler dry before the liquid arrives.
    feed_filter_minutes: float = 5.0
    reflux_ratio: float = 2.70629  # initial L/F (nominal L at nominal F)
    boilup_ratio: float = 3.20629  # initial V/F
    reflux_ratio_range: tuple[float, float] = (2.3, 3.2)  # operating window for L/F
    cut_range: tuple[float, float] = (0.44, 0.56)  # window for V/F - L/F (about D/F)
    moves_per_day: float = 1.5  # unprompted set-point moves per day
    internal_share: float = 0.5  # share of those moving L/F and V/F together (energy trims)
    internal_move: float = 0.15  # an internal move changes L/F and V/F by U(-this, this)
    cut_move: float = 0.006  # a cut move changes V/F alone by U(-this, this)
    corrects: bool = True  # the operator trims V/F from the analyzers now and then
    check_hours: float = 3.0  # mean time between looks at the analyzers, hours
    target_xb: float = 0.01  # bottoms impurity aimed at (mole fraction)
    target_yd: float = 0.99  # top composition aimed at (mole fraction)
    gain: float = 0.6  # share of the mass-balance correction applied at one look
    deadband: float = 0.4  # half log-impurity imbalance left alone (a factor 2.2 on one side)
    max_trim: float = 0.015  # largest single trim of V/F


@dataclass(frozen=True)
class SensorNoise:
    """Measurement artefacts of one kind of sensor, in its engineering unit."""

    noise_sd: float  # white measurement noise, standard deviation
    drift_sd: float  # stationary standard deviation of the slow drift
    drift_hours: float  # correlation time of the drift, hours
    spikes_per_day: float  # single-sample spikes per sensor and day
    spike_size: float  # a spike adds +-U(0.5, 1.5) * spike_size
    frozen_per_day: float  # stuck periods per sensor and day
    frozen_minutes: tuple[float, float]  # duration range of a stuck period
    resolution: float  # historian quantisation step


@dataclass(frozen=True)
class SensorConfig:
    """Which sensors exist and how they misbehave."""

    trays: tuple[int, ...] = (3, 8, 13, 21, 28, 34, 39)  # 1-based stages with a thermocouple
    # Thermocouples: 0.05 K noise, 0.1 K drift over days, rare 1.5 K spikes, 0.01 K steps.
    temperature: SensorNoise = field(
        default_factory=lambda: SensorNoise(0.05, 0.1, 48.0, 0.5, 1.5, 0.3, (10.0, 90.0), 0.01)
    )
    # Flow meters: about 0.5 % noise and drift at 1 kmol/min, spikes of 5 %.
    flow: SensorNoise = field(
        default_factory=lambda: SensorNoise(
            0.005, 0.005, 48.0, 0.5, 0.05, 0.3, (10.0, 90.0), 0.0001
        )
    )


@dataclass(frozen=True)
class AnalyzerConfig:
    """The product analyzers (gas chromatographs), reporting mol % light component."""

    period_minutes: float = 10.0  # one sample per GC cycle
    dead_minutes: float = 10.0  # a result appears one cycle after its sample was drawn
    relative_sd: float = 0.02  # repeatability, fraction of the measured impurity
    absolute_sd: float = 0.005  # noise floor, mol %
    missing_share: float = 0.02  # cycles without a result (calibration, faults)
    resolution: float = 0.0001  # reported digits, mol %


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a simulated historian export depends on besides its length and seed."""

    name: str = "column_a"  # dataset name written into the spec
    start: str = "2026-01-01T00:00:00Z"  # time stamp of the first row (UTC)
    sample_minutes: float = 1.0  # historian sample interval; a whole number of seconds
    substeps: int = 4  # ROS2 steps per sample interval (error on x_B ~1e-5 at 4)
    column: ColumnParams = field(default_factory=ColumnParams)  # Skogestad's nominal column
    # Feed rate, kmol/min: +-10 % throughput changes, mostly ramped; 2 % wander over hours.
    feed: Disturbance = field(
        default_factory=lambda: Disturbance(1.0, 0.8, 1.2, 0.02, 4.0, 1.0, 0.1, ramp_share=0.8)
    )
    # Feed composition: upstream blending moves it by up to +-0.02 (strong: see module doc).
    z_feed: Disturbance = field(
        default_factory=lambda: Disturbance(0.5, 0.45, 0.55, 0.006, 8.0, 1.0, 0.015)
    )
    # Feed liquid fraction: preheater swings; a 1 % vapour feed shifts D/F by 0.01.
    q_feed: Disturbance = field(
        default_factory=lambda: Disturbance(1.0, 0.97, 1.02, 0.003, 6.0, 0.5, 0.008)
    )
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    sensors: SensorConfig = field(default_factory=SensorConfig)
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    feature_lags_minutes: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0)  # temperature lags in spec
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)  # chronological train/val/test

    def samples(self, minutes: float, what: str) -> int:
        """``minutes`` as a whole number of sample intervals (refuses fractions)."""
        k = minutes / self.sample_minutes
        if abs(k - round(k)) > 1e-9 or k < 0:
            raise SimulationError(
                f"{what} of {minutes} min is not a whole number of {self.sample_minutes}-min "
                "samples"
            )
        return round(k)

    def validate(self) -> None:
        seconds = self.sample_minutes * 60.0
        if seconds < 1 or abs(seconds - round(seconds)) > 1e-9:
            raise SimulationError("sample_minutes must be a whole number of seconds (>= 1 s)")
        if self.substeps < 1:
            raise SimulationError("substeps must be >= 1")
        if self.samples(self.analyzer.period_minutes, "analyzer period") < 1:
            raise SimulationError("the analyzer period must be at least one sample")
        self.samples(self.analyzer.dead_minutes, "analyzer dead time")
        for lag in self.feature_lags_minutes:
            self.samples(lag, "feature lag")
        n = self.column.n_stages
        if not self.sensors.trays or any(not 1 <= t <= n for t in self.sensors.trays):
            raise SimulationError(f"sensor trays must be stages 1..{n}")
        if len(set(self.sensors.trays)) != len(self.sensors.trays):
            raise SimulationError("sensor trays must be distinct")


# ---------------------------------------------------------------------- column names


def temperature_columns(config: SimulationConfig) -> list[str]:
    """``T03``-style names of the tray thermocouples (1-based stage numbers)."""
    return [f"T{t:02d}" for t in config.sensors.trays]


FLOW_COLUMNS = ("F", "L", "V", "D", "B")
TARGET = "analyzer_xB"
TOP_ANALYZER = "analyzer_xD"
TRUTH = ("true_xB", "true_xD")
DISTURBANCE_TRUTH = ("true_zF", "true_qF")  # unmeasured disturbances, ignored by the spec


# ---------------------------------------------------------------------- random processes


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


def _event_times(rng: np.random.Generator, n: int, per_day: float, dt: float) -> FloatArray:
    """Sorted sample positions of a Poisson process with ``per_day`` events per day."""
    k = int(rng.poisson(per_day * n * dt / _MINUTES_PER_DAY))
    return np.sort(rng.uniform(0.0, n, k))


def disturbance_path(rng: np.random.Generator, d: Disturbance, n: int, dt: float) -> FloatArray:
    """``n`` samples of one disturbance: steps and ramps to new levels plus a slow walk."""
    walk = _ou_walk(rng, n, d.walk_sd, d.walk_hours * 60.0, dt)
    times = _event_times(rng, n, d.events_per_day, dt)
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
    days = n * dt / _MINUTES_PER_DAY
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

    hit = rng.random(n) < s.spikes_per_day * dt / _MINUTES_PER_DAY
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    size = rng.uniform(0.5, 1.5, n) * s.spike_size
    spikes = hit & ~stuck
    reading[spikes] += (sign * size)[spikes]
    return np.round(reading / s.resolution) * s.resolution


# ---------------------------------------------------------------------- the simulation


@dataclass
class _Operator:
    """The operator's current set points (ratios to the feed) and pending actions."""

    cfg: OperatorConfig
    reflux_ratio: float
    boilup_ratio: float

    def clamp(self) -> None:
        lo, hi = self.cfg.reflux_ratio_range
        self.reflux_ratio = min(max(self.reflux_ratio, lo), hi)
        cut_lo, cut_hi = self.cfg.cut_range
        cut = min(max(self.boilup_ratio - self.reflux_ratio, cut_lo), cut_hi)
        self.boilup_ratio = self.reflux_ratio + cut

    def trim(self, xb: float, yd: float) -> None:
        """Move the cut (V/F with L/F fixed, about D/F) when one product is clearly worse.

        Whether to act is judged on log impurities (an operator thinks "three times too
        much"): half the difference of the two log impurities against their targets must
        exceed the deadband. How far to move is a mass balance: shifting the cut by
        ``delta`` moves about ``delta`` kmol of light component per kmol of feed between
        the products, so the move that would put both halfway back is
        ``0.5 * (B/F * excess_B - D/F * excess_D)`` with D/F = B/F = 1/2; the operator
        applies ``gain`` of it. Internal flows (L and V together) hardly change either
        product in an LV column, so they are not the tool for this.
        """
        c = self.cfg
        e_b = math.log(max(xb, 1e-6) / c.target_xb)
        e_d = math.log(max(1.0 - yd, 1e-6) / (1.0 - c.target_yd))
        if abs(0.5 * (e_b - e_d)) <= c.deadband:
            return
        excess_b = xb - c.target_xb
        excess_d = (1.0 - yd) - (1.0 - c.target_yd)
        step = c.gain * 0.25 * (excess_b - excess_d)
        self.boilup_ratio += max(-c.max_trim, min(c.max_trim, step))
        self.clamp()


@dataclass
class SimulationResult:
    """The historian frame plus the noise-free trajectories behind it."""

    frame: pd.DataFrame
    states: FloatArray  # (rows, 82) column state at each row's time
    inputs: FloatArray  # (rows, 5) inputs applied from each row's time: L, V, F, z_F, q_F


def run(
    days: float,
    seed: int,
    config: SimulationConfig | None = None,
    *,
    adjust: Callable[[str, FloatArray], FloatArray] | None = None,
) -> SimulationResult:
    """Simulate ``days`` of operation and return the historian frame (no files written).

    ``adjust(name, path)`` may change a disturbance path ("feed", "z_feed", "q_feed") after
    it is drawn, e.g. to move the operating point at a known time (``training.faults``);
    the random numbers drawn stay the same, so the rest of the run is the unadjusted one's.

    >>> # res = run(1, seed=3); res.frame["true_xB"].describe()
    """
    cfg = config or SimulationConfig()
    cfg.validate()
    dt = cfg.sample_minutes
    n = round(days * _MINUTES_PER_DAY / dt)
    if n < 2:
        raise SimulationError(f"{days} days is fewer than two samples of {dt} min")
    rng = np.random.default_rng(seed)
    model = ColumnModel(cfg.column)
    p = cfg.column
    ns = p.n_stages

    # Everything random is drawn up front in a fixed order, so the operator's feedback
    # (which depends on the simulated column) cannot change which numbers are drawn.
    feed = disturbance_path(rng, cfg.feed, n, dt)
    z_feed = disturbance_path(rng, cfg.z_feed, n, dt)
    q_feed = disturbance_path(rng, cfg.q_feed, n, dt)
    if adjust is not None:
        feed, z_feed, q_feed = (
            adjust(name, path)
            for name, path in (("feed", feed), ("z_feed", z_feed), ("q_feed", q_feed))
        )
    op_cfg = cfg.operator
    move_times = _event_times(rng, n, op_cfg.moves_per_day, dt).astype(np.int64)
    move_internal = rng.random(move_times.size) < op_cfg.internal_share
    move_size = rng.uniform(-1.0, 1.0, move_times.size)
    check_times = _event_times(rng, n, 24.0 / op_cfg.check_hours, dt).astype(np.int64)
    a_cfg = cfg.analyzer
    period = cfg.samples(a_cfg.period_minutes, "analyzer period")
    dead = cfg.samples(a_cfg.dead_minutes, "analyzer dead time")
    cycles = np.arange(0, n, period)
    an_noise = rng.standard_normal((2, cycles.size, 2))  # analyzer, cycle, (relative, abs)
    an_missing = rng.random((2, cycles.size)) < a_cfg.missing_share

    moves: dict[int, list[tuple[bool, float]]] = {}
    for t, internal, size in zip(move_times, move_internal, move_size, strict=True):
        moves.setdefault(int(t), []).append((bool(internal), float(size)))
    checks = set(check_times.tolist()) if op_cfg.corrects else set()

    operator = _Operator(op_cfg, op_cfg.reflux_ratio, op_cfg.boilup_ratio)
    operator.clamp()
    analyzer = np.full((2, n), np.nan)  # reported mol %: bottoms x_B, top y_D
    latest = [op_cfg.target_xb, op_cfg.target_yd]  # last reported values (fractions)

    if op_cfg.feed_filter_minutes > 0:
        w = 1.0 - math.exp(-dt / op_cfg.feed_filter_minutes)  # exact first-order lag
        feed_seen, _ = scipy.signal.lfilter([w], [1.0, w - 1.0], feed, zi=[(1.0 - w) * feed[0]])
    else:
        feed_seen = feed

    def inputs_at(i: int) -> FloatArray:
        scale = feed_seen[i] if op_cfg.feed_ratio else p.feed0
        return np.array(
            [
                operator.reflux_ratio * scale,
                operator.boilup_ratio * scale,
                feed[i],
                z_feed[i],
                q_feed[i],
            ]
        )

    states = np.empty((n, 2 * ns))
    inputs = np.empty((n, 5))
    try:
        z = model.steady_state(inputs_at(0))
    except SteadyStateError as exc:
        raise SimulationError(f"cannot start the simulation: {exc}") from exc
    for i in range(n):
        states[i] = z
        # Analyzer results that appear in the historian now (sample drawn ``dead`` ago).
        drawn = i - dead
        if drawn >= 0 and drawn % period == 0:
            c = drawn // period
            # Each GC measures the minor component of its product (light in the bottoms,
            # heavy in the distillate), so its noise scales with the impurity.
            for a, impurity in enumerate((states[drawn, 0], 1.0 - states[drawn, ns - 1])):
                if an_missing[a, c]:
                    continue
                pct = 100.0 * impurity * (1.0 + a_cfg.relative_sd * an_noise[a, c, 0])
                pct = min(max(pct + a_cfg.absolute_sd * an_noise[a, c, 1], 0.0), 100.0)
                reported = pct if a == 0 else 100.0 - pct
                analyzer[a, i] = round(reported / a_cfg.resolution) * a_cfg.resolution
                latest[a] = analyzer[a, i] / 100.0
        for internal, size in moves.get(i, ()):
            if internal:
                operator.reflux_ratio += size * op_cfg.internal_move
                operator.boilup_ratio += size * op_cfg.internal_move
            else:
                operator.boilup_ratio += size * op_cfg.cut_move
            operator.clamp()
        if i in checks:
            operator.trim(latest[0], latest[1])
        u = inputs_at(i)
        inputs[i] = u
        _check_physical(model, z, u, i * dt)
        if i + 1 < n:
            z = model.advance(z, u, dt, cfg.substeps)

    frame = _historian_frame(rng, cfg, model, states, inputs, analyzer)
    return SimulationResult(frame=frame, states=states, inputs=inputs)


def _check_physical(model: ColumnModel, z: FloatArray, u: FloatArray, minute: float) -> None:
    """Fail loudly, naming the time, if compositions, holdups or flows became unphysical."""
    ns = model.params.n_stages
    flows = model.flows(z, u)
    ok = (
        z[:ns].min() > 0.0
        and z[:ns].max() < 1.0
        and z[ns:].min() > 0.0
        and flows.liquid.min() > 0.0
        and flows.distillate > 0.0
        and flows.bottoms > 0.0
    )
    if not ok:
        raise SimulationError(
            f"the column left its physical range at minute {minute:g} (compositions "
            f"{z[:ns].min():.3g}..{z[:ns].max():.3g}, smallest holdup {z[ns:].min():.3g} kmol, "
            f"D {flows.distillate:.3g}, B {flows.bottoms:.3g}, smallest tray liquid "
            f"{flows.liquid.min():.3g} kmol/min): the disturbances are too large"
        )


def _historian_frame(
    rng: np.random.Generator,
    cfg: SimulationConfig,
    model: ColumnModel,
    states: FloatArray,
    inputs: FloatArray,
    analyzer: FloatArray,
) -> pd.DataFrame:
    """Sensor readings, analyzer reports and truth, one row per sample, time-stamped."""
    dt = cfg.sample_minutes
    n = states.shape[0]
    p = cfg.column
    ns = p.n_stages
    d = p.distillate0 + p.k_distillate * (states[:, 2 * ns - 1] - p.holdup_condenser)
    b = p.bottoms0 + p.k_bottoms * (states[:, ns] - p.holdup_reboiler)

    start = pd.Timestamp(cfg.start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    stamps = pd.date_range(start, periods=n, freq=pd.Timedelta(seconds=round(dt * 60)))
    columns: dict[str, Any] = {"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ")}
    for name, tray in zip(temperature_columns(cfg), cfg.sensors.trays, strict=True):
        true_t = p.temperature(states[:, tray - 1]) - _KELVIN
        columns[name] = sensor_reading(rng, true_t, cfg.sensors.temperature, dt)
    true_flows = (inputs[:, 2], inputs[:, 0], inputs[:, 1], d, b)
    for name, true_f in zip(FLOW_COLUMNS, true_flows, strict=True):
        columns[name] = sensor_reading(rng, np.asarray(true_f), cfg.sensors.flow, dt)
    columns[TARGET] = analyzer[0]
    columns[TOP_ANALYZER] = analyzer[1]
    columns["true_xB"] = np.round(100.0 * states[:, 0], 6)
    columns["true_xD"] = np.round(100.0 * states[:, ns - 1], 6)
    columns["true_zF"] = np.round(inputs[:, 3], 6)
    columns["true_qF"] = np.round(inputs[:, 4], 6)
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------- the spec


def spec_dict(config: SimulationConfig | None = None, fmt: str = "csv") -> dict[str, Any]:
    """The dataset spec for files this configuration produces, as plain YAML-ready data.

    It does not name the file, so one spec serves every file simulated with the same
    configuration, whatever its length or seed.
    """
    cfg = config or SimulationConfig()
    cfg.validate()
    temps = temperature_columns(cfg)
    lags = sorted({cfg.samples(m, "feature lag") for m in cfg.feature_lags_minutes})
    signals: list[dict[str, Any]] = [
        {
            "name": name,
            "unit": "degC",
            "range": [50.0, 100.0],
            "description": f"temperature of stage {tray} (1 = reboiler, counted from the bottom)",
        }
        for name, tray in zip(temps, cfg.sensors.trays, strict=True)
    ]
    flow_text = {
        "F": "feed flow",
        "L": "reflux flow",
        "V": "boilup (vapour from the reboiler)",
        "D": "distillate flow (condenser level controller output)",
        "B": "bottoms flow (reboiler level controller output)",
    }
    signals += [
        {"name": f, "unit": "kmol/min", "range": [0.0, 10.0], "description": flow_text[f]}
        for f in FLOW_COLUMNS
    ]
    dead = cfg.samples(cfg.analyzer.dead_minutes, "analyzer dead time")
    train, validation, test = cfg.split
    return {
        "name": cfg.name,
        "description": (
            "Simulated Skogestad Column A (41 stages, alpha 1.5, LV configuration): light "
            "component in the bottoms from tray temperatures and flows."
        ),
        "source": {
            "format": fmt,
            "timestamp": "timestamp",
            "ignore": [TOP_ANALYZER, *DISTURBANCE_TRUTH],
            "sample_interval_s": float(round(cfg.sample_minutes * 60)),
        },
        "signals": signals,
        "target": {
            "name": TARGET,
            "unit": "mol %",
            "range": [0.0, 100.0],
            "analyzer_delay": dead,
            "stamped_at": "report",
            "truth": TRUTH[0],
            # The bottoms impurity: its log is close to linear in the tray temperatures.
            "transform": "log",
            "description": (
                f"bottoms analyzer (GC): sample every {cfg.analyzer.period_minutes:g} min, "
                f"reported {cfg.analyzer.dead_minutes:g} min later, NaN in between"
            ),
        },
        "features": [{"signal": t, "lags": list(lags)} for t in temps]
        + [{"signal": f, "lags": [0]} for f in FLOW_COLUMNS],
        "split": {"train": train, "validation": validation, "test": test},
        "missing": {"policy": "error"},
        "truth": list(TRUTH),
    }


def dataset_spec(config: SimulationConfig | None = None, fmt: str = "csv") -> DatasetSpec:
    """The validated :class:`DatasetSpec` for this configuration's files."""
    return DatasetSpec.model_validate(spec_dict(config, fmt))


# ---------------------------------------------------------------------- files


def simulate(
    days: float, seed: int, out: Path, *, config: SimulationConfig | None = None
) -> tuple[Path, Path]:
    """Simulate ``days`` of Column A, write the historian file and its spec beside it.

    ``out`` ending in ``.parquet`` gives Parquet, anything else CSV. The spec goes to
    ``out`` with the suffix ``.yaml`` and loads with :func:`training.spec.load_spec`.
    Returns (data path, spec path).

    >>> # data, spec = simulate(7, seed=0, out=Path("column_a.csv"))
    >>> # training.data.load_dataset(training.spec.load_spec(spec), data)
    """
    out = Path(out)
    if out.suffix.lower() in {".yaml", ".yml"}:
        raise SimulationError(f"{out}: the data file cannot be YAML (the spec is written there)")
    fmt = "parquet" if out.suffix.lower() == ".parquet" else "csv"
    cfg = config or SimulationConfig()
    spec = spec_dict(cfg, fmt)
    DatasetSpec.model_validate(spec)  # never write a spec the loader would refuse
    result = run(days, seed, cfg)
    spec_path = out.with_suffix(".yaml")

    if fmt == "parquet":
        buf = io.BytesIO()
        result.frame.to_parquet(buf, index=False)
        payload = buf.getvalue()
    else:
        payload = result.frame.to_csv(index=False, lineterminator="\n").encode("utf-8")

    header = (
        f"# Dataset spec for simulated Column A data (training.simulator, {cfg.name}).\n"
        f"# Written with {out.name}: {days:g} days, seed {seed}; the spec itself does not\n"
        "# depend on the length or seed, only on the simulation configuration.\n"
    )
    text = header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100)
    write_atomic(out, payload)
    write_atomic(spec_path, text)
    return out, spec_path
