"""The durable store: lab results (acknowledged means on disk) and the prediction log.

Lab results are rare and precious: a lab technician will not re-enter a value the service
acknowledged and then lost. So :meth:`LabStore.add_many` writes a request's results in one
transaction, committed with ``synchronous=FULL`` in WAL mode (the WAL is fsynced at every
commit) before it returns: the reply the service sends afterwards is a promise kept across a
kill or a power cut, and a request killed midway stored nothing. Adding the same result
twice is harmless (idempotent on ``(model, stream, sample_time)``), so a client may retry.

Predictions are the other half of a residual: a lab result sampled at ``t`` on a stream is
compared to the estimate that stream was given for ``t``. They are many and replaceable, so
they go through a second connection with ``synchronous=NORMAL`` (crash-consistent in WAL
mode: a kill loses nothing committed, a power cut may lose the last few), one transaction
per scored batch, keyed and searched by ``(model, stream, sample_time)`` so that finding one
costs the same however long the log is; retention is the caller's (data-time) choice.

Only the stdlib (sqlite3) is used. One connection per purpose, each behind its own lock,
shared by the service's worker threads; SQLite's own locking (with a busy timeout)
arbitrates between the two connections and other processes (e.g. the retraining job).
"""

from __future__ import annotations

import builtins
import contextlib
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.errors import PathError

SCHEMA_VERSION = 2
DEFAULT_STREAM = "default"  # the stream of results and rows that name none
BUSY_TIMEOUT_S = 10.0  # wait this long for another writer (process) before failing
MAX_LIST = 10_000  # a listing is for people and the retraining job; page with ``since``
_LAB_COLUMNS = "model, stream, sample_time, value, received, estimate, residual, accepted, reason"

_TABLES = """
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
           accepted, reason FROM lab_results_v1;
DROP TABLE lab_results_v1;
"""


# --------------------------------------------------------------------------- errors


class StoreError(PathError):
    """Base of every store failure; ``status`` lets the service map it to HTTP in one place.

    Most are the server's trouble (disk full, database locked or corrupt): 500.
    """


class StoreConflictError(StoreError):
    """A lab result for that model, stream and sample time is stored with another value.

    Stored results are never overwritten: the first value was acknowledged and may already
    have moved the bias. Correcting a lab value is a human decision, not a retry.
    """

    default_status = 409


# --------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class LabRecord:
    """One stored lab result, as the service saw it when it arrived."""

    model: str
    sample_time: float  # POSIX s: when the sample was taken (not when it was analyzed)
    value: float
    received: float  # POSIX s: when the service stored it
    estimate: float | None  # raw estimate matched at sample_time, None if none was found
    residual: float | None  # value - estimate
    accepted: bool  # whether it moved the bias
    reason: str | None  # why not, if not
    stream: str = DEFAULT_STREAM


