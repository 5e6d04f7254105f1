"""Failure families of the training side, each with a message a process engineer can act on.

They share the project's one root, ``service.contracts.errors.SoftSensorError`` (training
imports the contracts, never the reverse).
"""

from __future__ import annotations

from pathlib import Path

from service.contracts.errors import SoftSensorError

__all__ = ["DataError", "SimulationError", "SoftSensorError", "SpecError"]


class SpecError(SoftSensorError):
    """The dataset spec is malformed or inconsistent."""


class DataError(SoftSensorError):
    """The data file does not satisfy its spec. Names the file, column and row when known."""

    def __init__(
        self,
        path: Path | str,
        reason: str,
        *,
        column: str | None = None,
        row: int | None = None,
        line: int | None = None,
    ) -> None:
        self.path = str(path)
        self.column = column
        self.row = row
        self.line = line
        self.reason = reason
        where = [f"file {self.path}"]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            # row: 1-based data row; line: where an editor shows it (titles and blanks count)
            where.append(f"row {row}" + (f" (line {line})" if line is not None else ""))
        super().__init__(f"{', '.join(where)}: {reason}")

    def at_line(self, lines: list[int] | None) -> DataError:
        """The same error with the file line of its row, when the line map is known."""
        if self.row is None or self.line is not None or not lines or self.row > len(lines):
            return self
        return DataError(
            self.path, self.reason, column=self.column, row=self.row, line=lines[self.row - 1]
        )


class SimulationError(SoftSensorError):
    """The configuration is inconsistent or the column left its physical range."""
