"""The model card: everything the service needs to trust, check and explain a model.

Training writes it beside ``model.onnx``; the service validates it on load. One pydantic
model owns the contract so the two sides cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.contracts.features import DerivedSignal, LagFeature

CARD_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    """Unknown keys are refused: a typo in a card is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ValidRange(_Strict):
    """Physically plausible values of a signal, in its engineering unit."""

    low: float
    high: float

    @model_validator(mode="after")
    def _check_order(self) -> ValidRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class SignalCard(_Strict):
    """A signal the historian sends (or one derived from those)."""

    name: str
    unit: str
    valid_range: ValidRange
    description: str = ""
    derived_from: dict[str, float] | None = None  # weights, when derived
    derived_offset: float = 0.0
    # False when pruning removed every input that needs it: historians may still send it.
    used: bool = True

    def to_derived(self) -> DerivedSignal | None:
        """The plain dataclass the feature assembly uses, for derived signals."""
        if self.derived_from is None:
            return None
        return DerivedSignal(self.name, dict(self.derived_from), self.derived_offset)


class FeatureCard(_Strict):
    """One model input, in the order of the ONNX input's columns."""

    name: str
    signal: str
    lag: int = Field(ge=0)
    unit: str
    valid_range: ValidRange

    def to_lag_feature(self) -> LagFeature:
        """The plain dataclass the feature assembly uses."""
        return LagFeature(self.signal, self.lag)


class LabDelay(_Strict):
    """How long after its sample a lab or analyzer result can be known, in seconds: the
    window a DCS lab entry checks each entry's delay (result time - sample time) against.
    A result outside it is a wrong sample time or a wrong result time, and is refused."""

    min_s: float = Field(ge=0)
    max_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _check_order(self) -> LabDelay:
        if not self.min_s < self.max_s:
            raise ValueError(f"min_s ({self.min_s}) must be below max_s ({self.max_s})")
        return self


class TargetCard(_Strict):
    """The quality estimated, and how late the analyzer that measures it reports."""

    name: str
    unit: str
    valid_range: ValidRange
    analyzer_delay_samples: int = Field(ge=0)
    sample_interval_s: float | None = Field(default=None, gt=0)
    # What the network was fitted to ("log": ln(y - low), "logit": ln((y - low) / (high - y))
    # on valid_range). The graph inverts it: the model's output is in ``unit`` regardless.
    transform: Literal["none", "log", "logit"] = "none"
    # The lab's turnaround window; None: the service's defaults (SOFTSENSOR_LAB_*_DELAY_S).
    lab_delay: LabDelay | None = None


class DataSummary(_Strict):
    """Where the training data came from and how it was split."""

    source: str
    sha256: str
    rows_read: int
    rows_used: int
    rows_train: int
    rows_validation: int
    rows_test: int
    first_time: str | None = None
    last_time: str | None = None
    noise_sigma: float = 0.0
    values_out_of_range: int = 0
    values_filled: int = 0
    # Analyzer values outside the target's declared range, left out as labels (warned).
    target_out_of_range: int = 0


class ReferenceStats(_Strict):
    """A feature's (or the prediction's) distribution on the training split, for drift."""

    name: str
    bin_edges: list[float]
    counts: list[int]
    mean: float
    std: float
    min: float
    max: float

    @model_validator(mode="after")
    def _check_bins(self) -> ReferenceStats:
        if len(self.bin_edges) != len(self.counts) + 1:
            raise ValueError("bin_edges must have one more entry than counts")
        if any(b >= a for a, b in zip(self.bin_edges[1:], self.bin_edges[:-1], strict=False)):
            raise ValueError("bin_edges must increase strictly")
        return self


class RegressionMetrics(_Strict):
    """Error of the estimate against the analyzer on one split."""

    rmse: float
    mae: float
    r2: float
    rows: int


class PruningReport(_Strict):
    """What pruning did, with every knob it ran with, so a run can be repeated."""

    method: str
    config: dict[str, Any]
    pruning_rate: float = Field(ge=0, le=1)
    pruning_rate_per_layer: list[float]
    neurons_removed: list[int]
    inputs_removed: list[str]
    params_before: int
    params_after: int


class BaselineCard(_Strict):
    """A simple alternative scored on the same features and split as the model."""

    description: str
    alpha: float | None = None  # ridge: the penalty chosen on validation
    feature: str | None = None  # persistence: the lagged analyzer value it repeats
    metrics: dict[Literal["validation", "test"], RegressionMetrics]


class LagSelection(_Strict):
    """The lags of one signal offered to the network, and those pruning kept."""

    candidates: list[int]
    kept: list[int]


class EnsembleCard(_Strict):
    """Networks trained from different seeds, averaged inside the one ONNX graph."""

    members: int = Field(ge=1)
    seeds: list[int]
    pruning_rate: list[float]  # per member
    ended_linear: list[bool]  # per member: nothing beat its starting ridge solution


