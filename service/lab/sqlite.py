"""SQLite as the store uses it: WAL connections, explicit transactions, named errors.

Only the stdlib (sqlite3). A store failure is a ``StoreError`` naming the file and what was
being done, mapped to HTTP in one place (``service.api.app``).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from service.contracts.errors import PathError

BUSY_TIMEOUT_S = 10.0  # wait this long for another writer (process) before failing


class StoreError(PathError):
    """Base of every store failure; ``status`` lets the service map it to HTTP in one place.

    Most are the server's trouble (disk full, database locked or corrupt): 500.
    """

    error = "store"


class StoreConflictError(StoreError):
    """A lab result for that model, stream and sample time is stored with another value.

    Stored results are never overwritten: the first value was acknowledged and may already
    have moved the bias. Correcting a lab value is a human decision, not a retry.
    """

    status = 409


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL on."""
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
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


def finite(field: str, value: float) -> float:
    """``value`` as a float; a NaN or infinity is the client's mistake, named."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return number


def optional_finite(field: str, value: float | None) -> float | None:
    return None if value is None else finite(field, value)


def text(field: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    return value
