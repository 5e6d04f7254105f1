"""SQLite as the store uses it: WAL connections, explicit transactions, named errors.

Only the stdlib (sqlite3). A store failure is a ``StoreError`` naming the file and what was
being done, mapped to HTTP in one place (``service.api.errors``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from service.lab.errors import StoreConflictError, StoreError
from service.lab.records import finite, optional_finite, text

__all__ = [
    "StoreConflictError",
    "StoreError",
    "connect",
    "errors",
    "finite",
    "is_busy",
    "optional_finite",
    "text",
    "transaction",
]

BUSY_TIMEOUT_S = 10.0  # wait this long for another writer (process) before failing


def connect(path: Path, synchronous: str, timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL on."""
    try:
        conn = sqlite3.connect(
            path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(path, f"cannot open database: {exc}") from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a file system without shared memory
            raise StoreError(path, f"cannot enable WAL journal (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(path, f"cannot configure database: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds the write lock (SQLITE_BUSY)."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


@contextlib.contextmanager
def errors(path: Path, action: str) -> Iterator[None]:
    """Turn sqlite3's errors into StoreError naming the file and the action."""
    try:
        yield
    except sqlite3.Error as exc:  # incl. ProgrammingError on a closed store
        raise StoreError(path, f"cannot {action}: {exc}") from exc


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed whole, or rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
