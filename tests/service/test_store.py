"""The durable store on both engines: a real SQLite file and a real PostgreSQL server (the
run's own), real threads, and a real process killed mid-add."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from service.lab.migrations import migrations
from service.lab.records import DEFAULT_STREAM
from service.lab.statestore import StateStore, add_one, open_store
from service.lab.store import SCHEMA_VERSION, LabRecord, LabStore, StoreConflictError, StoreError
from tests.service.engines import ENGINES, postgres_at_version

REPO = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0


def add(store: StateStore, sample_time: float, value: float = 1.5, model: str = "col") -> bool:
    return add_one(store, model, sample_time, value, T0 + 7200, 1.4, value - 1.4, True, None)


# --------------------------------------------------------------------------- lab results


def test_durability_pragmas(tmp_path: Path) -> None:
    """SQLite: WAL, the lab results' connection fsyncs every commit."""
    store = LabStore(tmp_path / "lab.db")
    assert store.pragmas() == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL: the WAL is fsynced at every commit
        "predictions_synchronous": 1,  # NORMAL
    }
    # WAL is a property of the file: any other connection sees it too.
    other = sqlite3.connect(tmp_path / "lab.db")
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
        store.close()


def test_add_round_trip_and_idempotent(store: StateStore) -> None:
    assert add_one(store, "col", T0, 2.5, T0 + 3600, 2.4, 0.1, True, None)
    assert not add_one(store, "col", T0, 2.5, T0 + 9999, 0.0, 2.5, False, "late")  # a retry
    assert add_one(store, "col", T0 + 1, 2.6, T0 + 3600)  # estimate unknown
    assert add_one(store, "other", T0, 9.0, T0 + 3600, None, None, False, "out_of_range")
    records = store.list("col")
    assert records == [
        LabRecord("col", T0 + 1, 2.6, T0 + 3600, None, None, False, None),
        LabRecord("col", T0, 2.5, T0 + 3600, 2.4, 0.1, True, None),  # the first one kept
    ]


def test_conflicting_duplicate_raises_409(store: StateStore) -> None:
    add(store, T0, 1.5)
    with pytest.raises(StoreConflictError) as info:
        add(store, T0, 1.6)
    assert info.value.status == 409
    assert "1.5" in str(info.value)
    assert [r.value for r in store.list()] == [1.5]
    assert isinstance(info.value, StoreError)


def test_list_filters_and_order(store: StateStore) -> None:
    for i in range(10):
        add(store, T0 + i * 60, model="a" if i % 2 else "b")
    assert [r.sample_time for r in store.list()] == [T0 + i * 60 for i in range(9, -1, -1)]
    assert [r.sample_time for r in store.list("a", limit=2)] == [T0 + 540, T0 + 420]
    assert [r.sample_time for r in store.list(since=T0 + 420)] == [T0 + 540, T0 + 480, T0 + 420]
    assert store.list("nobody") == []
    with pytest.raises(ValueError, match="limit"):
        store.list(limit=0)


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("sample_time", ("col", math.nan, 1.0, T0)),
        ("value", ("col", T0, math.nan, T0)),
        ("value", ("col", T0, math.inf, T0)),
        ("received", ("col", T0, 1.0, math.nan)),
        ("estimate", ("col", T0, 1.0, T0, math.nan)),
        ("residual", ("col", T0, 1.0, T0, 1.0, math.nan)),
        ("model", ("", T0, 1.0, T0)),
    ],
)
def test_bad_numbers_name_the_field(
    store: StateStore, field: str, args: tuple[str, float, float, float]
) -> None:
    with pytest.raises(ValueError, match=field):
        add_one(store, *args)
    assert store.list() == []


@pytest.mark.parametrize("engine", ENGINES)
def test_data_survives_reopening(engine: str, request: pytest.FixtureRequest) -> None:
    tmp_path = request.getfixturevalue("tmp_path")
    path = tmp_path / "sub" / "lab.db"  # the directory is created
    url = f"sqlite:///{path}" if engine == "sqlite" else request.getfixturevalue("pg_url")
    with contextlib.closing(open_store(url)) as first:
        add(first, T0, 3.0)
        first.predictions.record("col", "s1", [(T0, 2.9)])
    with contextlib.closing(open_store(url)) as second:
        assert [r.value for r in second.list()] == [3.0]
        assert second.predictions.find("col", T0, 1.0) == 2.9
        assert not add(second, T0, 3.0)


