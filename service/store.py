"""The durable store: lab results (acknowledged means on disk) and recent predictions.

Lab results are rare and precious: a lab technician will not re-enter a value the service
acknowledged and then lost. So :meth:`LabStore.add` commits with ``synchronous=FULL`` in
WAL mode (the WAL is fsynced at every commit) before it returns, and the reply the service
sends afterwards is a promise kept across a kill or a power cut. Adding the same result
twice is harmless (idempotent on ``(model, sample_time)``), so a client may retry freely.

Predictions are the other half of a residual: a lab result sampled at ``t`` is compared to
the estimate the model gave for ``t``. They are many and replaceable, so they go through a
second connection with ``synchronous=NORMAL`` (still crash-consistent in WAL mode; a power
cut may lose the last few) in batched transactions, and are pruned to a bounded age.

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
from pathlib import Path
from types import TracebackType
from typing import Any

from service.errors import PathError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0  # wait this long for another writer (process) before failing
MAX_LIST = 10_000  # a listing is for people and the retraining job; page with ``since``

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lab_results (
    model TEXT NOT NULL,
    sample_time REAL NOT NULL,
    value REAL NOT NULL,
    received REAL NOT NULL,
    estimate REAL,
    residual REAL,
    accepted INTEGER NOT NULL,
    reason TEXT,
    PRIMARY KEY (model, sample_time)
);
CREATE INDEX IF NOT EXISTS lab_results_time ON lab_results (sample_time);
CREATE TABLE IF NOT EXISTS predictions (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    sample_time REAL NOT NULL,
    estimate REAL NOT NULL,
    PRIMARY KEY (model, stream, sample_time)
);
CREATE INDEX IF NOT EXISTS predictions_model_time ON predictions (model, sample_time);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (sample_time);
"""


# --------------------------------------------------------------------------- errors


class StoreError(PathError):
    """Base of every store failure; ``status`` lets the service map it to HTTP in one place.

    Most are the server's trouble (disk full, database locked or corrupt): 500.
    """


class StoreConflictError(StoreError):
    """A lab result for that model and sample time is stored with a different value.

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


def _finite(field: str, value: float) -> float:
    """``value`` as a float; a NaN or infinity is the client's mistake, named."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return number


def _optional_finite(field: str, value: float | None) -> float | None:
    return None if value is None else _finite(field, value)


def _record(row: tuple[Any, ...]) -> LabRecord:
    """A LabRecord from a ``SELECT model, sample_time, ..., reason`` row."""
    model, sample_time, value, received, estimate, residual, accepted, reason = row
    return LabRecord(
        model, sample_time, value, received, estimate, residual, bool(accepted), reason
    )


