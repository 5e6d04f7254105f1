"""Time on the data's own clock: what a stream's samples say it is, not the wall clock.

A replay, or a historian back-filling after an outage, sends rows and lab results stamped
hours or days in the past. Judged against the wall clock every such lab result would be
"late"; judged against the stream's latest data time it is what it was in live operation.
The wall clock still bounds the future: no sensor reads tomorrow, and one row dated 9999
must not become a stream's clock (every later real row would be "older" and refused).

The rules, with their settings (``service.settings``):

- a predict row later than the wall clock by more than ``predict_max_future_s`` is refused;
- a predict row more than ``stream_max_jump_s`` after its stream's latest data time is
  refused, unless it is live (within that of the wall clock): a stream that comes back
  after an outage starts again, a typo in a replay's date does not hijack it;
- a lab result sampled more than ``lab_max_future_s`` after its stream's latest data time
  (or after the wall clock) is refused: it describes a sample not yet taken;
- a lab result sampled more than ``lab_max_age_s`` before its stream's latest data time is
  stored but does not move the bias (``late``: the process has moved on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from service.api.schemas import Stamp
from service.contracts.arrays import FloatArray
from service.contracts.errors import BadInputError


def to_posix(stamp: Stamp) -> float:
    """POSIX seconds from an ISO datetime (naive = UTC) or a number."""
    if isinstance(stamp, datetime):
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    return float(stamp)


def from_posix(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _iso(t: float) -> str:
    try:
        return from_posix(t).isoformat()
    except (OverflowError, OSError, ValueError):
        return f"{t:.0f} s"


MAX_OFFSET_HOURS = 14  # the largest UTC offset in use (UTC+14, Kiribati)
OFFSET_SLACK_S = 900.0  # data a quarter of an hour old still reads as whole hours ahead


def _unit_hint(t: float, now: float) -> str:
    """Historians that send epoch numbers often send milliseconds (IP.21, Kepware) or
    nanoseconds (InfluxDB); a number that is one of those for a time near now says so."""
    for unit, scale in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
        if abs(t / scale - now) < 10 * 365 * 86400:
            return f"; it reads as {unit} since 1970: a number here is POSIX seconds"
    return _offset_hint(t - now)


def _offset_hint(ahead: float) -> str:
    """A time whole hours ahead (as far as UTC offsets go, give or take the data's own age)
    is usually a plant's local time sent without its offset, which reads as UTC."""
    hours = round(ahead / 3600)
    if not 1 <= hours <= MAX_OFFSET_HOURS or abs(ahead - 3600 * hours) > OFFSET_SLACK_S:
        return ""
    return (
        f"; it is {hours} h ahead: a local time sent without its UTC offset? A time without "
        "one is read as UTC: send it with its offset ('+01:00') or in UTC ('Z')"
    )


@dataclass(frozen=True)
class TimeRules:
    """How far from the stream's clock and the wall clock a time may lie (seconds)."""

    predict_max_future_s: float
    stream_max_jump_s: float
    lab_max_future_s: float

    def check_rows(self, times: FloatArray, clock: float, now: float, field: str) -> None:
        """Refuse a request whose rows lie in the future or too far past the stream's clock.

        ``field(i)`` names row ``i``'s timestamp in the error; ``clock`` is the stream's
        latest data time (``-inf`` for none). The rows are in time order already.
        """
        last = float(times[-1])
        if last > now + self.predict_max_future_s:
            i = int(np.argmax(times > now + self.predict_max_future_s))
            raise BadInputError(
                f"{field.format(i=i)}: {_iso(float(times[i]))} lies "
                f"{float(times[i]) - now:.0f} s in the future of the service's clock "
                f"(limit {self.predict_max_future_s:g} s, SOFTSENSOR_PREDICT_MAX_FUTURE_S)"
                + _unit_hint(float(times[i]), now)
            )
        first = float(times[0])
        if math.isfinite(clock) and first - clock > self.stream_max_jump_s:
            live = now - first <= self.stream_max_jump_s
            if not live:
                raise BadInputError(
                    f"{field.format(i=0)}: {_iso(first)} lies {first - clock:.0f} s after the "
                    f"stream's latest data time {_iso(clock)} (limit {self.stream_max_jump_s:g} s, "
                    "SOFTSENSOR_STREAM_MAX_JUMP_S); a date typo would become the stream's clock"
                )

    def check_lab(self, sample_time: float, clock: float, now: float, field: str) -> None:
        """Refuse a lab result sampled after its stream's clock (or the wall clock)."""
        reference, what = (
            (clock, "the stream's latest data time")
            if math.isfinite(clock)
            else (now, "the service's clock")
        )
        ahead = sample_time - min(reference, now)
        if ahead > self.lab_max_future_s:
            raise BadInputError(
                f"{field}: {_iso(sample_time)} lies {ahead:.0f} s after {what} "
                f"{_iso(min(reference, now))} (limit {self.lab_max_future_s:g} s, "
                "SOFTSENSOR_LAB_MAX_FUTURE_S): a result for a sample not yet taken"
            )