def test_closed_store_raises_store_error(store: StateStore) -> None:
    store.close()
    store.close()  # harmless
    with pytest.raises(StoreError) as info:
        add(store, T0)
    assert info.value.status == 500


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lab.db"
    LabStore(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        LabStore(path)


def test_newer_postgres_schema_is_refused(pg_url: str) -> None:
    """A database a newer service migrated is refused, not downgraded."""
    import psycopg

    open_store(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
        assert versions == list(range(1, len(versions) + 1))  # every migration, in order
        conn.execute("INSERT INTO schema_version (version, name) VALUES (99, 'future.sql')")
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(pg_url)


def test_concurrent_adds_stored_exactly_once(store: StateStore) -> None:
    """8 threads x 200 distinct results, plus 50 results every thread adds."""
    results: dict[int, list[bool]] = {}

    def work(k: int) -> None:
        outcomes = []
        for i in range(200):
            outcomes.append(add(store, T0 + k * 1000 + i))
            if i < 50:
                outcomes.append(add(store, T0 - 1 - i))  # the shared ones, same value
        results[k] = outcomes

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(sum(outcomes) for outcomes in results.values()) == 8 * 200 + 50
    records = store.list(limit=5000)
    assert len(records) == 8 * 200 + 50
    assert len({r.sample_time for r in records}) == len(records)


# --------------------------------------------------------------------------- predictions


def test_find_nearest_prediction_within_tolerance(store: StateStore) -> None:
    assert store.predictions.record("col", "s1", [(T0 + t, float(t)) for t in range(0, 600, 60)])
    store.predictions.record("col", "s2", [(T0 + 95.0, -1.0)])
    store.predictions.record("other", "s1", [(T0 + 100.0, 99.0)])
    assert store.predictions.find("col", T0 + 100, 10.0) == -1.0  # s2's at 95 is nearest
    assert store.predictions.find("col", T0 + 100, 10.0, stream="s1") is None
    assert store.predictions.find("col", T0 + 100, 40.0, stream="s1") == 120.0
    assert store.predictions.find("col", T0 + 90, 30.0, stream="s1") == 120.0  # tie: later
    assert store.predictions.find("col", T0 + 1000, 100.0) is None
    assert store.predictions.find("col", T0 + 540, 0.0) == 540.0  # exact hit
    assert store.predictions.find("nobody", T0, 1e9) is None


def test_predictions_are_replaced_pruned_and_validated(store: StateStore) -> None:
    store.predictions.record("col", "s1", [(T0, 1.0), (T0 + 60, 2.0)])
    store.predictions.record("col", "s1", [(T0, 1.5)])  # the same time again: replaced
    assert store.predictions.find("col", T0, 1.0) == 1.5
    with pytest.raises(ValueError, match=r"rows\[1\].estimate"):
        store.predictions.record("col", "s1", [(T0 + 120, 3.0), (T0 + 180, math.nan)])
    assert store.predictions.find("col", T0 + 120, 1.0) is None  # nothing half stored
    assert store.predictions.record("col", "s1", []) == 0
    assert store.predictions.prune(T0 + 30) == 1
    assert store.predictions.find("col", T0, 1.0) is None
    assert store.predictions.find("col", T0 + 60, 1.0) == 2.0


# --------------------------------------------------------------------------- crash safety

CRASH_CHILD = """
import sys
from service.lab.statestore import add_one, open_store

store = open_store(sys.argv[1])
start = float(sys.argv[2])
i = 0
while True:
    t = start + i
    add_one(store, "crash", t, t / 7, t, None, None, False, None)
    print(repr(t), flush=True)
    i += 1
"""


def read_all(url: str) -> dict[float, float]:
    """Every stored crash-test result, sample_time -> value, however many there are (the
    store is reopened: SQLite recovers the WAL the killed writer left). ``history`` has no
    page limit: a fast disk lets the children write more than one listing's 10 000."""
    with contextlib.closing(open_store(url)) as store:
        return {r.sample_time: r.value for r in store.history("crash", DEFAULT_STREAM)}


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_result(state_url: str, tmp_path: Path) -> None:
    """Kill a writer at arbitrary moments; every add it acknowledged must be on disk.

    (A kill tests the process dying, not the power failing: the page cache survives a
    kill. synchronous=FULL is what covers the power; this covers the commit ordering.)
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    acknowledged: list[float] = []
    for attempt in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CRASH_CHILD, state_url, str(T0 + attempt * 1e6)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # imports done, one result stored
        if not first:
            child.wait()
            pytest.fail(f"child died before adding: {child.stderr.read() if child.stderr else ''}")
        acknowledged.append(float(first))
        time.sleep(1.0 + 0.1 * attempt)
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        lines = out.split("\n")[:-1]  # a last line without newline was not acknowledged
        acknowledged.extend(float(line) for line in lines)
        assert len(lines) > 10, "the child hardly wrote; the test proves little"

        stored = read_all(state_url)
        missing = [t for t in acknowledged if t not in stored]
        assert not missing, (
            f"{len(missing)} of {len(acknowledged)} acknowledged results lost, e.g. "
            f"{missing[:3]}; {len(stored)} stored"
        )
        assert all(stored[t] == t / 7 for t in acknowledged)

    if not state_url.startswith("sqlite:///"):
        return
    conn = sqlite3.connect(state_url.removeprefix("sqlite:///"))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


# --------------------------------------------------------------------------- schema 2

V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE lab_results (model TEXT NOT NULL, sample_time REAL NOT NULL, value REAL NOT NULL,
    received REAL NOT NULL, estimate REAL, residual REAL, accepted INTEGER NOT NULL, reason TEXT,
    PRIMARY KEY (model, sample_time));
CREATE INDEX lab_results_time ON lab_results (sample_time);
CREATE TABLE predictions (model TEXT NOT NULL, stream TEXT NOT NULL, sample_time REAL NOT NULL,
    estimate REAL NOT NULL, PRIMARY KEY (model, stream, sample_time));
INSERT INTO lab_results VALUES ('col', 1790000000.0, 1.5, 1790007200.0, 1.4, 0.1, 1, NULL);
"""


def test_a_version_1_file_is_migrated_to_the_default_stream(tmp_path: Path) -> None:
    """The results a version-1 service stored (per model) become the default stream's."""
    path = tmp_path / "lab.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.close()
    with LabStore(path) as store:
        (record,) = store.list("col")
        assert (record.stream, record.value, record.accepted) == ("default", 1.5, True)
        assert store.get("col", T0) == record
        assert add_one(store, "col", T0, 2.5, T0, stream="unit-b")  # same time, another stream
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_one_transaction_per_batch_and_a_conflict_stores_nothing(store: StateStore) -> None:
    batch = [LabRecord("col", T0 + i, 1.0, T0, None, None, False, None, "s") for i in range(5)]
    assert store.add_many(batch) == [True] * 5
    again = [*batch[:2], LabRecord("col", T0 + 9, 1.0, T0, None, None, False, None, "s")]
    assert store.add_many(again) == [False, False, True]
    clash = [LabRecord("col", T0 + 20, 1.0, T0, None, None, False, None, "s"), batch[3]]
    clash.append(LabRecord("col", T0 + 4, 9.0, T0, None, None, False, None, "s"))
    with pytest.raises(StoreConflictError):
        store.add_many(clash)
    assert store.get("col", T0 + 20, "s") is None  # the new one before the conflict: rolled back
    assert len(store.list(limit=100)) == 6


def test_finding_a_prediction_is_an_index_search(tmp_path: Path) -> None:
    """The lookup a lab result makes searches the (model, stream, sample_time) key: its cost
    does not grow with the log (SQLite's plan; PostgreSQL has the same primary key)."""
    LabStore(tmp_path / "lab.db").close()
    conn = sqlite3.connect(tmp_path / "lab.db")
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT estimate, ABS(sample_time - 1) AS d FROM predictions"
            " WHERE model = 'm' AND stream = 's' AND sample_time BETWEEN 0 AND 2"
            " ORDER BY d LIMIT 1"
        ).fetchall()
    finally:
        conn.close()
    detail = " ".join(str(row[-1]) for row in plan)
    assert "SEARCH predictions USING PRIMARY KEY" in detail, detail
    assert "sample_time>? AND sample_time<?" in detail, detail


def test_lab_counts_per_stream(store: StateStore) -> None:
    """What a replica compares to learn that another one stored results: new ones counted,
    retries not, a rolled-back batch not."""
    batch = [LabRecord("col", T0 + i, 1.0, T0, None, None, False, None, "s") for i in range(3)]
    store.add_many(batch)
    store.add_many([*batch[:2], LabRecord("col", T0, 2.0, T0, None, None, False, None, "t")])
    clash = [LabRecord("col", T0 + 9, 1.0, T0, None, None, False, None, "s")]
    with pytest.raises(StoreConflictError):
        store.add_many([*clash, LabRecord("col", T0, 5.0, T0, None, None, False, None, "s")])
    add(store, T0, model="other")
    assert store.lab_counts("col") == {"s": 3, "t": 1}
    assert store.lab_counts("nobody") == {}


def test_a_postgres_database_at_version_2_is_migrated(pg_url: str) -> None:
    """A database an older service left (migrations 1 and 2) gets migration 3 and its counts
    from the results already stored; each migration is recorded once."""
    import psycopg

    postgres_at_version(pg_url, 2)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lab_results VALUES ('col', 'u', %s, 1.0, %s, NULL, NULL, false, NULL),"
            " ('col', 'u', %s, 1.0, %s, NULL, NULL, false, NULL)",
            (T0, T0, T0 + 1, T0),
        )
    with contextlib.closing(open_store(pg_url)) as store:
        assert store.lab_counts("col") == {"u": 2}
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, len(migrations()) + 1))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/x", "scheme must be one of"),
        ("sqlite://relative.db", "expected sqlite:///path/to/file"),
        ("sqlite:///", "expected sqlite:///path/to/file"),
    ],
)
def test_a_wrong_state_url_is_refused_by_name(url: str, message: str) -> None:
    """A typo in SOFTSENSOR_STATE_URL fails at start, naming the setting and the reason."""
    from pydantic import ValidationError

    from service.settings import Settings

    if url.startswith("mysql"):
        with pytest.raises(ValidationError, match="state_url") as info:
            Settings(state_url=url)
        assert message in str(info.value)
    with pytest.raises(ValueError, match=f"state_url: {message}"):
        open_store(url)


