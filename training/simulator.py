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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.signal
import yaml
from numpy.typing import NDArray

from service.contracts.arrays import FloatArray
from service.contracts.atomic import write_atomic
from training.column import ColumnModel, SteadyStateError
from training.column_operator import Operator
from training.errors import SimulationError
from training.random_processes import MINUTES_PER_DAY, disturbance_path, event_times, sensor_reading
from training.simulation_config import (
    DISTURBANCE_TRUTH,
    FLOW_COLUMNS,
    TARGET,
    TOP_ANALYZER,
    TRUTH,
    AnalyzerConfig,
    Disturbance,
    OperatorConfig,
    SensorConfig,
    SensorNoise,
    SimulationConfig,
    temperature_columns,
)
from training.simulation_spec import dataset_spec, spec_dict
from training.spec import DatasetSpec

__all__ = [  # the configuration and the spec live in their modules; importable from here too
    "DISTURBANCE_TRUTH",
    "FLOW_COLUMNS",
    "TARGET",
    "TOP_ANALYZER",
    "TRUTH",
    "AnalyzerConfig",
    "Disturbance",
    "OperatorConfig",
    "SensorConfig",
    "SensorNoise",
    "SimulationConfig",
    "SimulationResult",
    "dataset_spec",
    "disturbance_path",
    "run",
    "sensor_reading",
    "simulate",
    "spec_dict",
    "temperature_columns",
]

_KELVIN = 273.15


# ---------------------------------------------------------------------- the simulation


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
    n = round(days * MINUTES_PER_DAY / dt)
    if n < 2:
        raise SimulationError(f"{days} days is fewer than two samples of {dt} min")
    rng = np.random.default_rng(seed)
    model = ColumnModel(cfg.column)
    draws = _draw(rng, cfg, n, adjust)
    states, inputs, analyzer = _integrate(model, cfg, draws, n)
    frame = _historian_frame(rng, cfg, model, states, inputs, analyzer)
    return SimulationResult(frame=frame, states=states, inputs=inputs)


@dataclass
class _Draws:
    """Everything random a run needs before the sensors, drawn up front in a fixed order so
    that the operator's feedback (which depends on the simulated column) cannot change
    which numbers are drawn."""

    feed: FloatArray
    z_feed: FloatArray
    q_feed: FloatArray
    moves: dict[int, list[tuple[bool, float]]]  # sample -> (internal?, size) set-point moves
    checks: set[int]  # samples at which the operator looks at the analyzers
    an_noise: FloatArray  # analyzer, cycle, (relative, absolute)
    an_missing: NDArray[np.bool_]  # analyzer, cycle


def _draw(
    rng: np.random.Generator,
    cfg: SimulationConfig,
    n: int,
    adjust: Callable[[str, FloatArray], FloatArray] | None,
) -> _Draws:
    dt = cfg.sample_minutes
    feed = disturbance_path(rng, cfg.feed, n, dt)
    z_feed = disturbance_path(rng, cfg.z_feed, n, dt)
    q_feed = disturbance_path(rng, cfg.q_feed, n, dt)
    if adjust is not None:
        feed, z_feed, q_feed = (
            adjust(name, path)
            for name, path in (("feed", feed), ("z_feed", z_feed), ("q_feed", q_feed))
        )
    op_cfg = cfg.operator
    move_times = event_times(rng, n, op_cfg.moves_per_day, dt).astype(np.int64)
    move_internal = rng.random(move_times.size) < op_cfg.internal_share
    move_size = rng.uniform(-1.0, 1.0, move_times.size)
    check_times = event_times(rng, n, 24.0 / op_cfg.check_hours, dt).astype(np.int64)
    cycles = np.arange(0, n, cfg.samples(cfg.analyzer.period_minutes, "analyzer period"))
    an_noise = rng.standard_normal((2, cycles.size, 2))
    an_missing = rng.random((2, cycles.size)) < cfg.analyzer.missing_share
    moves: dict[int, list[tuple[bool, float]]] = {}
    for t, internal, size in zip(move_times, move_internal, move_size, strict=True):
        moves.setdefault(int(t), []).append((bool(internal), float(size)))
    checks = set(check_times.tolist()) if op_cfg.corrects else set()
    return _Draws(feed, z_feed, q_feed, moves, checks, an_noise, an_missing)


