"""Bias update from lab results: the industrial soft sensor's slow correction loop.

The model's estimate drifts from the analyzer as catalyst ages, trays foul or the analyzer
is recalibrated. Plants correct it the way DCS vendors' soft-sensor blocks do: each lab
(or analyzer) result gives a residual ``lab - estimate at the sample time``, a first-order
filter moves a bias toward it, and the served value is ``estimate + bias``. Guards keep a
bad lab value from pulling the estimate away:

- the lab value must lie in the target's valid range (a typo, a wrong unit);
- its sample time must not lie in the future (a clock or time-zone error) nor be older
  than ``max_age_s`` (the process has moved on; often a re-sent old batch);
- it must be newer than the last accepted one (the filter runs forward in time);
- its residual must be plausible, ``|residual| <= max_residual`` (a swapped sample);
- the bias is clipped to ``±max_abs_bias`` so no sequence of results can take over the
  estimate entirely.

A rejected result leaves the state untouched; the caller still gets the residual, to store
it and to feed the drift test. Only the stdlib and the card schema are used.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

from service.contracts.card import ModelCard

if TYPE_CHECKING:
    from service.lab.records import LabRecord

DEFAULT_GAIN = 0.3
DEFAULT_MAX_AGE_S = 86_400.0
DEFAULT_MAX_FUTURE_S = 300.0
BIAS_LIMIT_HALF_WIDTHS = 3.0  # max |bias|, in half-widths of the 95 % validation band
RESIDUAL_LIMIT_EXTRA_HALF_WIDTHS = 2.0  # max |residual| = bias limit + this many half-widths
SIGMA_FLOOR_OF_RANGE = 1e-3  # floor of the residual sigma, as a share of the target range
_PREFERRED_TAIL = 0.025  # the 0.025 / 0.975 quantiles: the 95 % band

# Why a result was rejected (machine-readable: they label a metric and are stored).
OUT_OF_RANGE = "out_of_range"
FUTURE = "future"
LATE = "late"
OUT_OF_ORDER = "out_of_order"
IMPLAUSIBLE = "implausible"


@dataclass(frozen=True)
class BiasConfig:
    """Knobs of the bias filter, all in the target's unit or in seconds.

    ``from_card`` derives the limits from the model's validation residuals, which is what
    an engineer would do by hand: how big may an offset become before it is no longer a
    correction but a different model?
    """

    max_abs_bias: float  # |bias| is clipped to this: the filter corrects, it never takes over
    max_residual: float  # a result with |lab - estimate| above this is implausible (rejected)
    # First-order filter factor per accepted result. 0.3 absorbs 97 % of a constant offset
    # after 10 results (0.7**10 = 0.03) while a single noisy result moves the bias by only
    # 30 % of its error: the usual compromise of DCS soft-sensor bias blocks (0.1 to 0.5).
    gain: float = DEFAULT_GAIN
    # Confidence in the lab source, in [0, 1]: 1 for the on-line analyzer, lower for a
    # manual grab sample; it scales the gain, and 0 turns correction off (results are
    # still checked and reported).
    trust: float = 1.0
    # A result sampled longer ago than this (relative to now) is late: lab turnaround is
    # hours, a day-old result describes a process that has moved on.
    max_age_s: float = DEFAULT_MAX_AGE_S
    # Tolerated clock skew between the lab system and us; later sample times are refused
    # (a local time sent as UTC is the classic cause).
    max_future_s: float = DEFAULT_MAX_FUTURE_S
    low: float | None = None  # target valid range; None: not checked
    high: float | None = None

    def __post_init__(self) -> None:
        _check(math.isfinite(self.max_abs_bias) and self.max_abs_bias >= 0, "max_abs_bias", ">= 0")
        _check(self.max_residual > 0, "max_residual", "> 0")  # inf allowed: no check
        _check(0 < self.gain <= 1, "gain", "in (0, 1]")
        _check(0 <= self.trust <= 1, "trust", "in [0, 1]")
        _check(self.max_age_s > 0, "max_age_s", "> 0")
        _check(self.max_future_s >= 0, "max_future_s", ">= 0")
        if self.low is not None and self.high is not None:
            _check(self.low < self.high, "low", "below high")

    @classmethod
    def from_card(
        cls,
        card: ModelCard,
        *,
        gain: float = DEFAULT_GAIN,
        trust: float = 1.0,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
    ) -> BiasConfig:
        """Limits from the validation residuals and the target's valid range.

        With ``w`` the half-width of the central 95 % band of validation residuals
        (about 2 sigma): ``max_abs_bias = 3 w`` (an offset three times the model's normal
        error is the most a correction may hide), raised to the card's ``bias_clip`` when
        that is higher (the correction must be able to reach the level at which the
        residual alarm says it is doing too much), and ``max_residual =
        max_abs_bias + 2 w`` (a result is plausible while it lies within the normal band
        around the largest bias allowed, so a fully used bias never locks out good results).
        """
        valid = card.target.valid_range
        half_width = NormalDist().inv_cdf(1 - _PREFERRED_TAIL) * residual_sigma(card)
        max_abs_bias = BIAS_LIMIT_HALF_WIDTHS * half_width
        if card.calibration is not None:  # the residual alarm must be reachable
            max_abs_bias = max(max_abs_bias, card.calibration.alarms.bias_clip)
        return cls(
            max_abs_bias=max_abs_bias,
            max_residual=max_abs_bias + RESIDUAL_LIMIT_EXTRA_HALF_WIDTHS * half_width,
            gain=gain,
            trust=trust,
            max_age_s=max_age_s,
            max_future_s=max_future_s,
            low=valid.low,
            high=valid.high,
        )


def _check(ok: bool, field: str, expected: str) -> None:
    if not ok:
        raise ValueError(f"{field} must be {expected}")


def residual_sigma(card: ModelCard) -> float:
    """Standard deviation of the validation residuals, from the card's quantiles.

    Uses the 0.025/0.975 pair if present, else the widest symmetric pair the card holds,
    assuming normal tails: ``sigma = (q_hi - q_lo) / (z_hi - z_lo)``. Floored at 1e-3 of
    the target's range so a perfect validation fit does not freeze the filter at zero.
    Raises ValueError naming ``residual_quantiles`` when no usable pair exists.
    """
    quantiles: dict[float, float] = {}
    for key, value in card.residual_quantiles.items():
        try:
            p = float(key)
        except ValueError:
            continue
        if 0 < p < 1 and math.isfinite(value):
            quantiles[round(p, 9)] = value
    tails = sorted(p for p in quantiles if p < 0.5 and round(1 - p, 9) in quantiles)
    if not tails:
        raise ValueError(
            "residual_quantiles: need a symmetric pair such as 0.025/0.975, "
            f"got keys {sorted(card.residual_quantiles)}"
        )
    p = _PREFERRED_TAIL if _PREFERRED_TAIL in tails else tails[0]
    z = NormalDist().inv_cdf(1 - p)
    sigma = (quantiles[round(1 - p, 9)] - quantiles[p]) / (2 * z)
    valid = card.target.valid_range
    return max(sigma, SIGMA_FLOOR_OF_RANGE * (valid.high - valid.low))


@dataclass(frozen=True)
class BiasUpdate:
    """The outcome of one lab result: whether it moved the bias, and why not if it did not.

    ``reason`` is one of the module's codes (``late``, ``implausible``, ...) or None;
    ``detail`` says it for people. ``residual`` is ``lab - estimate`` (raw estimate, before
    bias), reported even for rejected results. ``bias`` is the bias after the update.
    """

    accepted: bool
    reason: str | None
    residual: float
    bias: float
    detail: str | None = None


class BiasFilter:
    """First-order bias filter with plausibility guards; thread-safe.

    ``new_bias = (1 - k) * bias + k * residual`` with ``k = gain * trust``, then clipped to
    ``±max_abs_bias``. For a constant residual ``r`` the error shrinks geometrically:
    ``bias_n - r = (1 - k)**n * (bias_0 - r)``. The state (bias and the last accepted
    sample time) can be restored after a restart through the constructor.
    """

    def __init__(
        self,
        config: BiasConfig,
        *,
        bias: float = 0.0,
        last_sample_time: float | None = None,
    ) -> None:
        if not math.isfinite(bias):
            raise ValueError(f"bias must be finite, got {bias}")
        self.config = config
        self._bias = self._clip(bias)
        self._last_sample_time = last_sample_time
        self._lock = threading.Lock()

    @property
    def bias(self) -> float:
        """The current correction, added to the raw estimate."""
        return self._bias

    @property
    def last_sample_time(self) -> float | None:
        """Sample time of the last accepted result (POSIX s), None before the first."""
        return self._last_sample_time

    def correct(self, estimate: float) -> float:
        """The bias-corrected estimate."""
        return estimate + self._bias

    def update(
        self, lab_value: float, estimate: float, sample_time: float, now: float
    ) -> BiasUpdate:
        """Check one lab result against the raw ``estimate`` at its ``sample_time``; if it
        passes, move the bias toward its residual. ``now`` is POSIX seconds.

        Non-finite inputs are a caller's mistake and raise ValueError naming the field;
        results that are well-formed but not to be trusted are rejected with a reason.
        """
        with self._lock:
            decision = self._decide(lab_value, estimate, sample_time, now)
            if decision.accepted:
                self._bias = decision.bias
                self._last_sample_time = sample_time
            return decision

    def preview(
        self, lab_value: float, estimate: float, sample_time: float, now: float
    ) -> BiasUpdate:
        """What ``update`` would decide, without changing anything.

        The service stores a result durably first and applies it after, so a crash between
        the two can be repaired by replaying the store.
        """
        with self._lock:
            return self._decide(lab_value, estimate, sample_time, now)

    def _decide(
        self, lab_value: float, estimate: float, sample_time: float, now: float
    ) -> BiasUpdate:
        for field, value in (
            ("lab_value", lab_value),
            ("estimate", estimate),
            ("sample_time", sample_time),
            ("now", now),
        ):
            if not math.isfinite(value):
                raise ValueError(f"{field} must be finite, got {value}")
        residual = lab_value - estimate
        rejection = self._reject(lab_value, residual, sample_time, now)
        if rejection is not None:
            reason, detail = rejection
            return BiasUpdate(False, reason, residual, self._bias, detail)
        k = self.config.gain * self.config.trust
        return BiasUpdate(True, None, residual, self._clip((1 - k) * self._bias + k * residual))

    def reset(self, bias: float = 0.0) -> None:
        """Set the bias (clipped) and forget the last sample time, e.g. after a model switch."""
        if not math.isfinite(bias):
            raise ValueError(f"bias must be finite, got {bias}")
        with self._lock:
            self._bias = self._clip(bias)
            self._last_sample_time = None

    def _clip(self, bias: float) -> float:
        limit = self.config.max_abs_bias
        return min(max(bias, -limit), limit)

    def _reject(
        self, lab_value: float, residual: float, sample_time: float, now: float
    ) -> tuple[str, str] | None:
        """The first guard the result fails, as (reason, detail), or None if it passes."""
        c = self.config
        if (c.low is not None and lab_value < c.low) or (c.high is not None and lab_value > c.high):
            return OUT_OF_RANGE, f"lab value {lab_value:g} outside valid range [{c.low}, {c.high}]"
        if sample_time - now > c.max_future_s:
            return FUTURE, f"sample time {sample_time - now:.0f} s in the future"
        if now - sample_time > c.max_age_s:
            return LATE, f"sampled {now - sample_time:.0f} s ago, limit {c.max_age_s:.0f} s"
        if self._last_sample_time is not None and sample_time <= self._last_sample_time:
            return OUT_OF_ORDER, (
                f"sample time {sample_time} not after the last accepted {self._last_sample_time}"
            )
        if abs(residual) > c.max_residual:
            return IMPLAUSIBLE, f"|residual| {abs(residual):g} above limit {c.max_residual:g}"
        return None


def replay(
    bias: BiasFilter,
    records: Iterable[LabRecord],
    each: Callable[[LabRecord], None] | None = None,
) -> BiasFilter:
    """Run a stream's stored results (oldest sample first) through ``bias`` again: the
    accepted ones move it as they did when they arrived, each judged at its own sample time
    (so none is late now). ``each`` sees every record after the bias moved for it.

    A restart, another replica and a void all rebuild a stream's bias this way, so the same
    stored results always give the same bias; a voided result is no longer among them.
    """
    for r in records:
        if r.accepted and r.estimate is not None:
            bias.update(r.value, r.estimate, r.sample_time, r.sample_time)
        if each is not None:
            each(r)
    return bias


def replay_bias(config: BiasConfig, records: Iterable[LabRecord]) -> BiasFilter:
    """A fresh filter with ``records`` replayed (see :func:`replay`)."""
    return replay(BiasFilter(config), records)
