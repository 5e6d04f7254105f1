"""The prediction log's writes: each scored batch's estimates stored for lab results to
match, and the retention applied as streams go on.

Retention runs on the data's clock: every ``PRUNE_EVERY_ROWS`` rows of a stream, its
predictions older than the retention before its newest row are deleted (an indexed range).
"""

from __future__ import annotations

from collections.abc import Callable

from service.contracts.arrays import FloatArray
from service.lab.statestore import SavedState, StateStore

PRUNE_EVERY_ROWS = 5_000  # a stream's log is pruned to its retention this often
Batch = tuple[str, str, FloatArray, FloatArray]  # model, stream, sample times, estimates
LogRows = list[Batch | SavedState]


class PredictionWriter:
    """Writes a scorer's log to the store; ``write`` from any thread, ``write_now`` from
    the event loop (it never waits)."""

    def __init__(self, store: Callable[[], StateStore], retention_s: float) -> None:
        self._store = store
        self._retention_s = retention_s
        self._unpruned: dict[tuple[str, str], int] = {}

    def write(self, log: LogRows) -> None:
        """Store scored predictions (the lab results' match), then apply the retention."""
        if log:
            batches = [row for row in log if not isinstance(row, SavedState)]
            latest = {(r.model, r.stream): r for r in log if isinstance(r, SavedState)}
            self._store().predictions.record_batches(batches, list(latest.values()))
            self._prune(batches)

    def write_now(self, log: LogRows) -> bool:
        """``write`` if the store can take it at once without waiting (SQLite's connection
        for the loop) and no retention pass is due, else False with nothing written."""
        batches = [row for row in log if not isinstance(row, SavedState)]
        if len(batches) != len(log) or any(self._prune_due(b) for b in batches):
            return False  # replicas' stream states, or a delete: the writer thread's work
        record_now = getattr(self._store().predictions, "record_batches_now", None)
        if record_now is None or not record_now(batches):
            return False
        self._prune(batches)  # counts the rows toward the next retention pass
        return True

    def checkpoint(self) -> None:
        """The store's upkeep after a write (SQLite: its WAL checkpoint, when due)."""
        checkpoint = getattr(self._store().predictions, "checkpoint", None)
        if checkpoint is not None:
            checkpoint()

    def _prune_due(self, batch: Batch) -> bool:
        model, stream, times, _ = batch
        return self._unpruned.get((model, stream), 0) + len(times) >= PRUNE_EVERY_ROWS

    def _prune(self, batches: list[Batch]) -> None:
        for model, stream, times, _ in batches:
            key = (model, stream)
            due = self._unpruned.get(key, 0) + len(times)
            if due < PRUNE_EVERY_ROWS:
                self._unpruned[key] = due
                continue
            self._unpruned[key] = 0
            cutoff = float(times[-1]) - self._retention_s
            self._store().predictions.prune(cutoff, model, stream)
