"""Reading a historian export's time column, whichever way round its dates are written.

ISO 8601 (``2026-01-04T00:00:00Z``) says what it means. ``04.01.2026 00:00`` does not: most
of Europe writes the day first, the US the month first, and pandas reads the month first
wherever the day is 12 or less, so a German export of the first twelve days of a month
reads as twelve months, in order, and nothing complains. The spec may say which
(``source.dayfirst``); otherwise the file does: of the two readings, the one under which
its times run forward. When both do and they differ (a file within one day, or the first
twelve days of a month), the load stops and asks, since the dates then cannot be known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from service.contracts.errors import SoftSensorError

ISO = r"^\s*\d{4}-\d{1,2}-\d{1,2}"  # year first: never read day first (pandas would)


OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})\s*$"  # a time that says its offset ("...:00Z", "+01:00")
SUMMER_STEP_S = 3600  # the step back a local-time export makes when summer time ends


class AmbiguousDatesError(SoftSensorError):
    """Both readings of the dates run forward and they differ: the spec must say. The
    loader turns it into a ``DataError`` naming the file and the column."""


class LocalTimeError(SoftSensorError):
    """A local time the spec's time zone skips (spring forward), or a repeated hour (fall
    back) whose order does not tell which pass a row is: the loader names the column."""


def _read(text: pd.Series, iso: pd.Series, dayfirst: bool, zone: str | None = None) -> pd.Series:
    """``text`` as UTC times: the ISO cells (``iso``) as they say, the others ``dayfirst``;
    a time without an offset is UTC, or with ``zone`` local time there."""
    utc = zone is None
    out = pd.to_datetime(text.where(iso), errors="coerce", utc=utc, format="mixed")
    if not iso.all():
        other = pd.to_datetime(
            text.where(~iso), errors="coerce", utc=utc, format="mixed", dayfirst=dayfirst
        )
        out = out.where(iso, other)
    return out if zone is None else _localized(text, out, zone)


def _localized(text: pd.Series, naive: pd.Series, zone: str) -> pd.Series:
    """Local times of ``zone`` as UTC. The hour a change from summer time repeats is read
    in file order (its first pass in summer time); a cell with its own offset says what
    it means. Raises :class:`LocalTimeError` for an hour the zone skips, or a repeated one
    whose order cannot tell."""
    aware = text.str.contains(OFFSET, regex=True).to_numpy()
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], errors="coerce", utc=True, format="mixed")
    local = naive[~aware].dropna()
    if len(local):
        stamps = pd.DatetimeIndex(local.astype("datetime64[ns]"))
        try:
            moved = stamps.tz_localize(zone, ambiguous="infer", nonexistent="raise")
        except ValueError as exc:  # pandas names the time; say what to do about it
            raise LocalTimeError(f"{exc} in {zone}") from exc
        out[local.index] = moved.tz_convert("UTC")
    return out


def _forward(stamps: pd.Series) -> bool:
    """The times run one way: forward, or back all the way (an export newest first, which
    the loader reads oldest first)."""
    if stamps.isna().any():
        return False
    steps = np.diff(stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    return bool((steps > 0).all() or (steps < 0).all())


def read_times(
    raw: pd.Series, dayfirst: bool | None = None, zone: str | None = None
) -> tuple[pd.Series, bool | None]:
    """The times of ``raw`` (NaT where a cell is no time) and the reading used: as
    declared, else None when the dates read one way only, else the reading under which they
    run forward. Times without an offset are UTC, or local times of ``zone``. Raises
    :class:`AmbiguousDatesError` when both readings run forward and differ, and
    :class:`LocalTimeError` when no reading gives real times of ``zone``."""
    text = raw.astype(str)
    iso = text.str.match(ISO)
    if dayfirst is not None:
        return _read(text, iso, dayfirst, zone), dayfirst
    readings: dict[bool, pd.Series] = {}
    failure: LocalTimeError | None = None
    for first in (False, True) if not iso.all() else (False,):
        try:
            readings[first] = _read(text, iso, first, zone)
        except LocalTimeError as exc:  # not a time there: this reading cannot be the file's
            failure = failure or exc
    if len(readings) < 2:
        if failure is not None and not readings:
            raise failure
        (first, stamps), *_ = readings.items()
        return stamps, None if iso.all() else first
    month, day = readings[False], readings[True]
    if month.equals(day):
        return month, None
    forward = {True: _forward(day), False: _forward(month)}
    if forward[True] and forward[False]:
        first = raw.iloc[int(np.flatnonzero((month != day).to_numpy())[0])]
        raise AmbiguousDatesError(
            f"its dates read two ways ({first!r}: day first or month first) and run forward "
            "either way; say which with source.dayfirst: true (day first, as most of Europe "
            "writes) or false (month first)"
        )
    chosen = forward[True]
    return (day if chosen else month), (chosen if forward[True] or forward[False] else None)


def summer_time_hint(steps_ns: np.ndarray, at: int, later: pd.Timestamp, zone: str | None) -> str:
    """The remedy for a step back in time of at most one hour in the small hours, with no
    time zone named: a local-time export over the end of summer time (every zone that
    keeps one turns its clocks back between 01:00 and 04:00)."""
    back = -int(steps_ns[at])
    if zone is not None or not 0 <= back < SUMMER_STEP_S * 10**9 or not 1 <= later.hour <= 3:
        return ""
    return (
        "; a local-time export over the end of summer time repeats an hour: name the "
        "plant's time zone with source.timezone (Europe/Berlin, America/Chicago, ...)"
    )
