"""A first dataset spec drafted from a historian export, for a person meeting the trainer
with a file of their own.

Writing a spec by hand means reading the file for its layout (delimiter, decimal mark,
which column is the time), its sampling interval, each signal's unit and a range that
tells a bad value from a real one. All of that can be read off the file, except what only
the plant knows: the analyzer's delay, the transmitters' real ranges. So the draft takes
what the data shows, says in its header what it could not know, and is loaded once before
it is written, so that ``softsensor train`` runs on it as it stands:

- the layout: ``,`` ``;`` or tab between fields, whichever splits the header most, else
  spaces (a whitespace file, its names from the header line or ``--columns``); a decimal
  comma where the numbers show one; title lines above the header skipped; the encoding
  (UTF-8, else cp1252);
- the time: the named column, else the first one whose cells read as dates, and the sample
  interval as the median step between rows;
- every numeric column a signal at lag 0, its unit from a name such as ``T03 [degC]``; a
  constant or mostly empty column is ignored, and so is text;
- ranges: what the file holds widened by its own span on each side (a quantity never
  negative in the file stays at or above 0): wide enough not to take a real excursion for a
  bad value, narrow enough to catch a transmitter's fault value;
- the analyzer's delay 0, values stamped at sample time, and ``missing: drop``, until the
  person says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.errors import DataError
from training.table import first_undecodable, grouped_number, plain_number
from training.textfile import open_text, read_parquet, refuse_binary
from training.timestamps import (
    OFFSET,
    AmbiguousDatesError,
    LocalTimeError,
    read_times,
    summer_time_hint,
)

DELIMITERS = (",", ";", "\t")
HEAD_LINES = 40  # lines read for the layout: title lines, the header, the first rows
NUMERIC_SHARE = 0.5  # a column is numeric when this share of its cells reads as numbers
DATE_SHARE = 0.95  # ... a time when this share of its first cells reads as dates
DATE_PROBE = 200  # cells tried for a date
UNIT = re.compile(r"^(?P<name>.+?)\s*[\[(](?P<unit>[^\])]+)[\])]\s*$")  # "T03 [degC]"


@dataclass(frozen=True)
class Draft:
    """The spec as a mapping (what the YAML holds) and what its reader must check."""

    spec: dict[str, Any]
    notes: list[str]


def _encoding(path: Path) -> tuple[str, str | None]:
    """The file's text encoding, and a note when it is not UTF-8: then the first of
    cp1252 (what Windows spreadsheets save in Western Europe) and latin-1 that reads it."""
    bad = first_undecodable(path, "utf-8")
    if bad is None:
        return "utf-8", None
    encoding = "cp1252" if first_undecodable(path, "cp1252") is None else "latin-1"
    return encoding, (
        f"the file is not UTF-8 (line {bad[0]}): read as {encoding}; if names or units read "
        "wrong, set source.encoding to what it was saved in"
    )


def _head(path: Path, encoding: str) -> list[str]:
    """The file's first lines as an editor shows them (blank ones too)."""
    with open_text(path, encoding) as fh:
        return [line.rstrip("\r\n") for line in (fh.readline() for _ in range(HEAD_LINES))]


@dataclass(frozen=True)
class _Layout:
    """How a text export is laid out: its delimiter (None: spaces), its numbers' marks,
    and the title lines above its header."""

    delimiter: str | None
    decimal: str = "."
    thousands: str | None = None
    skip: int = 0


def _marks(cells: list[str], delimiter: str) -> tuple[str, str | None]:
    """(decimal mark, thousands separator) of the numbers in ``cells``: a decimal comma
    where a number shows one ("49,95", "1.234,5"); a thousands separator where numbers
    group their digits by the other mark ("1.234,5", "1,234.5") and never use it as a
    decimal mark (one, two or four and more digits after it)."""
    comma = delimiter != "," and any(
        re.fullmatch(r"-?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+", c) for c in cells
    )
    decimal = "," if comma else "."
    other = "." if comma else ","
    if other == delimiter:
        return decimal, None
    o, d = re.escape(other), re.escape(decimal)
    grouped = re.compile(rf"-?\d{{1,3}}(?:{o}\d{{3}})+(?:{d}\d+)?")
    as_decimal = re.compile(rf"-?\d+{o}(?:\d{{1,2}}|\d{{4,}})")
    if any(grouped.fullmatch(c) for c in cells) and not any(as_decimal.fullmatch(c) for c in cells):
        return decimal, other
    return decimal, None


