"""The durable store: lab results (acknowledged means on disk) and the prediction log.

Lab results are rare and precious: a lab technician will not re-enter a value the service
acknowledged and then lost. So :meth:`LabStore.add_many` writes a request's results in one
transaction, committed with ``synchronous=FULL`` in WAL mode (the WAL is fsynced at every
commit) before it returns: the reply the service sends afterwards is a promise kept across a
kill or a power cut, and a request killed midway stored nothing. Adding the same result
twice is harmless (idempotent on ``(model, stream, sample_time)``), so a client may retry.

Predictions are the other half of a residual: a lab result sampled at ``t`` on a stream is
compared to the estimate that stream was given for ``t``. They live in the same file, written
and read through ``LabStore.predictions`` (``service.lab.predictionlog``, its own connection).

Only the stdlib (sqlite3) is used. One connection per purpose, each behind its own lock,
shared by the service's worker threads; SQLite's own locking (with a busy timeout)
arbitrates between the two connections and other processes (e.g. the retraining job).
"""

from __future__ import annotations

import builtins
import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from service.lab.errors import LabResultNotFoundError
from service.lab.predictionlog import PredictionLog
from service.lab.records import (
    DEFAULT_STREAM,
    LAB_COLUMNS,
    VOID_COLUMNS,
    LabRecord,
    VoidRecord,
    check_limit,
    check_void,
    finite,
    list_filter,
    not_stored,
    record_of,
    row_of,
    text,
    void_of,
)
from service.lab.sqlite import StoreConflictError, StoreError, connect, errors, transaction

__all__ = ["DEFAULT_STREAM", "LabRecord", "LabStore", "StoreConflictError", "StoreError"]

SCHEMA_VERSION = 3
_LAB_COLUMNS = LAB_COLUMNS
_INSERT_LAB = (
    f"INSERT INTO lab_results ({_LAB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (model, stream, sample_time) DO NOTHING"
)

# Voided results, moved here whole from lab_results with who voided them, when and why: the
# audit trail of voids (a sample may be voided, entered again and voided again).
_VOIDS = """
CREATE TABLE lab_voids (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    sample_time REAL NOT NULL,
    value REAL NOT NULL,
    received REAL NOT NULL,
    estimate REAL,
    residual REAL,
    accepted INTEGER NOT NULL,
    reason TEXT,
    result_time REAL,
    voided_at REAL NOT NULL,
    voided_by TEXT NOT NULL,
    void_reason TEXT NOT NULL
);
CREATE INDEX lab_voids_model ON lab_voids (model, voided_at);
"""

_TABLES = f"""
CREATE TABLE lab_results (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    sample_time REAL NOT NULL,
    value REAL NOT NULL,
    received REAL NOT NULL,
    estimate REAL,
    residual REAL,
    accepted INTEGER NOT NULL,
    reason TEXT,
    result_time REAL,
    PRIMARY KEY (model, stream, sample_time)
);
CREATE INDEX lab_results_time ON lab_results (sample_time);
CREATE TABLE predictions (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    sample_time REAL NOT NULL,
    estimate REAL NOT NULL,
    PRIMARY KEY (model, stream, sample_time)
) WITHOUT ROWID;
{_VOIDS}
"""

# Version 1 kept lab results per model only, and a prediction table nothing wrote: its
# results move to the default stream, the prediction table is rebuilt.
_FROM_V1 = f"""
ALTER TABLE lab_results RENAME TO lab_results_v1;
DROP INDEX IF EXISTS lab_results_time;
DROP TABLE IF EXISTS predictions;
{_TABLES}
INSERT INTO lab_results ({_LAB_COLUMNS})
    SELECT model, '{DEFAULT_STREAM}', sample_time, value, received, estimate, residual,
           accepted, reason, NULL FROM lab_results_v1;
DROP TABLE lab_results_v1;
"""
# Version 2 had no result time and no voids: both are added, every result kept.
_FROM_V2 = f"""
ALTER TABLE lab_results ADD COLUMN result_time REAL;
{_VOIDS}
"""


# --------------------------------------------------------------------------- store


