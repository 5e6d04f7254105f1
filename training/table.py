"""A historian export read into cells, with the file, column and row of any bad value.

Cells are read as text first (so a non-numeric value can be reported, not coerced); the
checks here are about the file itself: its columns against the spec, its timestamps (parsed,
strictly increasing), its numbers. Rows are 1-based data rows; ``data_lines`` maps them to
the lines an editor shows.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from service.contracts.arrays import FloatArray
from training.errors import DataError
from training.source_spec import SourceSpec
from training.spec import DatasetSpec
from training.textfile import open_bytes, open_text, read_parquet, refuse_binary
from training.timestamps import (
    AmbiguousDatesError,
    LocalTimeError,
    read_times,
    summer_time_hint,
)


def file_sha256(path: Path) -> str:
    """Hash in chunks: exports can be larger than memory wants to hold twice."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_table(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Read the file as text cells (so non-numeric values can be reported, not coerced)."""
    src = spec.source
    if not path.is_file():
        raise DataError(path, "file not found")
    if src.format != "parquet":
        refuse_binary(path)
    try:
        frame = _read_cells(path, src)
    except UnicodeDecodeError as exc:
        raise DataError(path, undecodable(path, src.encoding, exc)) from exc
    except pd.errors.ParserError as exc:
        raise DataError(path, _explain_parse_error(path, src, exc)) from exc
    except (ValueError, OSError) as exc:
        raise DataError(path, f"cannot be parsed as {src.format}: {exc}") from exc
    if src.format == "whitespace" and src.columns is None:
        _check_header(path, frame)
    if src.header_rows > 1:  # the header's other lines (units, descriptions): not data
        frame = frame.iloc[src.header_rows - 1 :]
    if src.columns is not None:
        if frame.shape[1] != len(src.columns) and src.format == "whitespace":
            raise DataError(
                path,
                f"has {frame.shape[1]} columns but the spec names {len(src.columns)}: "
                f"{', '.join(src.columns)}"
                + (
                    "; if the file starts with title or comment lines, skip them with "
                    "source.skip_rows"
                    if src.skip_rows == 0
                    else ""
                ),
            )
        if src.format == "whitespace":
            frame.columns = pd.Index(src.columns)
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    if (src.decimal != "." or src.thousands) and src.format != "parquet":  # text cells
        grouped = grouped_number(src.decimal, src.thousands)
        for col in frame.columns:
            if col != src.timestamp:
                frame[col] = plain_number(frame[col], src.decimal, src.thousands, grouped)
    return frame.reset_index(drop=True)


def grouped_number(decimal: str, thousands: str | None) -> re.Pattern[str] | None:
    """A number whose digits are grouped by ``thousands`` ("1.234.567,8")."""
    if thousands is None:
        return None
    t, d = re.escape(thousands), re.escape(decimal)
    return re.compile(rf"\s*[+-]?\d{{1,3}}(?:{t}\d{{3}})+(?:{d}\d*)?\s*")


def plain_number(
    cells: pd.Series, decimal: str, thousands: str | None, grouped: re.Pattern[str] | None
) -> pd.Series:
    """Cells with the thousands marks of grouped numbers removed and the decimal mark a
    point; any other cell keeps its marks, so a malformed one is reported as it was."""
    if grouped is not None and thousands is not None:
        hit = cells.str.fullmatch(grouped).fillna(False)
        cells = cells.where(~hit, cells.str.replace(thousands, "", regex=False))
    return cells.str.replace(decimal, ".", regex=False) if decimal != "." else cells


def _read_cells(path: Path, src: SourceSpec) -> pd.DataFrame:
    if src.format == "parquet":
        return read_parquet(path)
    whitespace = src.format == "whitespace"
    return pd.read_csv(
        path,
        sep=r"\s+" if whitespace else src.delimiter,
        header=None if whitespace and src.columns is not None else 0,
        engine="python" if whitespace else "c",
        dtype=str,
        keep_default_na=False,
        skip_blank_lines=True,
        skiprows=src.skip_rows,
        encoding=src.encoding,
    )


