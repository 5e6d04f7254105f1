"""What a Column A simulation is configured with, and the historian columns it writes.

Every field has the default the test bench runs with; :meth:`SimulationConfig.validate`
refuses an inconsistent configuration before anything is drawn or integrated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from training.column import ColumnParams
from training.errors import SimulationError


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


def temperature_columns(config: SimulationConfig) -> list[str]:
    """``T03``-style names of the tray thermocouples (1-based stage numbers)."""
    return [f"T{t:02d}" for t in config.sensors.trays]


FLOW_COLUMNS = ("F", "L", "V", "D", "B")
TARGET = "analyzer_xB"
TOP_ANALYZER = "analyzer_xD"
TRUTH = ("true_xB", "true_xD")
DISTURBANCE_TRUTH = ("true_zF", "true_qF")  # unmeasured disturbances, ignored by the spec