class IntervalCalibration(_Strict):
    """Split conformal prediction interval of the bias-corrected estimate.

    On the validation split, the service's bias filter is replayed over the analyzer results
    as they would have arrived (each one ``analyzer_delay_samples`` after its sample), and each
    result gives a score ``(lab - corrected) / scale(corrected)`` with
    ``scale(c) = max(|c|, scale_floor) ** scale_power``. The interval served is
    ``corrected + [low, high] * scale(corrected)``, ``low`` and ``high`` being the scores'
    finite-sample-corrected quantiles for ``coverage``. The scale lets the width follow the
    estimate's level (impurity errors grow with the impurity); its power is fitted on the
    training split, never on the rows the quantiles come from.
    """

    method: Literal["split_conformal"] = "split_conformal"
    coverage: float = Field(gt=0, lt=1)
    low: float
    high: float
    scale_power: float = Field(ge=0, le=1)
    scale_floor: float = Field(gt=0)
    bias_gain: float = Field(gt=0, le=1)  # the bias filter's gain in the replay
    results: int = Field(ge=1)  # validation results the quantiles come from
    validation_coverage: float  # share of those lab results inside their interval
    # What the interval promises to cover: "truth" when the spec declared the analyzer's
    # repeatability and the scores were narrowed by its share (``analyzer_share`` of their
    # variance), "analyzer" (the next lab reading, a wider promise) when it did not.
    covers: Literal["truth", "analyzer"] = "analyzer"
    analyzer_share: float = Field(default=0.0, ge=0, le=1)


class InputPCA(_Strict):
    """PCA of the model's input signals on the training split: Hotelling T2 and SPE (Q).

    One column per input signal, at the smallest lag the model uses it (``features``), so
    lagged copies do not outweigh the signals. ``components`` are the ``k`` loadings (rows)
    on the standardized columns, ``variances`` their eigenvalues. The limits are the 99 %
    quantiles of T2 and SPE on the validation split (held out), not distribution formulas:
    process rows are neither normal nor independent. ``residual_sd`` is each column's SPE
    residual spread on validation (its unit), which the sensor-drift detector divides by.
    """

    features: list[str]
    signals: list[str]
    mean: list[float]
    scale: list[float]
    components: list[list[float]]
    variances: list[float]
    explained: float = Field(gt=0, le=1)
    limit_quantile: float = Field(gt=0, lt=1)
    t2_limit: float = Field(gt=0)
    spe_limit: float = Field(ge=0)
    residual_sd: list[float]

    @model_validator(mode="after")
    def _check_shapes(self) -> InputPCA:
        m = len(self.features)
        if not (len(self.signals) == len(self.mean) == len(self.scale) == m):
            raise ValueError("features, signals, mean and scale must have one entry per column")
        if len(self.residual_sd) != m or any(len(c) != m for c in self.components):
            raise ValueError("components and residual_sd must have one entry per column")
        if not 1 <= len(self.components) == len(self.variances) <= m:
            raise ValueError("need 1..columns components, one variance each")
        if min(self.scale) <= 0 or min(self.variances) <= 0:
            raise ValueError("scales and variances must be positive")
        return self


class TrainingRange(_Strict):
    """Per feature (card order), the range of the data the model was built from: its training
    file's rows, widened by ``margin`` of the span on each side."""

    margin: float = Field(ge=0)
    low: list[float]
    high: list[float]


class AlarmCalibration(_Strict):
    """Windows and thresholds of the alarms, chosen on held-out normal operation.

    Every threshold is ``margin`` times the largest value its statistic reached on the
    validation split (or a floor from theory where that is larger), so held-out normal
    operation stays quiet with room to spare.
    """

    margin: float = Field(ge=1)
    # Frozen: the longest stretch each raw signal stayed exactly unchanged in the training
    # file, in samples; a sensor is frozen only after well beyond that (and the setting).
    frozen_normal_samples: dict[str, int]
    # Sensor drift: per PCA column, EWMA over ``sensor_drift_fast_samples`` minus EWMA over
    # ``sensor_drift_slow_samples`` of its standardized SPE residual; alarm above the limit.
    # None: the validation split was shorter than the slow window, too short to calibrate.
    sensor_drift_fast_samples: float = Field(gt=0)
    sensor_drift_slow_samples: float = Field(gt=0)
    sensor_drift_limit: list[float] | None
    # Inputs outside the training range for more than this many consecutive rows: drift.
    outside_training_samples: int = Field(ge=1)
    # Residual: the bias filter replayed over the validation results; the residual alarm is
    # on while |bias| exceeds ``bias_alarm`` times the interval's scale at the corrected
    # estimate (errors grow with the level; see IntervalCalibration): a correction normal
    # operation never needed. ``bias_clip`` (target unit) is the largest |bias| the filter
    # may reach, above the alarm level at high estimates. ``innovation_sd``: spread of
    # lab - corrected estimate there.
    innovation_sd: float = Field(gt=0)
    bias_alarm: float = Field(gt=0)
    bias_clip: float = Field(gt=0)
    # Analyzer silent: no new result for this long (data time) after the last sample.
    lab_silent_after_s: float | None = Field(default=None, gt=0)


