"""Dataset specs: what a historian export contains and how to turn it into a training set.

A spec is YAML, validated by pydantic so a typo names the key and the reason. Derived
signals, lags, the analyzer delay and the split all live here, never in code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from service.contracts.card import LabDelay
from service.contracts.features import DerivedSignal, LagFeature
from training.errors import SpecError
from training.source_spec import SourceSpec
from training.target import TargetTransform


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MissingSpec(_Strict):
    """What to do with NaN, inf and out-of-range values.

    ``drop``: rows whose features or target touch a bad sample are left out (lags are never
    taken across a gap). ``ffill``: carry the last good value forward up to ``max_fill``
    samples, then fail. ``error``: any bad value fails the load.
    """

    policy: Literal["drop", "ffill", "error"] = "error"
    max_fill: int = Field(default=0, ge=0)


class SignalSpec(_Strict):
    """A measured signal (a column of the file)."""

    name: str
    unit: str
    range: tuple[float, float]
    description: str = ""
    missing: MissingSpec | None = None  # overrides the spec-wide policy

    @model_validator(mode="after")
    def _check_range(self) -> SignalSpec:
        if not self.range[0] < self.range[1]:
            raise ValueError(f"range of {self.name!r} must be [low, high] with low < high")
        return self


class DerivedSpec(_Strict):
    """A signal computed as ``offset + sum(weight * source)``, e.g. the mean of two sensors."""

    name: str
    unit: str
    range: tuple[float, float]
    combine: dict[str, float]
    offset: float = 0.0
    description: str = ""

    def to_derived(self) -> DerivedSignal:
        return DerivedSignal(self.name, dict(self.combine), self.offset)


class RepeatabilitySpec(_Strict):
    """The analyzer's measurement scatter as one standard deviation: ``relative_sd`` of the
    reading plus ``absolute_sd`` in the target's unit, combined in quadrature (a GC's error
    grows with the impurity it reads, down to a floor)."""

    relative_sd: float = Field(default=0.0, ge=0, lt=1)
    absolute_sd: float = Field(default=0.0, ge=0)


class TargetSpec(_Strict):
    """The quality to estimate and its analyzer."""

    name: str
    unit: str
    range: tuple[float, float]
    # Samples between the process state and the analyzer value appearing in the historian.
    # Lags of the target below this are refused as features: they would not exist online.
    analyzer_delay: int = Field(ge=0)
    # "sample": the value on row t describes the process at t (the file is already aligned,
    # as the debutanizer's is). "report": the value appears on row t, when the analyzer
    # reported it, but was sampled analyzer_delay rows earlier; the loader moves it back so
    # every label describes its own row's time (what a real-time estimate must match).
    stamped_at: Literal["sample", "report"] = "sample"
    # Column with the true value at every row (simulated data only): scored, never trained on.
    truth: str | None = None
    # What the network is fitted to, on the declared range [low, high]: "log" is ln(y - low)
    # (an impurity near its bound: close to linear in tray temperatures), "logit" is
    # ln((y - low) / (high - y)) (a fraction, linear near either end). The inverse is built
    # into the exported graph, so the service still sees engineering units.
    transform: Literal["none", "log", "logit"] = "none"
    description: str = ""
    missing: MissingSpec | None = None
    # The analyzer's own scatter (from its data sheet or repeated samples), so that the
    # prediction interval can promise the true quality rather than the next lab reading.
    repeatability: RepeatabilitySpec | None = None
    # When lab results of this target can be known after their sample, {min_s, max_s} in
    # seconds (the lab's turnaround): the service refuses a result whose delay lies outside.
    lab_delay: LabDelay | None = None

    def target_transform(self) -> TargetTransform:
        return TargetTransform(self.transform, self.range[0], self.range[1])


def expand_lags(value: object) -> object:
    """Lags as a list of ints, a range ``"a..b"`` (both ends included) or ``"a..b:step"``,
    or a list mixing them: a wide candidate set that pruning selects from.

    >>> expand_lags("0..30:10")
    [0, 10, 20, 30]
    >>> expand_lags([0, "4..6"])
    [0, 4, 5, 6]
    """
    items = value if isinstance(value, list) else [value]
    out: list[object] = []
    for item in items:
        if not isinstance(item, str):
            out.append(item)
            continue
        text = item.replace(" ", "")
        span, _, step_text = text.partition(":")
        first, sep, last = span.partition("..")
        try:
            if not sep:
                out.append(int(span))
                continue
            a, b, step = int(first), int(last), int(step_text or 1)
        except ValueError:
            raise ValueError(
                f"lags: {item!r} is not a lag, a range like '0..30' or a stepped range like "
                "'0..30:5'"
            ) from None
        if step < 1 or b < a:
            raise ValueError(f"lags: range {item!r} needs start <= end and a step >= 1")
        out.extend(range(a, b + 1, step))
    return out


class FeatureSpec(_Strict):
    """A signal used as input at the given lags (0 = the row's own time)."""

    signal: str
    # A list, or ranges such as "0..30" or "0..30:5": a wide candidate set is fine, the
    # pruning keeps the lags that matter and the model card lists them.
    lags: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("lags", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        return expand_lags(value)

    @model_validator(mode="after")
    def _unique(self) -> FeatureSpec:
        dupes = sorted({lag for lag in self.lags if self.lags.count(lag) > 1})
        if dupes:
            raise ValueError(f"lags of {self.signal!r} repeat {dupes}")
        return self


class TestWindow(_Strict):
    """The test part given as a window of the file: data rows (1-based, as in error messages)
    or timestamps (the spec's timestamp column), both ends inclusive. An open end runs to
    the first or last row."""

    start: int | datetime | None = None
    end: int | datetime | None = None

    @field_validator("start", "end", mode="after")
    @classmethod
    def _zone(cls, value: int | datetime | None) -> int | datetime | None:
        """A time without a zone is UTC, as the timestamps of a file without zones are."""
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _check(self) -> TestWindow:
        if self.start is None and self.end is None:
            raise ValueError("a test window needs a start, an end, or both")
        kinds = {type(v) is int for v in (self.start, self.end) if v is not None}
        if len(kinds) > 1:
            raise ValueError("start and end must both be rows or both be timestamps")
        if self.start is not None and self.end is not None and not self.start <= self.end:  # type: ignore[operator]
            raise ValueError(f"start ({self.start}) must not be after end ({self.end})")
        for v in (self.start, self.end):
            if isinstance(v, int) and v < 1:
                raise ValueError(f"rows are counted from 1, got {v}")
        return self

    @property
    def by_time(self) -> bool:
        return any(isinstance(v, datetime) for v in (self.start, self.end))


class SplitSpec(_Strict):
    """Chronological split of the assembled rows: counts, or fractions summing to 1.

    The test part is the most recent rows (``test`` a count or fraction), or a window of the
    file (``test: {start: ..., end: ...}`` in rows or timestamps); then ``train`` and
    ``validation`` share the rows before the window, in that order. Counts must add up to
    the rows available; leave ``train`` out to give it whatever the other parts leave.
    """

    train: float | None = Field(default=None, gt=0)
    validation: float = Field(gt=0)
    test: float | TestWindow = Field(default=0.2)

    @model_validator(mode="after")
    def _check_parts(self) -> SplitSpec:
        if isinstance(self.test, float | int) and self.test <= 0:
            raise ValueError("test must be > 0 (a count, a fraction or a window)")
        return self

    def counts(self, n_rows: int) -> tuple[int, int, int]:
        """Rows per part for ``n_rows`` assembled rows (test given as a count or fraction)."""
        if isinstance(self.test, TestWindow):
            raise TypeError("a test window is resolved against the rows' times, not counts")
        if self.validation < 1 and self.test < 1 and (self.train is None or self.train < 1):
            n_val = round(self.validation * n_rows)
            n_test = round(self.test * n_rows)
            n_train = n_rows - n_val - n_test
            if self.train is not None:
                n_train = round(self.train * n_rows)
                n_test = n_rows - n_train - n_val
            return n_train, n_val, n_test
        n_val, n_test = _count(self.validation, n_rows), _count(self.test, n_rows)
        n_train = n_rows - n_val - n_test if self.train is None else _count(self.train, n_rows)
        return n_train, n_val, n_test

    def before_window(self, n_rows: int) -> tuple[int, int]:
        """Train and validation rows among the ``n_rows`` before a test window."""
        n_val = _count(self.validation, n_rows)
        if self.train is None:
            return n_rows - n_val, n_val
        if self.train < 1 and self.validation < 1:
            if abs(self.train + self.validation - 1.0) > 1e-9:
                raise ValueError(
                    f"with a test window, train and validation fractions must add up to 1, "
                    f"got {self.train} + {self.validation}"
                )
            n_train = round(self.train * n_rows)
            return n_train, n_rows - n_train
        return _count(self.train, n_rows), n_val


def _count(part: float, n_rows: int) -> int:
    """A part given as a fraction (< 1) or a count of rows."""
    return round(part * n_rows) if part < 1 else int(part)


class DatasetSpec(_Strict):
    """Everything needed to turn one historian export into train/validation/test matrices."""

    name: str
    description: str = ""
    source: SourceSpec
    signals: list[SignalSpec]
    derived: list[DerivedSpec] = Field(default_factory=list)
    target: TargetSpec
    features: list[FeatureSpec]
    split: SplitSpec
    missing: MissingSpec = Field(default_factory=MissingSpec)
    # Columns kept for evaluation only (e.g. the simulator's true composition); never inputs.
    truth: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_references(self) -> DatasetSpec:
        known = {s.name for s in self.signals} | {self.target.name}
        for d in self.derived:
            unknown = sorted(set(d.combine) - known)
            if unknown:
                raise ValueError(f"derived signal {d.name!r} combines unknown signals {unknown}")
            known.add(d.name)
        names = [s.name for s in self.signals] + [d.name for d in self.derived]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes or self.target.name in names:
            raise ValueError(f"signal names must be unique: {dupes or [self.target.name]}")
        for f in self.features:
            if f.signal not in known:
                raise ValueError(f"feature uses unknown signal {f.signal!r}")
            if any(lag < 0 for lag in f.lags):
                raise ValueError(f"lags of {f.signal!r} must be >= 0")
            # Either stamping: a lag below the delay is refused (for a file stamped at report
            # time the loader would also find no row where such a lag and a label coexist).
            delay = self.target.analyzer_delay
            if f.signal == self.target.name and min(f.lags) < delay:
                raise ValueError(
                    f"target {f.signal!r} used at lag {min(f.lags)}, below its analyzer delay "
                    f"of {delay} samples: that value is not known online; use lags >= {delay}"
                )
        if self.target.truth is not None and self.target.truth not in self.truth:
            raise ValueError(f"target.truth {self.target.truth!r} must be listed under truth")
        return self

    def lag_features(self) -> list[LagFeature]:
        """Model inputs in order, as the feature assembly expects them."""
        return [LagFeature(f.signal, lag) for f in self.features for lag in f.lags]

    def derived_signals(self) -> list[DerivedSignal]:
        return [d.to_derived() for d in self.derived]

    def missing_for(self, column: str) -> MissingSpec:
        """The missing-value policy that applies to one file column."""
        for s in self.signals:
            if s.name == column and s.missing is not None:
                return s.missing
        if column == self.target.name and self.target.missing is not None:
            return self.target.missing
        return self.missing

    def describe(self, signal: str) -> SignalSpec | DerivedSpec | TargetSpec:
        """The declaration of a measured, derived or target signal, by name."""
        declared: list[SignalSpec | DerivedSpec | TargetSpec] = [
            *self.signals,
            *self.derived,
            self.target,
        ]
        for s in declared:
            if s.name == signal:
                return s
        raise KeyError(signal)


def load_spec(path: Path | str) -> DatasetSpec:
    """Read and validate a YAML spec; errors name the file and the offending key."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read spec {p}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"spec {p} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"spec {p} must be a mapping at the top level")
    try:
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise SpecError(f"spec {p} is invalid: {problems}") from exc
