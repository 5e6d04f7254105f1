"""PostgreSQL as the store of a fleet: every replica reads and writes the same database.

The engine of ``StateStore`` for ``SOFTSENSOR_STATE_URL=postgresql://...``, on psycopg 3 and
its connection pool. The guarantees are the embedded engine's: a lab result is acknowledged
only after its transaction committed (``synchronous_commit`` as the server sets it, ``on``
by default: the WAL flushed); a request's results are stored whole or not at all; adding the
same result twice is a harmless retry, another value for it is a 409. What sharing adds:

- two replicas deciding lab results of one stream at once are serialized by a transaction
  advisory lock per (model, stream) (:meth:`PostgresStore.serialized`), so a bias is always
  moved from the latest stored results, never from a stale copy;
- a stream's carried state (lag history, data clock, trackers) is saved with its
  predictions, so the next request may land on any replica (``service.state.snapshot``).

A server that cannot be reached (down, restarting) raises ``StoreUnavailableError``
(503, nothing stored); the pool replaces broken connections, so the service recovers by
itself when the server is back (``service.lab.pgpool``). The schema is versioned in
``service.lab.migrations``.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import Iterator, Sequence
from itertools import repeat
from types import TracebackType
from typing import Any

import psycopg

from service.lab.errors import LabResultNotFoundError, StoreConflictError, StoreError
from service.lab.migrations import migrations
from service.lab.pgpool import Pool
from service.lab.records import (
    DEFAULT_STREAM,
    LAB_COLUMNS,
    VOID_COLUMNS,
    LabRecord,
    PredictionBatch,
    VoidRecord,
    check_batches,
    check_limit,
    check_void,
    finite,
    list_filter,
    nearest_query,
    not_stored,
    prediction_batch,
    record_of,
    row_of,
    text,
    void_of,
)
from service.lab.statestore import SavedState

log = logging.getLogger("softsensor")
MIGRATION_LOCK = 7_317_001  # the advisory lock replicas starting together migrate under
_INSERT_LAB = (
    f"INSERT INTO lab_results ({LAB_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (model, stream, sample_time) DO NOTHING"
)
_UPSERT_PREDICTION = (
    "INSERT INTO predictions (model, stream, sample_time, estimate) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (model, stream, sample_time) DO UPDATE SET estimate = EXCLUDED.estimate"
)
_UPSERT_STATE = (
    "INSERT INTO stream_state (model, stream, token, version, payload)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model, stream) DO UPDATE SET"
    " token = EXCLUDED.token, version = EXCLUDED.version, payload = EXCLUDED.payload"
)


class PostgresPredictionLog:
    """The prediction log and the streams' saved states, in the shared database.

    Predictions alone (requests that named no stream) are many and replaceable: their
    transaction commits without waiting for the WAL flush (``synchronous_commit = off``), as
    the SQLite engine writes them with ``synchronous=NORMAL``: a crash of the service loses
    nothing committed, a crash of the database server may lose its last fraction of a second
    (``wal_writer_delay``). A transaction that carries a stream's state waits for the flush:
    a stream's state must never go back to an older one.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def record(self, model: str, stream: str, rows: Sequence[tuple[float, float]]) -> int:
        """See ``service.lab.predictionlog.PredictionLog.record``."""
        return self.record_batches([prediction_batch(model, stream, rows)])

    def record_batches(
        self, batches: Sequence[PredictionBatch], states: Sequence[SavedState] = ()
    ) -> int:
        """Predictions of several streams and their states, in one committed transaction."""
        total = check_batches(batches)
        if total == 0 and not states:
            return 0
        with (
            self._pool.connection("store predictions") as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            if not states:  # see the class docstring
                cur.execute("SET LOCAL synchronous_commit = off")
            for model, stream, times, estimates in batches:
                rows = zip(repeat(model), repeat(stream), times.tolist(), estimates.tolist())
                cur.executemany(_UPSERT_PREDICTION, rows)
            if states:
                cur.executemany(
                    _UPSERT_STATE,
                    [(s.model, s.stream, s.token, s.version, s.payload) for s in states],
                )
        return total

    def find(
        self, model: str, sample_time: float, tolerance_s: float, stream: str | None = None
    ) -> float | None:
        """See ``service.lab.predictionlog.PredictionLog.find`` (the same tie rules)."""
        query, params = nearest_query(
            model, sample_time, tolerance_s, stream, "%s", 'stream COLLATE "C"'
        )
        with self._pool.connection("find prediction") as conn:
            row = conn.execute(query, params).fetchone()
        return None if row is None else float(row[0])

    def latest(self, model: str, stream: str) -> float | None:
        query = "SELECT MAX(sample_time) FROM predictions WHERE model = %s AND stream = %s"
        with self._pool.connection("read the prediction log") as conn:
            row = conn.execute(query, (text("model", model), text("stream", stream))).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def prune(self, older_than: float, model: str | None = None, stream: str | None = None) -> int:
        cutoff = finite("older_than", older_than)
        if model is not None and stream is not None:
            query = "DELETE FROM predictions WHERE model = %s AND stream = %s AND sample_time < %s"
            params: tuple[Any, ...] = (text("model", model), text("stream", stream), cutoff)
        else:
            query, params = "DELETE FROM predictions WHERE sample_time < %s", (cutoff,)
        with self._pool.connection("prune predictions") as conn:
            return conn.execute(query, params).rowcount

    def load_state(self, model: str, stream: str, unless: str) -> SavedState | None:
        """The stream's saved state, unless its token is ``unless`` (one index lookup)."""
        query = (
            "SELECT token, version, payload FROM stream_state"
            " WHERE model = %s AND stream = %s AND token <> %s"
        )
        with self._pool.connection("read a stream's state") as conn:
            row = conn.execute(query, (model, stream, unless)).fetchone()
        return None if row is None else SavedState(model, stream, row[0], row[1], bytes(row[2]))


class PostgresStore:
    """Lab results in a PostgreSQL database shared by every replica (see the module)."""

    shared = True

    def __init__(self, url: str, *, pool_size: int = 8, timeout_s: float = 2.0) -> None:
        self._pool = Pool(url, pool_size, timeout_s)
        self.where = f"PostgreSQL at {self._pool.where}"
        try:
            self._migrate()
            # The stream locks' own connection: a holder needs connections of the main pool
            # for its work, so taking both from one pool could starve it under load.
            self._locks = Pool(url, 1, timeout_s, "locks")
        except BaseException:
            self._pool.pool.close()
            raise
        self.predictions = PostgresPredictionLog(self._pool)

    def _migrate(self) -> None:
        """Apply the migrations this database lacks, under a lock (replicas start together);
        refuse a database a newer service migrated."""
        known = migrations()
        with self._pool.connection("migrate the schema") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            current = int(row[0]) if row is not None else 0
            if current > len(known):
                raise StoreError(
                    None,
                    f"{self.where}: schema version {current} is newer than this service's "
                    f"{len(known)}",
                )
            for version, name, sql in known[current:]:
                conn.execute(sql.encode())  # several statements: the simple query protocol
                conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (version, name)
                )
                log.info("state store %s: applied migration %s", self.where, name)

    def close(self) -> None:
        """Close the pools; later calls fail with StoreError, a second close does nothing."""
        self._locks.pool.close()
        self._pool.pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add_many(self, records: Sequence[LabRecord]) -> builtins.list[bool]:
        """See ``service.lab.store.LabStore.add_many``: committed before it returns."""
        rows = [row_of(r) for r in records]
        new = []
        with self._pool.connection("store lab results") as conn, conn.transaction():
            for row in rows:
                if conn.execute(_INSERT_LAB, row).rowcount == 1:
                    new.append(True)
                    continue
                stored = conn.execute(
                    "SELECT value FROM lab_results"
                    " WHERE model = %s AND stream = %s AND sample_time = %s",
                    row[:3],
                ).fetchone()
                if stored is None or stored[0] != row[3]:
                    raise StoreConflictError(
                        None,
                        f"lab result of {row[0]!r} stream {row[1]!r} at sample_time {row[2]} is "
                        f"stored with value {None if stored is None else stored[0]}, not "
                        f"{row[3]}; stored results are never overwritten",
                    )
                new.append(False)
            added: dict[tuple[str, str], int] = {}
            for row, is_new in zip(rows, new, strict=True):
                if is_new:
                    added[(row[0], row[1])] = added.get((row[0], row[1]), 0) + 1
            self._count(conn, added)
        return new

    @staticmethod
    def _count(conn: psycopg.Connection[Any], changes: dict[tuple[str, str], int]) -> None:
        """Add changes (results stored or voided) to their streams' counts (``lab_counts``),
        in the caller's transaction."""
        for (model, stream), count in sorted(changes.items()):
            conn.execute(
                "INSERT INTO lab_streams (model, stream, changes) VALUES (%s, %s, %s)"
                " ON CONFLICT (model, stream) DO UPDATE"
                " SET changes = lab_streams.changes + EXCLUDED.changes",
                (model, stream, count),
            )

    def void(
        self, model: str, stream: str, sample_time: float, *, by: str, reason: str, at: float
    ) -> VoidRecord:
        """See ``service.lab.store.LabStore.void``: committed before it returns; the caller
        holds :meth:`serialized` for the stream, so no replica decides on it meanwhile."""
        key = (text("model", model), text("stream", stream), finite("sample_time", sample_time))
        who, why, when = check_void(by, reason, at)
        where = "WHERE model = %s AND stream = %s AND sample_time = %s"
        with self._pool.connection("void a lab result") as conn, conn.transaction():
            row = conn.execute(
                f"DELETE FROM lab_results {where} RETURNING {LAB_COLUMNS}", key
            ).fetchone()
            if row is None:
                raise LabResultNotFoundError(None, not_stored(*key))
            marks = ", ".join(["%s"] * 13)
            conn.execute(
                f"INSERT INTO lab_voids ({VOID_COLUMNS}) VALUES ({marks})", (*row, when, who, why)
            )
            self._count(conn, {(key[0], key[1]): 1})
        return VoidRecord(record_of(row), when, who, why)

    def voids(self, model: str | None = None, limit: int = 100) -> builtins.list[VoidRecord]:
        """The voided results (of ``model``), the latest void first."""
        check_limit(limit)
        where, params = ("WHERE model = %s", [text("model", model)]) if model else ("", [])
        query = f"SELECT {VOID_COLUMNS} FROM lab_voids {where} ORDER BY voided_at DESC LIMIT %s"
        with self._pool.connection("list voided lab results") as conn:
            rows = conn.execute(query, (*params, limit)).fetchall()
        return [void_of(r) for r in rows]

    def list(
        self,
        model: str | None = None,
        since: float | None = None,
        limit: int = 100,
        stream: str | None = None,
    ) -> builtins.list[LabRecord]:
        """Stored lab results, newest sample first; ``since`` keeps sample_time >= it."""
        check_limit(limit)
        where, params = list_filter(model, stream, since, "%s")
        query = (
            f"SELECT {LAB_COLUMNS} FROM lab_results {where}"
            ' ORDER BY sample_time DESC, model COLLATE "C", stream COLLATE "C" LIMIT %s'
        )
        with self._pool.connection("list lab results") as conn:
            rows = conn.execute(query, (*params, limit)).fetchall()
        return [record_of(r) for r in rows]

    def get(self, model: str, sample_time: float, stream: str = DEFAULT_STREAM) -> LabRecord | None:
        query = (
            f"SELECT {LAB_COLUMNS} FROM lab_results"
            " WHERE model = %s AND stream = %s AND sample_time = %s"
        )
        params = (text("model", model), text("stream", stream), finite("sample_time", sample_time))
        with self._pool.connection("read a lab result") as conn:
            row = conn.execute(query, params).fetchone()
        return None if row is None else record_of(row)

    def history(self, model: str, stream: str) -> builtins.list[LabRecord]:
        query = (
            f"SELECT {LAB_COLUMNS} FROM lab_results WHERE model = %s AND stream = %s"
            " ORDER BY sample_time"
        )
        with self._pool.connection("replay lab results") as conn:
            rows = conn.execute(query, (text("model", model), text("stream", stream))).fetchall()
        return [record_of(r) for r in rows]

    def streams(self, model: str) -> builtins.list[str]:
        query = (
            'SELECT DISTINCT stream COLLATE "C" AS s FROM lab_results WHERE model = %s ORDER BY s'
        )
        with self._pool.connection("list streams") as conn:
            return [r[0] for r in conn.execute(query, (text("model", model),)).fetchall()]

    def lab_counts(self, model: str) -> dict[str, int]:
        query = "SELECT stream, changes FROM lab_streams WHERE model = %s"
        with self._pool.connection("count lab results") as conn:
            rows = conn.execute(query, (text("model", model),)).fetchall()
        return {stream: int(count) for stream, count in rows}

    @contextlib.contextmanager
    def serialized(self, model: str, streams: Sequence[str]) -> Iterator[None]:
        """Hold a transaction advisory lock per (model, stream), taken in name order (no
        deadlock between replicas), while the caller decides and stores its results: the
        lock is released after the caller's own transaction committed. The lock connection
        is one per process (lab results are few), its own pool's."""
        keys = sorted({f"{model}\x1f{s}" for s in streams})
        with self._locks.connection("lock streams") as conn, conn.transaction():
            with self._locks.errors("lock streams"):
                for key in keys:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            yield
