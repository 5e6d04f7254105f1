"""Group commit: writes handed over by the event loop, committed together by one thread.

A scored batch's predictions must be durable before its answers go out (a lab result
reported after a kill -9 must still find its estimate), but the commit must not run on the
event loop: it waits for SQLite's writer lock, which a lab-result transaction holds through
its fsync. The loop hands each batch's rows to this writer and awaits the returned future;
the writer takes everything handed over since its last commit and writes it in one call
(one transaction), so a busy service pays one commit per few batches.
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

    def __init__(self, write: Callable[[Rows], None], name: str = "group-commit") -> None:
        self._write = write
        self._pending: list[tuple[Rows, concurrent.futures.Future[None]]] = []
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, rows: Rows) -> concurrent.futures.Future[None]:
        """A future done once ``rows`` are written (or failed with the writer's error)."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._wake:
            if self._closing:
                raise RuntimeError("the group commit writer is closed")
            self._pending.append((rows, future))
            self._wake.notify()
        return future

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                group, self._pending = self._pending, []
                if not group and self._closing:
                    return
            rows = [row for part, _ in group for row in part]
            try:
                self._write(rows)
            except Exception as exc:  # each waiting batch gets the error as its answer
                for _, future in group:
                    future.set_exception(exc)
                continue
            for _, future in group:
                future.set_result(None)
