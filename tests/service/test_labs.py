"""Lab results per stream, on the data's clock, stored whole or not at all, found fast."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from tests.service.conftest import Published, make_settings, tiny_records
from tests.service.feeding import feed

DAY = 86_400.0


def _stream_gauges(client: TestClient, name: str) -> dict[str, float]:
    """``name`` per stream, from /metrics as Prometheus reads it."""
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name:
                out[s.labels["stream"]] = s.value
    return out


def test_two_units_keep_separate_bias_and_alarms(published: Published, tmp_path: Path) -> None:
    """Two units on one model: unit A's lab results move A's bias only, match only A's
    estimates (unit B's differ), and B's answers do not change."""
    records = tiny_records(published.data, 0, 30)
    shifted = [r | {"values": r["values"] | {"a": r["values"]["a"] + 1.0}} for r in records]
    with TestClient(create_app(make_settings(published.root, tmp_path))) as client:
        est_a = feed(client, "unit-a", records[:20])
        est_b = feed(client, "unit-b", shifted[:20])
        assert est_a != pytest.approx(est_b)
        results = [
            {"sample_time": records[i]["timestamp"], "value": est_a[i] + 0.2, "stream": "unit-a"}
            for i in range(5, 15)
        ]
        r = client.post("/v1/lab-results", json={"results": results})
        assert r.status_code == 200, r.text
        outcomes = r.json()["outcomes"]
        assert all(o["stream"] == "unit-a" and o["accepted"] for o in outcomes), outcomes
        assert [o["estimate"] for o in outcomes] == pytest.approx(est_a[5:15])  # A's, not B's
        assert [o["residual"] for o in outcomes] == pytest.approx([0.2] * 10)
        bias = _stream_gauges(client, "softsensor_bias")
        assert bias["unit-a"] == pytest.approx(0.2 * (1 - 0.7**10)) and bias["unit-b"] == 0.0
        a = client.post("/v1/predict", json={"stream": "unit-a", "records": [records[20]]}).json()
        b = client.post("/v1/predict", json={"stream": "unit-b", "records": [shifted[20]]}).json()
        assert a["bias"] == pytest.approx(bias["unit-a"]) and b["bias"] == 0.0
        row_b = b["rows"][0]
        assert row_b["estimate_corrected"] == row_b["estimate"]
        listed = client.get("/v1/lab-results", params={"stream": "unit-b"}).json()
        assert listed == []
        assert len(client.get("/v1/lab-results", params={"stream": "unit-a"}).json()) == 10
        alarms = {}
        for family in text_string_to_metric_families(client.get("/metrics").text):
            for s in family.samples:
                if s.name == "softsensor_alarm":
                    alarms[(s.labels["stream"], s.labels["alarm"])] = s.value
        assert {k for k, v in alarms.items() if v} <= {("unit-a", "residual")}
        assert {stream for stream, _ in alarms} == {"unit-a", "unit-b"}


def test_a_lab_request_may_name_its_stream_once(published: Published, tmp_path: Path) -> None:
    """``stream`` beside ``results``, as in a predict request: every result that names no
    stream of its own is that unit's; one that names its own keeps it."""
    records = tiny_records(published.data, 0, 20)
    with TestClient(create_app(make_settings(published.root, tmp_path))) as client:
        est_a = feed(client, "unit-a", records)
        est_b = feed(client, "unit-b", records[:10])
        results: list[dict[str, Any]] = [
            {"sample_time": records[i]["timestamp"], "value": est_a[i] + 0.1} for i in (5, 6)
        ]
        results.append({"sample_time": records[7]["timestamp"], "value": 1.0, "stream": "unit-b"})
        r = client.post("/v1/lab-results", json={"stream": "unit-a", "results": results})
        assert r.status_code == 200, r.text
        outcomes = r.json()["outcomes"]
        assert [o["stream"] for o in outcomes] == ["unit-a", "unit-a", "unit-b"]
        assert [o["estimate"] for o in outcomes] == pytest.approx([*est_a[5:7], est_b[7]])
        assert client.get("/v1/lab-results", params={"stream": "default"}).json() == []
        twice = {"stream": "unit-a", "results": results[:1] * 2}
        refused = client.post("/v1/lab-results", json=twice)
        assert refused.status_code == 422 and "results[1].sample_time" in refused.text


def test_lab_results_are_judged_on_the_streams_clock(published: Published, tmp_path: Path) -> None:
    """A backfill a year old: its lab results are on time on the stream's clock (the wall
    clock would call every one late); one older than the limit on that clock is late; one for
    a sample the stream has not reached yet is refused, naming the field, nothing stored."""
    settings = make_settings(published.root, tmp_path, lab_max_age_s=3600.0)
    records = tiny_records(published.data, 0, 32)  # January 2026, long before now
    with TestClient(create_app(settings)) as client:
        est = feed(client, "unit-1", records[:30])
        on_time = {"sample_time": records[25]["timestamp"], "value": est[25], "stream": "unit-1"}
        assert client.post("/v1/lab-results", json={"results": [on_time]}).json()["outcomes"][0][
            "accepted"
        ]
        feed(client, "unit-1", [r | {"timestamp": _later(r, 2)} for r in records[30:32]])
        late = {"sample_time": records[26]["timestamp"], "value": est[26], "stream": "unit-1"}
        outcome = client.post("/v1/lab-results", json={"results": [late]}).json()["outcomes"][0]
        assert outcome["stored"] and not outcome["accepted"] and outcome["reason"] == "late"
        ahead = {"sample_time": _later(records[31], 3), "value": 1.0, "stream": "unit-1"}
        early = {"sample_time": records[27]["timestamp"], "value": est[27], "stream": "unit-1"}
        refused = client.post("/v1/lab-results", json={"results": [early, ahead]})
        assert refused.status_code == 422, refused.text
        assert "results[1].sample_time" in refused.text and "not yet taken" in refused.text
        stored = client.get("/v1/lab-results", params={"stream": "unit-1"}).json()
        assert len(stored) == 2  # the refused request stored neither of its results


def _later(record: dict[str, Any], hours: float) -> str:
    from datetime import datetime, timedelta

    stamp = datetime.fromisoformat(str(record["timestamp"])) + timedelta(hours=hours)
    return stamp.isoformat()


def test_a_lab_batch_is_stored_whole_or_not_at_all(published: Published, tmp_path: Path) -> None:
    """The store fails on the 6th of 10 results (a trigger in the real SQLite file, as a full
    disk or a kill would): nothing of the request is stored and no bias moved; a retry once
    the fault is gone stores all 10. (Before, the first 5 were stored: half applied.)"""
    records = tiny_records(published.data, 0, 20)
    settings = make_settings(published.root, tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        est = feed(client, "unit-1", records)
        db = sqlite3.connect(tmp_path / "state" / "lab_results.sqlite")
        db.execute(
            "CREATE TRIGGER fail_sixth BEFORE INSERT ON lab_results"
            " WHEN (SELECT COUNT(*) FROM lab_results) >= 5"
            " BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
        )
        db.commit()
        results = [
            {"sample_time": records[i]["timestamp"], "value": est[i] + 0.1, "stream": "unit-1"}
            for i in range(5, 15)
        ]
        failed = client.post("/v1/lab-results", json={"results": results})
        assert failed.status_code == 500, failed.text
        assert db.execute("SELECT COUNT(*) FROM lab_results").fetchone()[0] == 0
        assert _stream_gauges(client, "softsensor_bias")["unit-1"] == 0.0
        db.execute("DROP TRIGGER fail_sixth")
        db.commit()
        db.close()
        retried = client.post("/v1/lab-results", json={"results": results})
        assert retried.status_code == 200, retried.text
        assert all(o["stored"] and o["accepted"] for o in retried.json()["outcomes"])
        assert len(client.get("/v1/lab-results").json()) == 10


def _ingest_cpu(client: TestClient, results: list[dict[str, Any]]) -> float:
    started = time.process_time()
    r = client.post("/v1/lab-results", json={"results": results})
    assert r.status_code == 200, r.text
    return time.process_time() - started


def test_lab_ingestion_cost_does_not_grow_with_the_prediction_log(
    published: Published, tmp_path: Path
) -> None:
    """200 lab results cost the same CPU with 200 predictions logged as with 200,000 (an
    indexed lookup per result; the former in-memory log was scanned for each, ~40x)."""
    t0 = time.time() - 3 * DAY
    n = 200_000
    times = t0 + np.arange(n) * 1.0
    rng = np.random.default_rng(0)
    columns = {k: rng.normal(size=n).round(3).tolist() for k in ("a", "b", "q")}
    settings = make_settings(published.root, tmp_path, max_batch_rows=n)

    def results(stream: str, offset: int) -> list[dict[str, Any]]:
        picks = np.arange(offset, 200, 2) if stream == "small" else np.arange(offset, n, n // 100)
        return [{"sample_time": float(times[i]), "value": 0.5, "stream": stream} for i in picks]

    with TestClient(create_app(settings)) as client:
        small = {"stream": "small", "timestamp": times[:200].tolist()}
        small["columns"] = {k: v[:200] for k, v in columns.items()}
        assert client.post("/v1/predict", json=small).status_code == 200
        cost_small = min(_ingest_cpu(client, results("small", k)) for k in (0, 1))
        big = {"stream": "big", "timestamp": times.tolist(), "columns": columns}
        assert client.post("/v1/predict", json=big).status_code == 200
        cost_big = min(_ingest_cpu(client, results("big", k)) for k in (0, 1))
    assert cost_big < 2 * cost_small + 0.02, (cost_small, cost_big)