def _check_header(path: Path, frame: pd.DataFrame) -> None:
    """A whitespace file read with its first line as the header: refused when that line
    holds numbers, which means the file has no header and the spec must name the columns."""
    numbers = pd.to_numeric(pd.Series(list(frame.columns), dtype=str), errors="coerce")
    if numbers.notna().any():
        raise DataError(
            path,
            f"its first line read ({' '.join(map(str, frame.columns[:4]))} ...) holds "
            "numbers, not column names: name the columns with source.columns (and skip "
            "any title lines above with source.skip_rows)",
        )


def undecodable(path: Path, encoding: str, exc: UnicodeDecodeError) -> str:
    """What to set when a file is not in the encoding read: the line of the first byte that
    is not, and the encoding Windows spreadsheets save in Western Europe."""
    at = first_undecodable(path, encoding)
    where = "" if at is None else f" (line {at[0]}, byte {at[1] + 1})"
    other = "cp1252" if codecs.lookup(encoding).name != "cp1252" else "latin-1"
    return (
        f"is not {encoding} text{where}: {exc.reason}; set source.encoding to the file's "
        f"encoding (a Windows spreadsheet in Western Europe saves {other!r})"
    )


def first_undecodable(path: Path, encoding: str) -> tuple[int, int] | None:
    """(line, byte offset) of the first bytes of ``path`` that are not ``encoding``, read
    in chunks; None when the whole file decodes."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, lines = 0, 1
    with open_bytes(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                held = len(exc.object) - len(chunk)  # bytes the decoder held from before
                at = max(exc.start - held, 0)
                return lines + chunk[:at].count(b"\n"), offset + at
            offset += len(chunk)
            lines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return lines, offset
    return None


def _explain_parse_error(path: Path, src: SourceSpec, exc: Exception) -> str:
    """pandas' "Expected 3 fields in line 4, saw 4" blames the data line; the cause is
    usually a title line above it that set the field count. Say so, with the file's lines."""
    fmt = src.format
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if found is None:
        return f"cannot be parsed as {fmt}: {exc}"
    expected, line, saw = (int(g) for g in found.groups())
    first = _first_content_line(path, src)
    hint = (
        "; if the file starts with title or comment lines, skip them with source.skip_rows"
        f" (here {line - 1} would skip everything above line {line})"
        if first is not None and first < line
        else ""
    )
    where = f"line {first}" if first is not None else "the first line read"
    return (
        f"cannot be parsed as {fmt}: line {line} has {saw} fields but {where} has {expected}" + hint
    )


def _first_content_line(path: Path, src: SourceSpec) -> int | None:
    """1-based number of the first non-blank line after ``src.skip_rows``."""
    with open_text(path, src.encoding) as fh:
        for number, text in enumerate(fh, start=1):
            if number > src.skip_rows and text.strip():
                return number
    return None


def data_lines(path: Path, spec: DatasetSpec) -> list[int] | None:
    """The file's line number (1-based, as an editor shows it) of each data row, for text
    formats: skipped lines, blank lines and the header's lines are not data rows."""
    if spec.source.format == "parquet":
        return None
    lines: list[int] = []
    src = spec.source
    header = 0 if src.format == "whitespace" and src.columns else src.header_rows  # its lines
    with open_text(path, src.encoding) as fh:
        for number, text in enumerate(fh, start=1):
            if number <= src.skip_rows or not text.strip():
                continue
            if header:
                header -= 1
                continue
            lines.append(number)
    return lines


