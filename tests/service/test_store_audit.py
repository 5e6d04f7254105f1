"""Voiding a lab result and its result time, on both engines (a real SQLite file, a real
PostgreSQL server): the voided result leaves the stream's history for the audit trail, the
bias replayed from what remains is the bias of a store that never had it, after a reopen too,
and stores an older service left are migrated."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from service.lab.bias import BiasConfig, replay_bias
from service.lab.errors import LabResultNotFoundError
from service.lab.records import LabRecord
from service.lab.statestore import StateStore, add_one, open_store
from service.lab.store import SCHEMA_VERSION, LabStore
from tests.service.engines import postgres_at_version

T0 = 1_790_000_000.0
CONFIG = BiasConfig(max_abs_bias=5.0, max_residual=10.0)


def _results(stream: str = "s", skip: float | None = None) -> list[LabRecord]:
    """Six accepted results with residuals 0.1 .. 0.6, one of them (``skip``) left out."""
    out = []
    for i in range(6):
        t = T0 + 600.0 * i
        if t != skip:
            value = 1.1 + 0.1 * i
            record = LabRecord("col", t, value, t + 900, 1.0, value - 1.0, True, None, stream)
            out.append(dataclasses.replace(record, result_time=t + 800))
    return out


def test_a_result_time_is_stored_and_read_back(store: StateStore) -> None:
    record = _results()[0]
    assert store.add_many([record]) == [True]
    assert store.get("col", record.sample_time, "s") == record
    assert store.get("col", record.sample_time, "s").result_time == T0 + 800  # type: ignore[union-attr]
    assert add_one(store, "col", T0 + 5, 1.0, T0 + 6, stream="s")  # no result time: None
    assert store.get("col", T0 + 5, "s").result_time is None  # type: ignore[union-attr]


def test_a_voided_result_leaves_the_history_for_the_audit_trail(
    store: StateStore, state_url: str
) -> None:
    store.add_many(_results())
    voided = T0 + 1200
    original = store.get("col", voided, "s")
    void = store.void("col", "s", voided, by="alice", reason="swapped sample", at=T0 + 9000)
    assert (void.record, void.voided_by, void.reason, void.voided_at) == (
        original,
        "alice",
        "swapped sample",
        T0 + 9000,
    )
    assert store.get("col", voided, "s") is None
    assert voided not in [r.sample_time for r in store.history("col", "s")]
    assert voided not in [r.sample_time for r in store.list("col")]
    assert store.voids("col") == [void]
    assert store.voids("other") == []
    # the change is counted: another replica learns that this stream's bias moved
    assert store.lab_counts("col") == {"s": 7}
    with pytest.raises(LabResultNotFoundError) as info:
        store.void("col", "s", voided, by="alice", reason="again", at=T0 + 9001)
    assert info.value.status == 404
    # the corrected value may be entered for the same sample
    assert add_one(store, "col", voided, 1.35, T0 + 9100, 1.0, 0.35, True, None, stream="s")
    store.close()
    with contextlib.closing(open_store(state_url)) as reopened:
        assert reopened.voids("col") == [void]
        assert reopened.get("col", voided, "s").value == 1.35  # type: ignore[union-attr]


def test_the_bias_after_a_void_is_the_bias_of_a_store_that_never_had_it(
    store: StateStore, state_url: str, tmp_path: Path
) -> None:
    store.add_many(_results())
    before = replay_bias(CONFIG, store.history("col", "s")).bias
    store.void("col", "s", T0 + 1800, by="bob", reason="wrong bottle", at=T0 + 9000)
    after = replay_bias(CONFIG, store.history("col", "s")).bias
    with contextlib.closing(open_store(f"sqlite:///{tmp_path / 'never.db'}")) as never:
        never.add_many(_results(skip=T0 + 1800))
        expected = replay_bias(CONFIG, never.history("col", "s")).bias
    assert after == expected and after != before
    store.close()
    with contextlib.closing(open_store(state_url)) as reopened:
        assert replay_bias(CONFIG, reopened.history("col", "s")).bias == expected


def test_an_unknown_result_cannot_be_voided_and_a_reason_is_required(store: StateStore) -> None:
    with pytest.raises(LabResultNotFoundError):
        store.void("col", "s", T0, by="alice", reason="typo", at=T0)
    store.add_many(_results())
    for by, reason, field in (("", "typo", "by"), ("alice", "", "reason")):
        with pytest.raises(ValueError, match=field):
            store.void("col", "s", T0, by=by, reason=reason, at=T0)
    assert len(store.history("col", "s")) == 6


V2_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (2);
CREATE TABLE lab_results (model TEXT NOT NULL, stream TEXT NOT NULL, sample_time REAL NOT NULL,
    value REAL NOT NULL, received REAL NOT NULL, estimate REAL, residual REAL,
    accepted INTEGER NOT NULL, reason TEXT, PRIMARY KEY (model, stream, sample_time));
CREATE INDEX lab_results_time ON lab_results (sample_time);
CREATE TABLE predictions (model TEXT NOT NULL, stream TEXT NOT NULL, sample_time REAL NOT NULL,
    estimate REAL NOT NULL, PRIMARY KEY (model, stream, sample_time)) WITHOUT ROWID;
INSERT INTO lab_results VALUES ('col', 'u', 1790000000.0, 1.5, 1790007200.0, 1.4, 0.1, 1, NULL);
INSERT INTO predictions VALUES ('col', 'u', 1790000000.0, 1.4);
"""


def test_a_version_2_file_is_migrated_and_its_results_can_be_voided(tmp_path: Path) -> None:
    path = tmp_path / "lab.db"
    conn = sqlite3.connect(path)
    conn.executescript(V2_SCHEMA)
    conn.close()
    with LabStore(path) as store:
        (record,) = store.list("col")
        assert (record.stream, record.value, record.result_time) == ("u", 1.5, None)
        assert store.predictions.find("col", T0, 1.0, "u") == 1.4
        store.void("col", "u", T0, by="alice", reason="typo", at=T0 + 1)
        assert store.list("col") == [] and len(store.voids("col")) == 1
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_a_postgres_database_at_version_3_is_migrated(pg_url: str) -> None:
    import psycopg

    postgres_at_version(pg_url, 3)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lab_results VALUES ('col', 'u', %s, 1.0, %s, NULL, NULL, false, NULL)",
            (T0, T0),
        )
        conn.execute("INSERT INTO lab_streams VALUES ('col', 'u', 1)")
    with contextlib.closing(open_store(pg_url)) as store:
        assert store.lab_counts("col") == {"u": 1}
        assert store.get("col", T0, "u").result_time is None  # type: ignore[union-attr]
        store.void("col", "u", T0, by="alice", reason="typo", at=T0 + 1)
        assert store.lab_counts("col") == {"u": 2}
        assert store.history("col", "u") == []