class SensorRedundancy(_Strict):
    """Each input signal predicted from the others (analytical redundancy), for sensor drift.

    On the standardized signals ``z = (x - mean) / scale`` and their EWMA over
    ``smooth_samples`` rows (``s``: it averages the other sensors' noise away, while the
    column moves slower than that), signal ``j`` is predicted as ``([z, s] @ weights)[j]``
    (rows ``j`` and ``m + j`` are 0: a sensor never predicts itself); the weights are fitted
    on the training split with each signal's slow wander removed. The service follows each
    residual's baseline (an EWMA over ``baseline_samples``: a healthy sensor wanders over
    days), standardizes the departure by ``residual_sd``, clips it at ``clip_sd`` (a spike
    is one sample, not a drift) and averages it over ``fast_samples``: the signal drifts
    once that average has exceeded ``limit`` (in residual spreads) for ``on_delay_samples``
    rows in a row, and until it falls below ``release`` of it. Each ``limit`` comes from
    the validation split (held-out normal operation): the tail of the statistic's peaks
    there, extrapolated to
    ``false_alarms_per_week`` per stream over all signals, and at least ``margin`` times
    the highest value seen. ``validation_onsets`` counts the alarms over the
    ``validation_samples`` rows.
    """

    signals: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[list[float]]  # [2m][m]: column j predicts signal j
    smooth_samples: float = Field(gt=0)
    baseline_samples: float = Field(gt=0)
    fast_samples: float = Field(gt=0)
    clip_sd: float = Field(gt=0)
    residual_sd: list[float]  # standardized units
    limit: list[float]
    release: float = Field(gt=0, le=1)
    on_delay_samples: int = Field(default=1, ge=1)
    margin: float = Field(ge=1)
    false_alarms_per_week: float = Field(gt=0)
    validation_samples: int = Field(ge=0)
    validation_onsets: int = Field(ge=0)

    @model_validator(mode="after")
    def _check_shapes(self) -> SensorRedundancy:
        m = len(self.signals)
        sizes = {len(self.mean), len(self.scale), len(self.residual_sd), len(self.limit)}
        if m < 2 or sizes != {m} or len(self.weights) != 2 * m:
            raise ValueError("need two or more signals, and one mean, scale, sd, limit each")
        own = any(self.weights[j][j] or self.weights[m + j][j] for j in range(m))
        if any(len(w) != m for w in self.weights) or own:
            raise ValueError("weights must be [2m][m], zero where a signal would predict itself")
        if min(self.scale) <= 0 or min(self.residual_sd) <= 0 or min(self.limit) <= 0:
            raise ValueError("scales, residual spreads and limits must be positive")
        return self


class Calibration(_Strict):
    """What the served number promises, computed from the exported model's own estimates."""

    interval: IntervalCalibration
    inputs: InputPCA
    training_range: TrainingRange
    alarms: AlarmCalibration
    # Per-sensor redundancy residuals (drift of one transmitter); absent in older cards,
    # which then go without that detector.
    redundancy: SensorRedundancy | None = None


class ModelCard(_Strict):
    """Everything known about one model version."""

    schema_version: Literal[1] = 1  # CARD_SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    created: datetime
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    onnx_bytes: int = Field(gt=0)
    dense_onnx_bytes: int = Field(gt=0)
    signals: list[SignalCard]
    features: list[FeatureCard]
    target: TargetCard
    data: DataSummary
    reference: list[ReferenceStats]
    prediction_reference: ReferenceStats
    metrics: dict[Literal["train", "validation", "test"], RegressionMetrics]
    pruning: PruningReport
    residual_quantiles: dict[str, float]
    training: dict[str, Any]
    # Linear baselines fitted on the same features and split (ridge, persistence): what the
    # model must beat to be worth serving.
    baseline: dict[str, BaselineCard] = Field(default_factory=dict)
    # Per signal, the lags offered and the lags the pruned model still reads.
    lag_selection: dict[str, LagSelection] = Field(default_factory=dict)
    ensemble: EnsembleCard | None = None
    # Calibrated interval, input validity (T2/SPE, training range) and alarm thresholds;
    # absent in cards written before they existed (the service then falls back).
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelCard:
        known = {s.name for s in self.signals}
        for f in self.features:
            if f.signal not in known and f.signal != self.target.name:
                raise ValueError(f"feature {f.name!r} uses unknown signal {f.signal!r}")
        if [r.name for r in self.reference] != [f.name for f in self.features]:
            raise ValueError("reference statistics must list the features in order")
        if self.calibration is not None:
            names = [f.name for f in self.features]
            r = self.calibration.training_range
            if not len(r.low) == len(r.high) == len(names):
                raise ValueError("calibration.training_range: one low and high per feature")
            if any(f not in names for f in self.calibration.inputs.features):
                raise ValueError("calibration.inputs.features must be features of the card")
            limits = self.calibration.alarms.sensor_drift_limit
            if limits is not None and len(limits) != len(self.calibration.inputs.features):
                raise ValueError("calibration.alarms.sensor_drift_limit: one per PCA column")
        return self
