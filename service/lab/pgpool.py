"""psycopg's connection pool as the PostgreSQL engine uses it, and the one translation of
psycopg's errors into the store's (``service.lab.postgres``).

A server that cannot be reached is a :class:`StoreUnavailableError` (503: retry later); the
pool replaces broken connections by itself, so nothing has to restart when the server is
back. Messages name the server and the database, never the password.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from service.lab.errors import StoreError, StoreUnavailableError

log = logging.getLogger("softsensor")


def describe(url: str) -> str:
    """``host:port/dbname`` of a connection URL: for messages, never the password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"state_url: not a PostgreSQL connection URL: {exc}") from None
    host = info.get("host") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


class Pool:
    """The connection pool and the one translation of psycopg's errors into the store's."""

    def __init__(self, url: str, size: int, timeout_s: float, name: str = "state") -> None:
        self.where = describe(url)
        self.pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                url,
                min_size=1,
                max_size=size,
                timeout=timeout_s,
                open=False,
                kwargs={"autocommit": True, "connect_timeout": max(2, math.ceil(timeout_s))},
                reconnect_timeout=math.inf,  # a server down for long is waited for, not dropped
                name=f"softsensor-{name}",
            )
        )
        with self.errors("connect"):
            self.pool.open(wait=True, timeout=timeout_s)

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """psycopg's errors as StoreError naming the server and the action: a server that
        cannot be reached is a 503 (and the idle connections are checked, so that the next
        request gets a live one), anything else a 500."""
        try:
            yield
        except psycopg_pool.PoolClosed as exc:
            raise StoreError(None, f"cannot {action}: the store is closed") from exc
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("state store %s unavailable (%s): %s", self.where, action, reason)
            with contextlib.suppress(Exception):
                self.pool.check()
            raise StoreUnavailableError(
                None,
                f"cannot {action}: the state database (PostgreSQL at {self.where}) is "
                f"unavailable ({reason}); nothing was stored, retry later",
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(None, f"cannot {action} in PostgreSQL at {self.where}: {exc}") from exc

    @contextlib.contextmanager
    def connection(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        with self.errors(action), self.pool.connection() as conn:
            yield conn