class LabStore:
    """Lab results in one SQLite file (WAL mode), with the prediction log beside them
    (``predictions``, its own connection): the embedded engine of ``StateStore``."""

    shared = False  # one process serves from the file; another only reads it (retraining)

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(self.path, f"cannot create directory: {exc}") from exc
        self._lab_lock = threading.Lock()
        self._lab = connect(self.path, "FULL")
        try:
            self._create_schema()
            self.predictions = PredictionLog(self.path)
        except BaseException:
            self._lab.close()
            raise
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def _create_schema(self) -> None:
        """Create the tables, or migrate a version-1 file; refuse a newer schema."""
        with self._lab_lock, self._errors("create schema"), transaction(self._lab):
            self._lab.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            version = self._lab.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(
                    self.path,
                    f"schema version {version} is newer than this service's {SCHEMA_VERSION}",
                )
            if version == SCHEMA_VERSION:
                return
            script = {None: _TABLES, 1: _FROM_V1, 2: _FROM_V2}[version]
            for statement in script.split(";"):
                if statement.strip():
                    self._lab.execute(statement)
            self._lab.execute("DELETE FROM schema_version")
            self._lab.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        """Close both connections; later calls fail, a second close does nothing."""
        with self._lab_lock:
            if self._closed:
                return
            self._closed = True
            self.predictions.close()
            self._lab.close()

    def __enter__(self) -> LabStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return errors(self.path, action)

    def pragmas(self) -> dict[str, Any]:
        """The durability settings actually in force, per connection (for checks and logs)."""
        with self._lab_lock, self._errors("read pragmas"):
            lab_mode = self._lab.execute("PRAGMA journal_mode").fetchone()[0]
            lab_sync = self._lab.execute("PRAGMA synchronous").fetchone()[0]
        pred_sync = self.predictions.synchronous()
        return {
            "journal_mode": lab_mode,
            "synchronous": lab_sync,
            "predictions_synchronous": pred_sync,
        }

    # ------------------------------------------------------------------ lab results

    def add_many(self, records: Sequence[LabRecord]) -> list[bool]:
        """Store results in one transaction; per result, True if new, False if a retry.

        Returns only after the commit reached the disk. A result whose ``(model, stream,
        sample_time)`` is stored with the same ``value`` is a retry: False, and the stored
        estimate, residual and decision stay those of the first. One stored with another
        value raises :class:`StoreConflictError` (409) and nothing of the batch is stored.
        NaN or infinite numbers raise ValueError naming the field, before anything is written.
        """
        rows = [(*row[:7], int(row[7]), *row[8:]) for row in map(row_of, records)]
        new = []
        with self._lab_lock, self._errors("store lab results"), transaction(self._lab):
            for row in rows:
                cursor = self._lab.execute(_INSERT_LAB, row)
                if cursor.rowcount == 1:
                    new.append(True)
                    continue
                stored = self._lab.execute(
                    "SELECT value FROM lab_results"
                    " WHERE model = ? AND stream = ? AND sample_time = ?",
                    row[:3],
                ).fetchone()
                if stored is None or stored[0] != row[3]:
                    raise StoreConflictError(
                        self.path,
                        f"lab result of {row[0]!r} stream {row[1]!r} at sample_time {row[2]} is "
                        f"stored with value {None if stored is None else stored[0]}, not "
                        f"{row[3]}; stored results are never overwritten",
                    )
                new.append(False)
        return new

    def list(
        self,
        model: str | None = None,
        since: float | None = None,
        limit: int = 100,
        stream: str | None = None,
    ) -> builtins.list[LabRecord]:
        """Stored lab results, newest sample first; ``since`` keeps sample_time >= it."""
        check_limit(limit)
        where, params = list_filter(model, stream, since, "?")
        query = (
            f"SELECT {_LAB_COLUMNS} FROM lab_results {where}"
            " ORDER BY sample_time DESC, model, stream LIMIT ?"
        )
        with self._lab_lock, self._errors("list lab results"):
            rows = self._lab.execute(query, (*params, limit)).fetchall()
        return [record_of(r) for r in rows]

    def get(self, model: str, sample_time: float, stream: str = DEFAULT_STREAM) -> LabRecord | None:
        """The stored result for (model, stream, sample time), if any."""
        query = (
            f"SELECT {_LAB_COLUMNS} FROM lab_results"
            " WHERE model = ? AND stream = ? AND sample_time = ?"
        )
        params = (
            text("model", model),
            text("stream", stream),
            finite("sample_time", sample_time),
        )
        with self._lab_lock, self._errors("read a lab result"):
            row = self._lab.execute(query, params).fetchone()
        return None if row is None else record_of(row)

    def history(self, model: str, stream: str) -> builtins.list[LabRecord]:
        """Every result of a stream, oldest sample first: replaying the accepted ones
        restores its bias and residual test, the last received its analyzer age."""
        query = (
            f"SELECT {_LAB_COLUMNS} FROM lab_results WHERE model = ? AND stream = ?"
            " ORDER BY sample_time"
        )
        with self._lab_lock, self._errors("replay lab results"):
            rows = self._lab.execute(query, (text("model", model), text("stream", stream)))
            return [record_of(r) for r in rows.fetchall()]

    def streams(self, model: str) -> builtins.list[str]:
        """The streams of a model that have lab results (restored when the service starts)."""
        query = "SELECT DISTINCT stream FROM lab_results WHERE model = ? ORDER BY stream"
        with self._lab_lock, self._errors("list streams"):
            return [r[0] for r in self._lab.execute(query, (text("model", model),)).fetchall()]

    def lab_counts(self, model: str) -> dict[str, int]:
        """Changes to the lab results per stream of ``model``: results stored plus results
        voided (see ``StateStore.lab_counts``)."""
        # a voided result was stored once and voided once: two changes
        query = (
            "SELECT stream, SUM(n) FROM (SELECT stream, 1 AS n FROM lab_results WHERE model = ?"
            " UNION ALL SELECT stream, 2 FROM lab_voids WHERE model = ?) GROUP BY stream"
        )
        name = text("model", model)
        with self._lab_lock, self._errors("count lab results"):
            rows = self._lab.execute(query, (name, name)).fetchall()
        return {stream: int(count) for stream, count in rows}

    def void(
        self, model: str, stream: str, sample_time: float, *, by: str, reason: str, at: float
    ) -> VoidRecord:
        """Move a stored result to the audit trail (``lab_voids``) with who voided it, when
        and why, in one durable transaction; :class:`LabResultNotFoundError` if none is
        stored (or it was voided already)."""
        key = (text("model", model), text("stream", stream), finite("sample_time", sample_time))
        who, why, when = check_void(by, reason, at)
        where = "WHERE model = ? AND stream = ? AND sample_time = ?"
        with self._lab_lock, self._errors("void a lab result"), transaction(self._lab):
            row = self._lab.execute(
                f"SELECT {_LAB_COLUMNS} FROM lab_results {where}", key
            ).fetchone()
            if row is None:
                raise LabResultNotFoundError(None, not_stored(*key))
            self._lab.execute(
                f"INSERT INTO lab_voids ({VOID_COLUMNS}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, when, who, why),
            )
            self._lab.execute(f"DELETE FROM lab_results {where}", key)
        return VoidRecord(record_of(row), when, who, why)

    def voids(self, model: str | None = None, limit: int = 100) -> builtins.list[VoidRecord]:
        """The voided results (of ``model``), the latest void first."""
        check_limit(limit)
        where, params = ("WHERE model = ?", [text("model", model)]) if model else ("", [])
        query = f"SELECT {VOID_COLUMNS} FROM lab_voids {where} ORDER BY voided_at DESC LIMIT ?"
        with self._lab_lock, self._errors("list voided lab results"):
            rows = self._lab.execute(query, (*params, limit)).fetchall()
        return [void_of(r) for r in rows]

    def serialized(
        self, model: str, streams: Sequence[str]
    ) -> contextlib.AbstractContextManager[None]:
        """Nothing to hold: one process decides on the file's lab results (under the model
        slot's lock); other processes only read it."""
        return contextlib.nullcontext()