@dataclass
class _Analyzers:
    """The two gas chromatographs: a sample every ``period`` rows, reported ``dead`` rows
    later (mol %); ``latest`` holds the last reported values as fractions."""

    cfg: AnalyzerConfig
    period: int
    dead: int
    draws: _Draws
    reported: FloatArray  # (2, n): bottoms x_B, top y_D; NaN between reports
    latest: list[float]

    def report(self, i: int, states: FloatArray, ns: int) -> None:
        """Results that appear in the historian at row ``i`` (sample drawn ``dead`` ago)."""
        drawn = i - self.dead
        if drawn < 0 or drawn % self.period != 0:
            return
        c, a_cfg = drawn // self.period, self.cfg
        # Each GC measures the minor component of its product (light in the bottoms,
        # heavy in the distillate), so its noise scales with the impurity.
        for a, impurity in enumerate((states[drawn, 0], 1.0 - states[drawn, ns - 1])):
            if self.draws.an_missing[a, c]:
                continue
            noise = self.draws.an_noise[a, c]
            pct = 100.0 * impurity * (1.0 + a_cfg.relative_sd * noise[0])
            pct = min(max(pct + a_cfg.absolute_sd * noise[1], 0.0), 100.0)
            reported = pct if a == 0 else 100.0 - pct
            self.reported[a, i] = round(reported / a_cfg.resolution) * a_cfg.resolution
            self.latest[a] = self.reported[a, i] / 100.0


def _feed_seen(feed: FloatArray, op_cfg: OperatorConfig, dt: float) -> FloatArray:
    """The feed rate the ratio controllers act on: filtered, or the measurement itself."""
    if op_cfg.feed_filter_minutes <= 0:
        return feed
    w = 1.0 - math.exp(-dt / op_cfg.feed_filter_minutes)  # exact first-order lag
    seen, _ = scipy.signal.lfilter([w], [1.0, w - 1.0], feed, zi=[(1.0 - w) * feed[0]])
    return np.asarray(seen, dtype=np.float64)


def _integrate(
    model: ColumnModel, cfg: SimulationConfig, draws: _Draws, n: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Step the column row by row under the operator; (states, inputs, analyzer reports)."""
    dt, op_cfg, p = cfg.sample_minutes, cfg.operator, cfg.column
    ns = p.n_stages
    operator = Operator(op_cfg, op_cfg.reflux_ratio, op_cfg.boilup_ratio)
    operator.clamp()
    analyzers = _Analyzers(
        cfg.analyzer,
        cfg.samples(cfg.analyzer.period_minutes, "analyzer period"),
        cfg.samples(cfg.analyzer.dead_minutes, "analyzer dead time"),
        draws,
        np.full((2, n), np.nan),
        [op_cfg.target_xb, op_cfg.target_yd],
    )
    feed_seen = _feed_seen(draws.feed, op_cfg, dt)

    def inputs_at(i: int) -> FloatArray:
        scale = feed_seen[i] if op_cfg.feed_ratio else p.feed0
        ratios = (operator.reflux_ratio * scale, operator.boilup_ratio * scale)
        return np.array([*ratios, draws.feed[i], draws.z_feed[i], draws.q_feed[i]])

    states, inputs = np.empty((n, 2 * ns)), np.empty((n, 5))
    try:
        z = model.steady_state(inputs_at(0))
    except SteadyStateError as exc:
        raise SimulationError(f"cannot start the simulation: {exc}") from exc
    for i in range(n):
        states[i] = z
        analyzers.report(i, states, ns)
        for internal, size in draws.moves.get(i, ()):
            operator.move(internal, size)
        if i in draws.checks:
            operator.trim(analyzers.latest[0], analyzers.latest[1])
        u = inputs_at(i)
        inputs[i] = u
        _check_physical(model, z, u, i * dt)
        if i + 1 < n:
            z = model.advance(z, u, dt, cfg.substeps)
    return states, inputs, analyzers.reported


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