def check_columns(path: Path, frame: pd.DataFrame, spec: DatasetSpec) -> None:
    needed = [s.name for s in spec.signals] + [spec.target.name] + list(spec.truth)
    if spec.source.timestamp:
        needed.append(spec.source.timestamp)
    present = list(frame.columns)
    for col in needed:
        if col not in present:
            raise DataError(
                path, "missing: the spec needs this column" + _hint(spec, present), column=col
            )
    for col in present:
        if col not in needed and col not in spec.source.ignore:
            raise DataError(
                path, "is not in the spec (list it under source.ignore to skip it)", column=col
            )
    dupes = sorted({c for c in present if present.count(c) > 1})
    if dupes:
        raise DataError(path, "appears more than once", column=dupes[0])


def _hint(spec: DatasetSpec, present: list[str]) -> str:
    """What a one-column header says: its fields are separated by another character."""
    if spec.source.format != "csv" or len(present) != 1:
        return ""
    for mark, shown in ((";", "';'"), ("\t", "a tab ('\\t')"), ("|", "'|'")):
        if mark in present[0]:
            return (
                f" (the header reads as one column, {present[0][:60]!r}: are its fields "
                f"separated by {shown}? set source.delimiter)"
            )
    return ""


def oldest_first(
    path: Path, frame: pd.DataFrame, lines: list[int] | None, source: SourceSpec
) -> tuple[pd.DataFrame, list[int] | None, str | None]:
    """The rows oldest first, with their file lines, and a note when the file ran newest
    first (as many historian and LIMS reports list them); else as they were."""
    if source.timestamp not in frame.columns or len(frame) < 2:
        return frame, lines, None  # no time column (check_columns names a missing one)
    try:
        stamps, _ = read_times(frame[source.timestamp], source.dayfirst, source.timezone)
    except (AmbiguousDatesError, LocalTimeError):
        return frame, lines, None  # parse_timestamps says what is wrong
    steps = np.diff(stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    if stamps.isna().any() or not (steps < 0).all():
        return frame, lines, None
    note = (
        f"the rows run newest first ({stamps.iloc[0].isoformat()} back to "
        f"{stamps.iloc[-1].isoformat()}): read oldest first"
    )
    flipped = frame.iloc[::-1].reset_index(drop=True)
    return flipped, None if lines is None else lines[::-1], note


def parse_timestamps(
    path: Path, frame: pd.DataFrame, source: SourceSpec
) -> pd.DatetimeIndex | None:
    """The time column the spec names, checked to run forward (None: the spec names none)."""
    column = source.timestamp
    if column is None:
        return None
    raw = frame[column]
    try:
        stamps, _ = read_times(raw, source.dayfirst, source.timezone)
    except (AmbiguousDatesError, LocalTimeError) as exc:
        raise DataError(path, str(exc), column=column) from exc
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        r = int(bad[0])
        raise DataError(path, f"not a timestamp: {raw.iloc[r]!r}", column=column, row=r + 1)
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    steps = np.diff(ns)
    for r in np.flatnonzero(steps <= 0)[:1]:
        what = "duplicated" if steps[r] == 0 else "out of order (earlier than the row before)"
        hint = summer_time_hint(steps, int(r), stamps.iloc[r + 1], source.timezone)
        raise DataError(
            path, f"timestamp {raw.iloc[r + 1]!r} is {what}{hint}", column=column, row=int(r) + 2
        )
    return pd.DatetimeIndex(stamps)


def to_numeric(
    path: Path, frame: pd.DataFrame, column: str, *, hint_skip: bool = False
) -> FloatArray:
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    text = raw.astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    blank = text.str.lower().isin(["", "nan", "na", "null", "none"]).to_numpy()
    bad = np.flatnonzero(np.isnan(values) & ~blank)
    if bad.size:
        r = int(bad[0])
        hint = (
            " (a title or comment line above the data? skip it with source.skip_rows)"
            if hint_skip and r == 0
            else ""
        )
        raise DataError(path, f"non-numeric value {text.iloc[r]!r}{hint}", column=column, row=r + 1)
    return values


def format_number(value: float) -> str:
    """A value as people write it (999, 0.25, nan), never numpy's repr np.float64(999.0)."""
    return f"{float(value):g}"
