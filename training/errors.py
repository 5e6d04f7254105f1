"""Failure families of the training side, each with a message a process engineer can act on."""

from __future__ import annotations

from pathlib import Path


class SoftSensorError(Exception):
    """Base of every error the CLI reports as a clean message instead of a traceback."""


class SpecError(SoftSensorError):
    """The dataset spec is malformed or inconsistent."""


class DataError(SoftSensorError):
    """The data file does not satisfy its spec. Names the file, column and row when known."""

    def __init__(
        self, path: Path | str, reason: str, *, column: str | None = None, row: int | None = None
    ) -> None:
        self.path = str(path)
        self.column = column
        self.row = row
        self.reason = reason
        where = [f"file {self.path}"]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {reason}")