def test_the_default_state_url_is_the_file_in_the_state_dir(tmp_path: Path) -> None:
    """Without SOFTSENSOR_STATE_URL the service keeps today's file."""
    from service.settings import Settings

    settings = Settings(state_dir=tmp_path / "state")
    assert settings.store_url == f"sqlite:///{tmp_path / 'state' / 'lab_results.sqlite'}"
    with contextlib.closing(open_store(settings.store_url)) as store:
        assert not store.shared
    assert (tmp_path / "state" / "lab_results.sqlite").is_file()


def test_stream_locks_do_not_starve_the_pool(pg_url: str) -> None:
    """Two lab decisions at once (two models served) in one process, with the smallest pool
    allowed: the one holding its lock still gets the connections its work needs (the locks
    have a connection of their own), the other waits for it, neither fails."""
    from service.lab.postgres import PostgresStore

    holding = threading.Event()
    errors: list[BaseException] = []
    with PostgresStore(pg_url, pool_size=2, timeout_s=1.0) as store:

        def decide(model: str) -> None:
            try:
                with store.serialized(model, ["s"]):
                    holding.set()
                    time.sleep(0.2)  # the other one tries meanwhile
                    assert store.get(model, T0, "s") is None
                    add_one(store, model, T0, 1.0, T0, stream="s")
            except BaseException as exc:
                errors.append(exc)

        first = threading.Thread(target=decide, args=("a",))
        first.start()
        assert holding.wait(10)
        second = threading.Thread(target=decide, args=("b",))
        second.start()
        first.join()
        second.join()
        assert not errors, errors
        assert {r.model for r in store.list()} == {"a", "b"}


def test_no_commit_of_the_prediction_log_waits_for_a_checkpoint(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint runs inside the commit that crosses its threshold: that
    request waited for the copy and two fsyncs (a 7 s stall on a shared disk). The log's
    commits leave the database file alone; ``checkpoint`` copies the WAL back when due."""
    import numpy as np

    path = tmp_path / "lab.db"
    with LabStore(path) as store:
        log = store.predictions
        size = path.stat().st_size
        for i in range(1100):  # a page or more per commit: past SQLite's 1000-page threshold
            batch = [("col", "s", np.array([T0 + i]), np.array([1.0]))]
            if i % 2 or not log.record_batches_now(batch):  # the loop's, or (also when
                log.record_batches(batch)  # it hands one over) the writer thread's
        assert path.stat().st_size == size  # every page still in the WAL
        assert log.checkpoint()
        assert path.stat().st_size > size  # copied back
        assert not log.checkpoint()  # and not again before the next thousand commits
        assert log.find("col", T0 + 7, 0.5, "s") is not None
