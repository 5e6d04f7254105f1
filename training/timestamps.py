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


class AmbiguousDatesError(SoftSensorError):
    """Both readings of the dates run forward and they differ: the spec must say. The
    loader turns it into a ``DataError`` naming the file and the column."""


def _read(text: pd.Series, iso: pd.Series, dayfirst: bool) -> pd.Series:
    """``text`` as times: the ISO cells (``iso``) as they say, the others ``dayfirst``."""
    out = pd.to_datetime(text.where(iso), errors="coerce", utc=True, format="mixed")
    if not iso.all():
        other = pd.to_datetime(
            text.where(~iso), errors="coerce", utc=True, format="mixed", dayfirst=dayfirst
        )
        out = out.where(iso, other)
    return out


def _forward(stamps: pd.Series) -> bool:
    if stamps.isna().any():
        return False
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return bool((np.diff(ns) > 0).all())


def read_times(raw: pd.Series, dayfirst: bool | None = None) -> tuple[pd.Series, bool | None]:
    """The times of ``raw`` (NaT where a cell is no time) and the reading used: as
    declared, else None when the dates read one way only, else the reading under which they
    run forward. Raises :class:`AmbiguousDatesError` when both readings run forward and differ."""
    text = raw.astype(str)
    iso = text.str.match(ISO)
    if dayfirst is not None:
        return _read(text, iso, dayfirst), dayfirst
    month = _read(text, iso, dayfirst=False)
    if iso.all():
        return month, None
    day = _read(text, iso, dayfirst=True)
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
