"""Stored lab results as CSV: what ``GET /v1/lab-results?format=csv`` answers and what
``softsensor retrain --lab-results FILE`` reads, written by one function.

One row per stored result (voided ones are no longer stored: the audit trail has them), the
sample time in the ``timestamp`` column (ISO 8601, UTC: what the retraining job matches to the
historian's rows), then everything the service decided about it, so a person can open the
file in a spreadsheet and the retraining job can leave out the results that are no labels.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from service.lab.records import LabRecord
from service.state.clock import from_posix

CSV_COLUMNS = (
    "timestamp",  # the sample time
    "value",
    "model",
    "stream",
    "result_time",
    "received",
    "estimate",
    "residual",
    "accepted",
    "reason",
)


def _iso(t: float | None) -> str:
    return "" if t is None else from_posix(t).isoformat().replace("+00:00", "Z")


def csv_row(r: LabRecord) -> tuple[Any, ...]:
    """One record as the CSV's cells, in ``CSV_COLUMNS`` order (``repr`` keeps every digit)."""
    return (
        _iso(r.sample_time),
        repr(r.value),
        r.model,
        r.stream,
        _iso(r.result_time),
        _iso(r.received),
        "" if r.estimate is None else repr(r.estimate),
        "" if r.residual is None else repr(r.residual),
        "true" if r.accepted else "false",
        r.reason or "",
    )


def to_csv(records: Iterable[LabRecord]) -> str:
    """The header and one line per record."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(r) for r in records)
    return out.getvalue()