def _text(field: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    return value


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
        """Create the tables if absent; refuse a file written by a newer schema."""
        with self._lab_lock, self._errors("create schema"):
            self._lab.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._lab.execute(statement)
                row = self._lab.execute("SELECT MAX(version) FROM schema_version").fetchone()
                if row[0] is None:
                    self._lab.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
                    )
                elif row[0] > SCHEMA_VERSION:
                    raise StoreError(
                        self.path,
                        f"schema version {row[0]} is newer than this service's {SCHEMA_VERSION}",
                    )
                self._lab.execute("COMMIT")
            except BaseException:
                self._lab.execute("ROLLBACK")
                raise

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
    ) -> bool:
        """Store a lab result durably; True if new, False if already stored (unchanged).

        Returns only after the commit reached the disk. A second add of the same
        ``(model, sample_time)`` with the same ``value`` is a retry: it returns False and
        changes nothing (the stored estimate, residual and decision stay those of the
        first). With a different ``value`` it raises :class:`StoreConflictError` (409).
        NaN or infinite numbers raise ValueError naming the field.
        """
        if reason is not None and not isinstance(reason, str):
            raise ValueError(f"reason must be a string or None, got {reason!r}")
        row = (
            _text("model", model),
            _finite("sample_time", sample_time),
            _finite("value", value),
            _finite("received", received),
            _optional_finite("estimate", estimate),
            _optional_finite("residual", residual),
            int(bool(accepted)),
            reason,
        )
        with self._lab_lock, self._errors("store lab result"):
            cursor = self._lab.execute(
                "INSERT INTO lab_results (model, sample_time, value, received, estimate,"
                " residual, accepted, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (model, sample_time) DO NOTHING",
                row,
            )
            if cursor.rowcount == 1:  # autocommit: the statement's commit is done (FULL)
                return True
            stored = self._lab.execute(
                "SELECT value FROM lab_results WHERE model = ? AND sample_time = ?",
                (row[0], row[1]),
            ).fetchone()
        if stored is not None and stored[0] == row[2]:
            return False
        raise StoreConflictError(
            self.path,
            f"lab result of {model!r} at sample_time {sample_time} is stored with value "
            f"{None if stored is None else stored[0]}, not {value}; stored results are "
            "never overwritten",
        )

    def list(
        self, model: str | None = None, since: float | None = None, limit: int = 100
    ) -> builtins.list[LabRecord]:
        """Stored lab results, newest sample first; ``since`` keeps sample_time >= it."""
        if not 1 <= limit <= MAX_LIST:
            raise ValueError(f"limit must be in 1..{MAX_LIST}, got {limit}")
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        if model is not None:
            clauses.append("model = ?")
            params.append(_text("model", model))
        if since is not None:
            clauses.append("sample_time >= ?")
            params.append(_finite("since", since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            "SELECT model, sample_time, value, received, estimate, residual, accepted, reason"
            f" FROM lab_results {where} ORDER BY sample_time DESC, model LIMIT ?"
        )
        with self._lab_lock, self._errors("list lab results"):
            rows = self._lab.execute(query, (*params, limit)).fetchall()
        return [_record(r) for r in rows]

    def get(self, model: str, sample_time: float) -> LabRecord | None:
        """The stored result for (model, sample time), if any: tells a retry from news."""
        query = (
            "SELECT model, sample_time, value, received, estimate, residual, accepted, reason"
            " FROM lab_results WHERE model = ? AND sample_time = ?"
        )
        params = (_text("model", model), _finite("sample_time", sample_time))
        with self._lab_lock, self._errors("read a lab result"):
            row = self._lab.execute(query, params).fetchone()
        return None if row is None else _record(row)

    def accepted(self, model: str) -> builtins.list[LabRecord]:
        """Every accepted result of a model, oldest first: replaying them restores the bias."""
        query = (
            "SELECT model, sample_time, value, received, estimate, residual, accepted, reason"
            " FROM lab_results WHERE model = ? AND accepted = 1 ORDER BY sample_time"
        )
        with self._lab_lock, self._errors("replay lab results"):
            rows = self._lab.execute(query, (_text("model", model),)).fetchall()
        return [_record(r) for r in rows]

    def latest(self, model: str) -> LabRecord | None:
        """The result received last for a model (accepted or not): after a restart, the
        age of the analyzer's last word is known again."""
        query = (
            "SELECT model, sample_time, value, received, estimate, residual, accepted, reason"
            " FROM lab_results WHERE model = ? ORDER BY received DESC, sample_time DESC LIMIT 1"
        )
        with self._lab_lock, self._errors("read the latest lab result"):
            row = self._lab.execute(query, (_text("model", model),)).fetchone()
        return None if row is None else _record(row)

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
        values = [
            (
                model,
                stream,
                _finite(f"rows[{i}].sample_time", t),
                _finite(f"rows[{i}].estimate", e),
            )
            for i, (t, e) in enumerate(rows)
        ]
        if not values:
            return 0
        with self._pred_lock, self._errors("store predictions"):
            self._pred.execute("BEGIN IMMEDIATE")
            try:
                self._pred.executemany(
                    "INSERT OR REPLACE INTO predictions (model, stream, sample_time, estimate)"
                    " VALUES (?, ?, ?, ?)",
                    values,
                )
                self._pred.execute("COMMIT")
            except BaseException:
                self._pred.execute("ROLLBACK")
                raise
        return len(values)

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
        params: list[Any] = [t, _text("model", model), t - tol, t + tol]
        stream_clause = ""
        if stream is not None:
            stream_clause = " AND stream = ?"
            params.append(_text("stream", stream))
        query = (
            "SELECT estimate, ABS(sample_time - ?) AS distance FROM predictions"
            f" WHERE model = ? AND sample_time BETWEEN ? AND ?{stream_clause}"
            " ORDER BY distance, sample_time DESC, stream LIMIT 1"
        )
        with self._pred_lock, self._errors("find prediction"):
            row = self._pred.execute(query, params).fetchone()
        return None if row is None else float(row[0])

    def prune_predictions(self, older_than: float) -> int:
        """Delete predictions sampled before ``older_than`` (POSIX s); returns how many.

        Predictions matter only until their lab result can arrive, so retention is
        bounded by a few analyzer delays or the lab turnaround; the caller decides.
        """
        cutoff = _finite("older_than", older_than)
        with self._pred_lock, self._errors("prune predictions"):
            cursor = self._pred.execute("DELETE FROM predictions WHERE sample_time < ?", (cutoff,))
            return cursor.rowcount
