"""The prediction log: each stream's estimate per sample time, for lab results to match.

Predictions are many and replaceable, so they go through their own connection with
``synchronous=NORMAL`` (crash-consistent in WAL mode: a kill loses nothing committed, a power
cut may lose the last few), one transaction per scored batch, keyed and searched by
``(model, stream, sample_time)`` so that finding one costs the same however long the log is;
retention is the caller's (data-time) choice. The table lives in the store's file
(``service.lab.store`` creates it).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

from service.lab.errors import StoreError
from service.lab.records import (
    PredictionBatch,
    check_batches,
    finite,
    nearest_query,
    prediction_batch,
    text,
)
from service.lab.sqlite import connect, errors, is_busy, transaction
from service.lab.statestore import SavedState

_INSERT = (
    "INSERT OR REPLACE INTO predictions (model, stream, sample_time, estimate) VALUES (?, ?, ?, ?)"
)
NOW_HANDOVER = 256  # one write in this many goes to the writer thread (WAL checkpoints)
CHECKPOINT_COMMITS = 1000  # commits between checkpoints (SQLite's own default: 1000 pages)


class PredictionLog:
    """Predictions in the store's SQLite file, through a connection of their own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Neither connection checkpoints inside a commit: SQLite's automatic checkpoint runs
        # in the commit that crosses its threshold, so one request in a thousand waited for
        # the copy and its two fsyncs, however long the disk took. ``checkpoint`` runs it on
        # the writer thread once the answers of its batch have gone out.
        self._conn = connect(path, "NORMAL")
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        # The event loop's own connection, for writes that must not wait: no busy timeout.
        self._now = connect(path, "NORMAL", timeout_s=0.0)
        self._now.execute("PRAGMA wal_autocheckpoint=0")
        self._now_lock = threading.Lock()
        self._now_writes = 0
        self._commits = 0  # since the last checkpoint, by either connection

    def close(self) -> None:
        with self._lock, self._now_lock:
            self._conn.close()
            self._now.close()

    def synchronous(self) -> Any:
        with self._lock, self._errors("read pragmas"):
            return self._conn.execute("PRAGMA synchronous").fetchone()[0]

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return errors(self.path, action)

    def record(self, model: str, stream: str, rows: Sequence[tuple[float, float]]) -> int:
        """Store ``(sample_time, estimate)`` pairs of one stream in one transaction.

        A prediction for a time already stored replaces it (the latest model's word
        counts). Validated before anything is written: a bad row stores nothing and
        raises ValueError naming it. Returns the number of rows written.
        """
        return self.record_batches([prediction_batch(model, stream, rows)])

    def record_batches(
        self, batches: Sequence[PredictionBatch], states: Sequence[SavedState] = ()
    ) -> int:
        """Store several streams' ``(model, stream, times, estimates)`` in one transaction
        (the requests scored together); the arrays must be finite. Returns the rows written.

        ``states`` are ignored: one process owns the file, its streams live in its memory.
        """
        total = check_batches(batches)
        if total == 0:
            return 0
        with self._lock, self._errors("store predictions"), transaction(self._conn):
            self._insert(self._conn, batches)
        self._commits += 1
        return total

    def checkpoint(self) -> bool:
        """Copy the WAL back into the database file once ``CHECKPOINT_COMMITS`` commits have
        gone into it (PASSIVE: it never waits for, nor blocks, a writer). Returns whether it
        ran. For the writer thread, after it has released its batch's answers."""
        if self._commits < CHECKPOINT_COMMITS:
            return False
        self._commits = 0
        with self._lock, self._errors("checkpoint the write-ahead log"):
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return True

    def record_batches_now(self, batches: Sequence[PredictionBatch]) -> bool:
        """``record_batches`` if it can be done without waiting, else False (nothing written).

        For the event loop at low load: the hand-over to the writer thread and back cost
        more than the insert itself. It gives up at once when another connection holds the
        write lock (a lab result's transaction through its fsync, the writer thread) and,
        every ``NOW_HANDOVER`` writes, leaves one to the writer thread, which then
        checkpoints the WAL when it is due (``checkpoint``).
        """
        check_batches(batches)
        if not self._now_lock.acquire(blocking=False):
            return False
        try:
            self._now_writes += 1
            if self._now_writes % NOW_HANDOVER == 0:
                return False
            try:
                with self._errors("store predictions"):
                    if len(batches) == 1 and len(batches[0][2]) == 1:  # one statement, atomic
                        self._insert(self._now, batches)
                    else:
                        with transaction(self._now):
                            self._insert(self._now, batches)
                self._commits += 1
            except StoreError as exc:
                if isinstance(exc.__cause__, sqlite3.Error) and is_busy(exc.__cause__):
                    return False
                raise
            return True
        finally:
            self._now_lock.release()

    @staticmethod
    def _insert(conn: sqlite3.Connection, batches: Sequence[PredictionBatch]) -> None:
        for model, stream, times, estimates in batches:
            if len(times) == 1:  # a poll's row
                conn.execute(_INSERT, (model, stream, float(times[0]), float(estimates[0])))
                continue
            conn.executemany(
                _INSERT, zip(repeat(model), repeat(stream), times.tolist(), estimates.tolist())
            )

    def find(
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
        query, params = nearest_query(model, sample_time, tolerance_s, stream, "?")
        with self._lock, self._errors("find prediction"):
            row = self._conn.execute(query, params).fetchone()
        return None if row is None else float(row[0])

    def latest(self, model: str, stream: str) -> float | None:
        """The newest sample time estimated for a stream: its data clock after a restart."""
        query = "SELECT MAX(sample_time) FROM predictions WHERE model = ? AND stream = ?"
        with self._lock, self._errors("read the prediction log"):
            row = self._conn.execute(query, (text("model", model), text("stream", stream)))
            value = row.fetchone()[0]
        return None if value is None else float(value)

    def prune(self, older_than: float, model: str | None = None, stream: str | None = None) -> int:
        """Delete predictions sampled before ``older_than`` (POSIX s), of one stream when
        ``model`` and ``stream`` are given (an indexed range), else of all; returns how many.

        Predictions matter only until their lab result can arrive, so retention is a few
        analyzer delays or the lab turnaround; the caller decides, on the data's clock.
        """
        cutoff = finite("older_than", older_than)
        if model is not None and stream is not None:
            query = "DELETE FROM predictions WHERE model = ? AND stream = ? AND sample_time < ?"
            params: tuple[Any, ...] = (text("model", model), text("stream", stream), cutoff)
        else:
            query, params = "DELETE FROM predictions WHERE sample_time < ?", (cutoff,)
        with self._lock, self._errors("prune predictions"):
            return self._conn.execute(query, params).rowcount

    def load_state(self, model: str, stream: str, unless: str) -> SavedState | None:
        """Never anything: no other process serves from this file."""
        return None
