"""The layout of a dataset spec's file: format, columns, time column and how its times read,
separators, encoding, lines to skip. Read by ``training.table`` and ``training.timestamps``.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class SourceSpec(BaseModel):
    """How the file is laid out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["csv", "parquet", "whitespace"]
    # Column names in file order, for a whitespace file without a header line; without them
    # the first line read (after skip_rows) is the header.
    columns: list[str] | None = None
    # Name of the timestamp column; None means rows are already in time order, one per sample.
    timestamp: str | None = None
    # Columns present in the file that the spec deliberately does not use.
    ignore: list[str] = Field(default_factory=list)
    # Nominal sampling interval in seconds, recorded in the model card.
    sample_interval_s: float | None = Field(default=None, gt=0)
    # Lines at the top of the file to skip before the header (csv) or the numbers
    # (whitespace): titles, comments, units. Blank lines count, as an editor shows them.
    skip_rows: int = Field(default=0, ge=0)
    # Lines the header takes: the first holds the column names, the ones below it (units,
    # descriptions, tag names, as spreadsheet exports add) are not data and are skipped.
    header_rows: int = Field(default=1, ge=1)
    # How a csv file separates its fields, and the decimal mark of its numbers: historians
    # and spreadsheets set up for many European locales write "49,95;50,10" (";" and ",").
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    decimal: Literal[".", ","] = "."
    # The thousands separator of numbers a spreadsheet formatted ("1.234,5" with decimal
    # ",", "1,234.5" with decimal "."), removed where a cell groups its digits by it.
    thousands: Literal[".", ",", " ", "'"] | None = None
    # How a date such as 04.01.2026 reads: true day first (most of Europe), false month
    # first (US); unset: the reading under which the file's times run forward, refused when
    # both do and differ. ISO 8601 dates are read as they say, whatever this is.
    dayfirst: bool | None = None
    # The plant's time zone (IANA name, such as Europe/Berlin) when the file's times are
    # local times without an offset; the hour the end of summer time repeats is read in
    # file order. Unset: such times are UTC. A time with its own offset says what it means.
    timezone: str | None = None
    # The text encoding of a csv or whitespace file: UTF-8 (a byte-order mark is skipped),
    # or what a Windows spreadsheet saves, such as cp1252 (Western European) or latin-1.
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            "".encode(value)  # LookupError too for a codec that is not text (rot13, zlib)
        except LookupError:
            raise ValueError(
                f"source.encoding {value!r} is not a text encoding (utf-8, cp1252, latin-1, ...)"
            ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"source.timezone {value!r} is not a time zone name (Europe/Berlin, "
                "America/Chicago, UTC, ...)"
            ) from None
        return value

    @model_validator(mode="after")
    def _marks_differ(self) -> SourceSpec:
        if self.decimal == self.delimiter:
            raise ValueError(
                f"source.decimal {self.decimal!r} is also the delimiter: set source.delimiter "
                "(';' is usual with decimal commas)"
            )
        if self.thousands is not None and self.thousands in (self.decimal, self.delimiter):
            raise ValueError(
                f"source.thousands {self.thousands!r} is also the decimal mark or the delimiter"
            )
        if self.delimiter != "," and self.format != "csv":
            raise ValueError("source.delimiter applies to csv files only")
        if self.header_rows > 1 and (self.format == "parquet" or self.columns is not None):
            raise ValueError("source.header_rows applies to text files with a header line")
        return self
