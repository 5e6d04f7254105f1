"""Input qualities in the plant replay: the historian's word on its own values, at known times.

A plant's historian does not only send numbers: a transmitter that lost communication comes
through as a digital state ("I/O Timeout", as PI sends it) or as its last number marked
``BadNoCommunication`` (as an OPC UA server sends it), a value the historian doubts comes
marked ``Questionable`` (PI) or ``Uncertain...`` (OPC UA). The replay sends unit A's rows
with such qualities in three periods, after the last injected fault and apart from each
other, so the scorecard can tell how the served status follows the input quality:

- ``bad``: one transmitter's communication fails; the first half of the period its value is
  the digital state, the second half its number marked ``BadNoCommunication``;
- ``uncertain``: another transmitter's values are sent as they are, marked ``Questionable``
  the first half and ``Uncertain_SensorNotAccurate`` the second;
- ``many_bad``: an I/O card drops, five transmitters at once (more than a quarter of the
  model's twelve signals) come as "I/O Timeout".

Every other value goes without a quality (good), as before. What the historian reports
changes only the request, never the data: the truth and the recorded values are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

QualityKind = Literal["bad", "uncertain", "many_bad"]
QUALITY_SETTLE_MINUTES = 60.0  # after a period: the lags reach past it, the trackers recover
DIGITAL_STATE = "I/O Timeout"  # PI's digital state of a transmitter that does not answer
FULL_HOURS = {"bad": 2.0, "uncertain": 2.0, "many_bad": 1.0}  # in the 9-day replay
SIGNALS: dict[QualityKind, tuple[str, ...]] = {
    "bad": ("T03",),
    "uncertain": ("T34",),
    "many_bad": ("T28", "T34", "T39", "L", "D"),  # the top of the column: one I/O card
}
FIRST_SHARE = 0.885  # where the first period begins, as a share of the replay


@dataclass(frozen=True)
class QualityPeriod:
    """``signals`` of unit A sent with ``kind`` quality from ``start_min`` to ``end_min``
    (minutes from the first row, like a :class:`training.faults.Fault`)."""

    kind: QualityKind
    start_min: float
    end_min: float
    signals: tuple[str, ...]

    def covers(self, minute: float) -> bool:
        return self.start_min <= minute < self.end_min

    def mark(self, record: dict[str, Any], minute: float) -> dict[str, Any]:
        """The record as the historian sends it inside this period (a new dict)."""
        first_half = minute < (self.start_min + self.end_min) / 2
        values = dict(record["values"])
        quality = dict(record.get("quality") or {})
        for s in self.signals:
            if self.kind == "uncertain":
                quality[s] = "Questionable" if first_half else "Uncertain_SensorNotAccurate"
            elif self.kind == "many_bad" or first_half:
                values[s] = DIGITAL_STATE
            else:
                quality[s] = "BadNoCommunication"
        return record | {"values": values, "quality": quality}


def quality_schedule(start_min: float, replay_min: float) -> tuple[QualityPeriod, ...]:
    """The three periods, one after another from ``FIRST_SHARE`` of the replay on, each
    followed by ``QUALITY_SETTLE_MINUTES``; durations shrink with a short replay like the
    faults' (``bench.replay.fault_schedule``)."""
    scale = min(1.0, replay_min / (9 * 1440))
    begin = start_min + FIRST_SHARE * replay_min
    periods = []
    for kind in ("bad", "uncertain", "many_bad"):
        end = begin + FULL_HOURS[kind] * 60 * scale
        periods.append(QualityPeriod(kind, begin, end, SIGNALS[kind]))
        begin = end + QUALITY_SETTLE_MINUTES
    if begin > start_min + replay_min:
        raise ValueError(f"the quality periods need until minute {begin:.0f}: replay too short")
    return tuple(periods)


def with_qualities(
    records: Iterator[dict[str, Any]], periods: Sequence[QualityPeriod], start_min: float
) -> Iterator[dict[str, Any]]:
    """The records of one unit from ``start_min`` on (one a minute), marked where a period
    covers them."""
    for k, record in enumerate(records):
        minute = start_min + k
        hit = [p for p in periods if p.covers(minute)]
        for p in hit:
            record = p.mark(record, minute)
        yield record


def period_rows(
    periods: Sequence[QualityPeriod], start_min: float, n: int, settle: bool = False
) -> dict[QualityPeriod, NDArray[np.bool_]]:
    """Per period, the replay rows it covers (with its settling time after it if ``settle``)."""
    minute = np.arange(n) + start_min
    extra = QUALITY_SETTLE_MINUTES if settle else 0.0
    return {p: (minute >= p.start_min) & (minute < p.end_min + extra) for p in periods}