def _layout(path: Path, lines: list[str]) -> _Layout:
    """The layout of a text export from its first lines.

    The header is the first line split by ``,`` ``;`` or tab (whichever splits it most)
    into as many fields as the last row read; lines above it are titles (blank ones count,
    as ``skip_rows`` counts them). With no such line, the fields are separated by spaces
    (delimiter None): the header is the line right above the first row of numbers when it
    has as many fields, and the lines above the header (or that row) are titles.
    """
    content = [(i, line) for i, line in enumerate(lines) if line.strip()]
    if not content:
        raise DataError(path, "is empty")
    last = content[-1][1]

    def titles(at: int) -> int:  # only blank lines above: nothing to skip (pandas skips them)
        return at if at > content[0][0] else 0

    for at, line in content:
        delimiter = max(DELIMITERS, key=line.count)
        if line.count(delimiter) and line.count(delimiter) == last.count(delimiter):
            rows = [row for i, row in content if i > at]
            cells = [c.strip() for row in rows for c in row.split(delimiter)]
            return _Layout(delimiter, *_marks(cells, delimiter), titles(at))
    width = len(last.split())
    if width < 2:
        raise DataError(path, "has one column (no ',', ';', tab or spaces between fields)")
    numbers = [i for i, line in content if len(line.split()) == width and _numeric(line.split())]
    first = numbers[0] if numbers else content[0][0]  # the first row of numbers
    above = [line for i, line in content if i < first]
    named = bool(above) and len(above[-1].split()) == width  # the header right above it
    return _Layout(None, skip=titles(content[len(above) - 1][0] if named else first))


def _numeric(cells: list[str]) -> bool:
    return bool(pd.to_numeric(pd.Series(cells, dtype=str), errors="coerce").notna().all())


@dataclass(frozen=True)
class _File:
    """An export as read for the draft: its cells, the layout part of ``source``, the notes
    on it, and the units its header's second line gives (column -> unit)."""

    frame: pd.DataFrame
    source: dict[str, Any]
    notes: list[str]
    units: dict[str, str]


def _read(path: Path, columns: list[str] | None = None) -> _File:
    """The file; ``columns`` names the columns of a whitespace file that has no header."""
    if path.suffix.lower() == ".parquet":
        return _File(read_parquet(path), {"format": "parquet"}, [], {})
    refuse_binary(path)
    encoding, note = _encoding(path)
    notes = [] if note is None else [note]
    lines = _head(path, encoding)
    layout = _layout(path, lines)
    delimiter, skip = layout.delimiter, layout.skip
    source: dict[str, Any] = {"format": "csv" if delimiter is not None else "whitespace"}
    if skip:
        source["skip_rows"] = skip
        notes.append(f"the first {skip} lines are taken for a title and skipped (skip_rows)")
    if delimiter is None:
        frame = _read_whitespace(path, lines[skip].split(), columns, skip, encoding)
        if columns is not None:
            source["columns"] = columns
        units: dict[str, str] = {}
    else:
        if columns is not None:
            raise DataError(path, "--columns names the columns of a whitespace file only")
        frame, units = _read_csv(path, layout, encoding)
        if delimiter != ",":
            source["delimiter"] = delimiter
        if layout.decimal != ".":
            source["decimal"] = layout.decimal
        if layout.thousands is not None:
            source["thousands"] = layout.thousands
        if units:
            source["header_rows"] = 2
            notes.append("the header's second line is taken for the units (header_rows: 2)")
    if note is not None:
        source["encoding"] = encoding
    return _File(frame, source, notes, units)


def _read_whitespace(
    path: Path, header: list[str], columns: list[str] | None, skip: int, encoding: str
) -> pd.DataFrame:
    if columns is None and _numeric(header):
        example = ",".join(f"c{i + 1}" for i in range(len(header)))
        raise DataError(
            path,
            "is numbers separated by spaces with no header line: name its columns in "
            f"file order (softsensor spec --columns {example})",
        )
    return pd.read_csv(
        path,
        sep=r"\s+",
        header=None if columns is not None else 0,
        names=columns,
        skiprows=skip,
        encoding=encoding,
    )