def _finite(field: str, value: float) -> float:
    """``value`` as a float; a NaN or infinity is the client's mistake, named."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return number


def _optional_finite(field: str, value: float | None) -> float | None:
    return None if value is None else _finite(field, value)


def _text(field: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    return value


def _record(row: tuple[Any, ...]) -> LabRecord:
    """A LabRecord from a ``SELECT {_LAB_COLUMNS}`` row."""
    model, stream, sample_time, value, received, estimate, residual, accepted, reason = row
    return LabRecord(
        model, sample_time, value, received, estimate, residual, bool(accepted), reason, stream
    )


def _row(r: LabRecord) -> tuple[Any, ...]:
    """The validated column values of ``r``, in ``_LAB_COLUMNS`` order."""
    if r.reason is not None and not isinstance(r.reason, str):
        raise ValueError(f"reason must be a string or None, got {r.reason!r}")
    return (
        _text("model", r.model),
        _text("stream", r.stream),
        _finite("sample_time", r.sample_time),
        _finite("value", r.value),
        _finite("received", r.received),
        _optional_finite("estimate", r.estimate),
        _optional_finite("residual", r.residual),
        int(bool(r.accepted)),
        r.reason,
    )


# --------------------------------------------------------------------------- store


class LabStore:
    """Lab results and predictions in one SQLite file (WAL mode)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(self.path, f"cannot create directory: {exc}") from exc
        self._lab_lock = threading.Lock()
        self._pred_lock = threading.Lock()
        self._lab = self._connect("FULL")
        try:
            self._create_schema()
            self._pred = self._connect("NORMAL")
        except BaseException:
            self._lab.close()
            raise
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit) with WAL on."""
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"cannot open database: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # e.g. a file system without shared memory
                raise StoreError(self.path, f"cannot enable WAL journal (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(self.path, f"cannot configure database: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_schema(self) -> None:
        """Create the tables, or migrate a version-1 file; refuse a newer schema."""
        with self._lab_lock, self._errors("create schema"), self._transaction(self._lab):
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
            script = _TABLES if version is None else _FROM_V1
            for statement in script.split(";"):
                if statement.strip():
                    self._lab.execute(statement)
            self._lab.execute("DELETE FROM schema_version")
            self._lab.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        """Close both connections; later calls fail, a second close does nothing."""
        with self._lab_lock, self._pred_lock:
            if self._closed:
                return
            self._closed = True
            self._pred.close()
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

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn sqlite3's errors into StoreError naming the file and the action."""
        try:
            yield
        except sqlite3.Error as exc:  # incl. ProgrammingError on a closed store
            raise StoreError(self.path, f"cannot {action}: {exc}") from exc

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        """One write transaction: committed whole, or rolled back on any exception."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def pragmas(self) -> dict[str, Any]:
        """The durability settings actually in force, per connection (for checks and logs)."""
        with self._lab_lock, self._errors("read pragmas"):
            lab_mode = self._lab.execute("PRAGMA journal_mode").fetchone()[0]
            lab_sync = self._lab.execute("PRAGMA synchronous").fetchone()[0]
        with self._pred_lock, self._errors("read pragmas"):
            pred_sync = self._pred.execute("PRAGMA synchronous").fetchone()[0]
        return {
            "journal_mode": lab_mode,
            "synchronous": lab_sync,
            "predictions_synchronous": pred_sync,
        }

    # ------------------------------------------------------------------ lab results

    def add(
        self,
        model: str,
        sample_time: float,
        value: float,
        received: float,
        estimate: float | None = None,
        residual: float | None = None,
        accepted: bool = False,
        reason: str | None = None,
        *,
        stream: str = DEFAULT_STREAM,
    ) -> bool:
        """Store one lab result durably; True if new, False if already stored (unchanged).

        See :meth:`add_many`, of which this is the one-result case.
        """
        record = LabRecord(
            model, sample_time, value, received, estimate, residual, accepted, reason, stream
        )
        return self.add_many([record])[0]

    def add_many(self, records: Sequence[LabRecord]) -> list[bool]:
        """Store results in one transaction; per result, True if new, False if a retry.

        Returns only after the commit reached the disk. A result whose ``(model, stream,
        sample_time)`` is stored with the same ``value`` is a retry: False, and the stored
        estimate, residual and decision stay those of the first. One stored with another
        value raises :class:`StoreConflictError` (409) and nothing of the batch is stored.
        NaN or infinite numbers raise ValueError naming the field, before anything is written.
        """
        rows = [_row(r) for r in records]
        new = []
        with self._lab_lock, self._errors("store lab results"), self._transaction(self._lab):
            for row in rows:
                cursor = self._lab.execute(
                    f"INSERT INTO lab_results ({_LAB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (model, stream, sample_time) DO NOTHING",
                    row,
                )
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
        if not 1 <= limit <= MAX_LIST:
            raise ValueError(f"limit must be in 1..{MAX_LIST}, got {limit}")
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        for column, value in (("model", model), ("stream", stream)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(_text(column, value))
        if since is not None:
            clauses.append("sample_time >= ?")
            params.append(_finite("since", since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            f"SELECT {_LAB_COLUMNS} FROM lab_results {where}"
            " ORDER BY sample_time DESC, model, stream LIMIT ?"
        )
        with self._lab_lock, self._errors("list lab results"):
            rows = self._lab.execute(query, (*params, limit)).fetchall()
        return [_record(r) for r in rows]

    def get(self, model: str, sample_time: float, stream: str = DEFAULT_STREAM) -> LabRecord | None:
        """The stored result for (model, stream, sample time), if any."""
        query = (
            f"SELECT {_LAB_COLUMNS} FROM lab_results"
            " WHERE model = ? AND stream = ? AND sample_time = ?"
        )
        params = (
            _text("model", model),
            _text("stream", stream),
            _finite("sample_time", sample_time),
        )
        with self._lab_lock, self._errors("read a lab result"):
            row = self._lab.execute(query, params).fetchone()
        return None if row is None else _record(row)

    def history(self, model: str, stream: str) -> builtins.list[LabRecord]:
        """Every result of a stream, oldest sample first: replaying the accepted ones
        restores its bias and residual test, the last received its analyzer age."""
        query = (
            f"SELECT {_LAB_COLUMNS} FROM lab_results WHERE model = ? AND stream = ?"
            " ORDER BY sample_time"
        )
        with self._lab_lock, self._errors("replay lab results"):
            rows = self._lab.execute(query, (_text("model", model), _text("stream", stream)))
            return [_record(r) for r in rows.fetchall()]

    def streams(self, model: str) -> builtins.list[str]:
        """The streams of a model that have lab results (restored when the service starts)."""
        query = "SELECT DISTINCT stream FROM lab_results WHERE model = ? ORDER BY stream"
        with self._lab_lock, self._errors("list streams"):
            return [r[0] for r in self._lab.execute(query, (_text("model", model),)).fetchall()]

    # ------------------------------------------------------------------ predictions

    def record_predictions(
        self, model: str, stream: str, rows: Sequence[tuple[float, float]]
    ) -> int:
        """Store ``(sample_time, estimate)`` pairs of one stream in one transaction.

        A prediction for a time already stored replaces it (the latest model's word
        counts). Validated before anything is written: a bad row stores nothing and
        raises ValueError naming it. Returns the number of rows written.
        """
        _text("model", model)
        _text("stream", stream)
        for i, (t, e) in enumerate(rows):
            _finite(f"rows[{i}].sample_time", t)
            _finite(f"rows[{i}].estimate", e)
        times = np.array([t for t, _ in rows], dtype=np.float64)
        estimates = np.array([e for _, e in rows], dtype=np.float64)
        return self.record_batches([(model, stream, times, estimates)])

    def record_batches(
        self, batches: Sequence[tuple[str, str, NDArray[np.float64], NDArray[np.float64]]]
    ) -> int:
        """Store several streams' ``(model, stream, times, estimates)`` in one transaction
        (the requests scored together); the arrays must be finite. Returns the rows written."""
        for model, stream, times, estimates in batches:
            if times.shape != estimates.shape or not (
                np.isfinite(times).all() and np.isfinite(estimates).all()
            ):
                raise ValueError(f"predictions of {model}/{stream}: need finite, equal arrays")
        total = sum(len(b[2]) for b in batches)
        if total == 0:
            return 0
        with self._pred_lock, self._errors("store predictions"), self._transaction(self._pred):
            for model, stream, times, estimates in batches:
                self._pred.executemany(
                    "INSERT OR REPLACE INTO predictions (model, stream, sample_time, estimate)"
                    " VALUES (?, ?, ?, ?)",
                    zip(repeat(model), repeat(stream), times.tolist(), estimates.tolist()),
                )
        return total

    def find_prediction(
        self,
        model: str,
        sample_time: float,
        tolerance_s: float,
        stream: str | None = None,
    ) -> float | None:
        """The stored estimate nearest to ``sample_time`` within ``±tolerance_s``, or None.

        Any stream unless ``stream`` is given. On a tie in distance the later prediction
        wins, then the first stream by name, so the answer is deterministic.
        """
        t = _finite("sample_time", sample_time)
        tol = _finite("tolerance_s", tolerance_s)
        if tol < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        params: builtins.list[Any] = [t, _text("model", model)]
        stream_clause = ""
        if stream is not None:
            stream_clause = " AND stream = ?"
            params.append(_text("stream", stream))
        query = (
            "SELECT estimate, ABS(sample_time - ?) AS distance FROM predictions"
            f" WHERE model = ?{stream_clause} AND sample_time BETWEEN ? AND ?"
            " ORDER BY distance, sample_time DESC, stream LIMIT 1"
        )
        with self._pred_lock, self._errors("find prediction"):
            row = self._pred.execute(query, [*params, t - tol, t + tol]).fetchone()
        return None if row is None else float(row[0])

    def latest_prediction(self, model: str, stream: str) -> float | None:
        """The newest sample time estimated for a stream: its data clock after a restart."""
        query = "SELECT MAX(sample_time) FROM predictions WHERE model = ? AND stream = ?"
        with self._pred_lock, self._errors("read the prediction log"):
            row = self._pred.execute(query, (_text("model", model), _text("stream", stream)))
            value = row.fetchone()[0]
        return None if value is None else float(value)

    def prune_predictions(
        self, older_than: float, model: str | None = None, stream: str | None = None
    ) -> int:
        """Delete predictions sampled before ``older_than`` (POSIX s), of one stream when
        ``model`` and ``stream`` are given (an indexed range), else of all; returns how many.

        Predictions matter only until their lab result can arrive, so retention is a few
        analyzer delays or the lab turnaround; the caller decides, on the data's clock.
        """
        cutoff = _finite("older_than", older_than)
        if model is not None and stream is not None:
            query = "DELETE FROM predictions WHERE model = ? AND stream = ? AND sample_time < ?"
            params: tuple[Any, ...] = (_text("model", model), _text("stream", stream), cutoff)
        else:
            query, params = "DELETE FROM predictions WHERE sample_time < ?", (cutoff,)
        with self._pred_lock, self._errors("prune predictions"):
            return self._pred.execute(query, params).rowcount
