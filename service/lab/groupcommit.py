"""Group commit: writes handed over by the event loop, committed together by one thread.

A scored batch's predictions must be durable before its answers go out (a lab result
reported after a kill -9 must still find its estimate), but the commit must not run on the
event loop: it waits for SQLite's writer lock, which a lab-result transaction holds through
its fsync. The loop hands each batch's rows to this writer and awaits the returned future;
the writer takes everything handed over since its last commit and writes it in one call
(one transaction), so a busy service pays one commit per few batches.

At low load the hand-over costs more than the write: the thread's wake-up, the GIL passed
back and forth, the loop woken again. So when the writer is idle and nothing waits, the
caller may write at once (``write_now``), provided that cannot wait either (it declines
when the file's write lock is taken), which keeps the order of the writes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("softsensor")
Rows = list[Any]


class GroupCommit:
    """One writer thread; ``submit`` from any thread, ``close`` writes what is left."""

    def __init__(
        self,
        write: Callable[[Rows], None],
        name: str = "group-commit",
        write_now: Callable[[Rows], bool] | None = None,
        after: Callable[[], object] | None = None,
    ) -> None:
        self._write = write
        self._write_now = write_now
        self._after = after  # the thread's upkeep once a group's futures are done
        self._pending: list[tuple[Rows, concurrent.futures.Future[None]]] = []
        self._wake = threading.Condition()
        self._closing = False
        self._writing = False  # a write in progress, by the thread or by ``write``
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, rows: Rows) -> concurrent.futures.Future[None]:
        """A future done once ``rows`` are written (or failed with the writer's error)."""
        with self._wake:
            return self._append(rows)

    def _append(self, rows: Rows) -> concurrent.futures.Future[None]:
        """Queue ``rows`` for the thread (the condition's lock held)."""
        if self._closing:
            raise RuntimeError("the group commit writer is closed")
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._pending.append((rows, future))
        self._wake.notify()
        return future

    def write(self, rows: Rows) -> concurrent.futures.Future[None] | None:
        """None once ``rows`` are written here and now; else the future of ``submit``.

        Written here only when the writer is idle with nothing pending and ``write_now``
        could write without waiting; its errors are raised here, as ``submit``'s future
        would have them.
        """
        if self._write_now is None:
            return self.submit(rows)
        with self._wake:
            if self._pending or self._writing or self._closing:
                return self._append(rows)
            self._writing = True
        try:
            done = self._write_now(rows)
        finally:
            with self._wake:
                self._writing = False
                if self._pending:
                    self._wake.notify()
        return None if done else self.submit(rows)

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            with self._wake:
                while (self._writing or not self._pending) and not self._closing:
                    self._wake.wait()
                while self._writing:  # closing: let the caller's write end first
                    self._wake.wait()
                group, self._pending = self._pending, []
                if not group and self._closing:
                    return
                self._writing = True
            rows = [row for part, _ in group for row in part]
            try:
                self._write(rows)
            except Exception as exc:  # each waiting batch gets the error as its answer
                for _, future in group:
                    future.set_exception(exc)
            else:
                for _, future in group:
                    future.set_result(None)
            finally:
                with self._wake:
                    self._writing = False
            self._upkeep()

    def _upkeep(self) -> None:
        """``after``, with nobody waiting for it (its failure is logged, the thread goes on)."""
        if self._after is None:
            return
        try:
            self._after()
        except Exception:
            log.exception("%s: upkeep after a write failed", self._thread.name)