def _read_csv(path: Path, layout: _Layout, encoding: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The cells, and the units when the line below the header holds text where every
    column of numbers has them further down (a spreadsheet's units line)."""
    sep, skip = layout.delimiter, layout.skip
    cells = pd.read_csv(path, sep=sep, skiprows=skip, encoding=encoding, dtype=str, nrows=50)
    grouped = grouped_number(layout.decimal, layout.thousands)
    numbers = cells.fillna("").apply(
        lambda c: pd.to_numeric(
            plain_number(c, layout.decimal, layout.thousands, grouped), errors="coerce"
        )
    )
    numeric = numbers.columns[numbers.iloc[1:].notna().mean() > NUMERIC_SHARE]
    units = {}
    if len(cells) > 1 and len(numeric) and numbers[numeric].iloc[0].isna().all():
        first = cells.iloc[0].fillna("")
        units = {str(c): str(u).strip() for c, u in first.items() if str(u).strip()}
    frame = pd.read_csv(
        path,
        sep=sep,
        decimal=layout.decimal,
        thousands=layout.thousands,
        encoding=encoding,
        skiprows=lambda i: i < skip or (bool(units) and i == skip + 1),
    )
    return frame, units


def _is_time(values: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(values):
        return False
    probe = values.dropna().astype(str).head(DATE_PROBE)
    if probe.empty:
        return False
    parsed = pd.to_datetime(probe, errors="coerce", utc=True, format="mixed")
    return bool(parsed.notna().mean() >= DATE_SHARE)


def _range(values: np.ndarray) -> list[float]:
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    span = high - low
    widened = [low - span, high + span]
    if low >= 0:
        widened[0] = max(widened[0], 0.0)
    return [float(f"{v:.6g}") for v in widened]


def _unit(column: str, units: dict[str, str]) -> tuple[str, str | None]:
    """(unit, its note when neither the name nor the header's units line gives one)."""
    found = UNIT.match(column)
    if found:
        return found.group("unit").strip(), None
    if column in units:
        return units[column], None
    return "unknown", column


def _interval(times: pd.Series) -> float | None:
    steps = np.abs(np.diff(times.dropna().to_numpy()) / np.timedelta64(1, "s"))  # newest first
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else None


def _signals(
    numbers: dict[str, pd.Series], skip: tuple[str | None, ...], units: dict[str, str]
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The columns that make signals (with unit and range), those ignored, and the signals
    whose name or units line gives no unit."""
    signals, ignore, unnamed = [], [], []
    for column, series in numbers.items():
        if column in skip:
            continue
        values = series.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if np.isfinite(values).mean() < NUMERIC_SHARE or np.ptp(finite) == 0:
            ignore.append(column)
            continue
        unit, none = _unit(column, units)
        if none is not None:
            unnamed.append(none)
        signals.append({"name": column, "unit": unit, "range": _range(values)})
    return signals, ignore, unnamed


def _time_source(
    path: Path,
    frame: pd.DataFrame,
    timestamp: str | None,
    reading: tuple[bool | None, str | None],
    source: dict[str, Any],
) -> list[str]:
    """The time column's part of ``source`` (its name, how its dates read, their time zone,
    the interval), and the notes on it; ``reading`` is (dayfirst, zone) as asked."""
    if timestamp is None:
        return ["no time column found: rows are taken as samples at a fixed interval"]
    dayfirst, zone = reading
    source["timestamp"] = timestamp
    try:
        times, read = read_times(frame[timestamp], dayfirst, zone)
    except AmbiguousDatesError as exc:
        hint = " (here: softsensor spec --day-first or --month-first)"
        raise DataError(path, str(exc) + hint, column=timestamp) from exc
    except LocalTimeError as exc:
        raise DataError(path, str(exc), column=timestamp) from exc
    _refuse_summer_time_step(path, frame[timestamp], times, zone)
    notes = []
    if zone is not None:
        source["timezone"] = zone
    elif not frame[timestamp].astype(str).str.contains(OFFSET, regex=True).any():
        notes.append(
            "the times carry no offset and are read as UTC: if they are the plant's local "
            "times, name its zone (source.timezone: Europe/Berlin, ...)"
        )
    if read is not None:
        source["dayfirst"] = read
        why = "as asked" if dayfirst is not None else "they run forward so"
        notes.append(f"dates read {'day' if read else 'month'} first: {why}")
    ordered = times.dropna().to_numpy()
    if len(ordered) > 1 and (np.diff(ordered) < np.timedelta64(0, "s")).all():
        notes.append("the rows run newest first: the trainer reads them oldest first")
    interval = _interval(times)
    if interval is not None:
        source["sample_interval_s"] = interval
        notes.append(
            f"sample_interval_s {interval:g} s is the median step between rows: steps "
            "longer than 1.5 of it are gaps, and rows whose lags span one are left out"
        )
    return notes


def _refuse_summer_time_step(
    path: Path, raw: pd.Series, times: pd.Series, zone: str | None
) -> None:
    """Stop, naming ``--timezone``, where local times step back as summer time ends."""
    if times.isna().any():
        return  # the loader names the cell that is no time
    steps = np.diff(times.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    if (steps < 0).all():
        return  # newest first all the way: the loader reads it oldest first
    for at in np.flatnonzero(steps <= 0)[:1]:
        hint = summer_time_hint(steps, int(at), times.iloc[at + 1], zone)
        if hint:
            raise DataError(
                path,
                f"timestamp {raw.iloc[at + 1]!r} steps back{hint} (here: softsensor spec "
                "--timezone ZONE)",
                column=str(raw.name),
                row=int(at) + 2,
            )


def draft_spec(
    path: Path,
    target: str,
    timestamp: str | None = None,
    dayfirst: bool | None = None,
    zone: str | None = None,
    columns: list[str] | None = None,
) -> Draft:
    """The draft for ``path`` with ``target`` the analyzer's column; ``timestamp`` names the
    time column when the file's first date-like column is not it, ``dayfirst`` how its dates
    read when the file cannot tell, ``zone`` the time zone of times without an offset
    (``training.timestamps``), ``columns`` the names of a headerless whitespace file's."""
    file = _read(path, columns)
    frame, source = file.frame, file.source
    if target not in frame.columns:
        raise DataError(path, f"has no column {target!r}; its columns: {list(frame.columns)}")
    if timestamp is None:
        timestamp = next((c for c in frame.columns if c != target and _is_time(frame[c])), None)
    elif timestamp not in frame.columns:
        raise DataError(path, f"has no column {timestamp!r}; its columns: {list(frame.columns)}")
    numbers = {c: pd.to_numeric(frame[c], errors="coerce") for c in frame.columns}
    y = numbers[target].to_numpy(dtype=float)
    if np.isfinite(y).sum() < 2:
        raise DataError(path, f"column {target!r}: fewer than two numbers, nothing to learn")
    signals, ignore, unnamed = _signals(numbers, (target, timestamp), file.units)
    if not signals:
        raise DataError(path, f"has no numeric column that varies besides {target!r}")
    notes = file.notes + _time_source(path, frame, timestamp, (dayfirst, zone), source)
    if ignore:
        source["ignore"] = ignore
        notes.append(f"ignored (text, mostly empty or constant here): {', '.join(ignore)}")
    if unnamed:
        notes.append(f"units unknown (name them 'T03 [degC]' or edit): {', '.join(unnamed)}")
    target_unit, _ = _unit(target, file.units)
    notes += [
        "ranges are the file's own widened by its span on each side: set each to what the "
        "transmitter can really read (a value outside is treated as missing)",
        "target.analyzer_delay is 0 and values are stamped at sample time: set the delay in "
        "samples, and stamped_at: report if the file shows a value when it was reported",
        "every signal is an input at lag 0: add lags (lags: 0..20:5) and the analyzer's last "
        "value ({signal: <target>, lags: [<delay>]}) once the delay is known",
    ]
    spec = {
        "name": re.sub(r"[^a-z0-9_.-]+", "_", path.stem.lower()).strip("_.-") or "plant",
        "description": f"drafted from {path.name} by softsensor spec",
        "source": source,
        "signals": signals,
        "target": {
            "name": target,
            "unit": target_unit,
            "range": _range(y),
            "analyzer_delay": 0,
            "stamped_at": "sample",
        },
        "features": [{"signal": s["name"], "lags": [0]} for s in signals],
        "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
        "missing": {"policy": "drop"},
    }
    return Draft(spec, notes)
