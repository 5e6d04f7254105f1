"""Lab results and predictions on the same stream, at the same time, into one app: nothing
lost, nothing doubled, and the bias is what a sequential replay of the stored events gives."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter, deque
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.contracts.registry import Registry
from service.lab.bias import BiasConfig, BiasFilter
from tests.service.conftest import Published, make_settings, tiny_records


def _posix(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def test_concurrent_lab_results_and_predictions_stay_consistent(
    published: Published, tmp_path: Path
) -> None:
    """One thread predicts row by row on stream "unit-1"; two others post the analyzer's
    values for the same rows (each result twice, in different orders and batch sizes) while
    it runs. Every acknowledged result is stored exactly once, its stored estimate is the one
    served for its time, and the live bias equals a replay of the store, before and after a
    restart."""
    # Match a lab result only to the estimate for its own time (the default 90 s would match
    # a result that beats its prediction to the previous minute's estimate, by design).
    settings = make_settings(published.root, tmp_path, lab_match_tolerance_s=1.0)
    records = tiny_records(published.data)
    served: dict[float, float] = {}
    stored_by: Counter[float] = Counter()
    acknowledged: dict[float, float] = {}
    errors: list[str] = []
    progress = threading.Semaphore(0)

    def predict(client: TestClient) -> None:
        for rec in records:
            r = client.post("/v1/predict", json={"stream": "unit-1", "records": [rec]})
            if r.status_code != 200:
                errors.append(f"predict {r.status_code} {r.text[:200]}")
                return
            served[_posix(rec["timestamp"])] = r.json()["rows"][0]["estimate"]
            progress.release()
            progress.release()

    def post_lab(client: TestClient, order: list[int], batch: int, follow: bool) -> None:
        chunks = deque(order[start : start + batch] for start in range(0, len(order), batch))
        deadline = time.monotonic() + 90
        while chunks and time.monotonic() < deadline:
            chunk = chunks.popleft()
            if follow:  # keep behind the predictions, so most results find their estimate
                for _ in chunk:
                    progress.acquire(timeout=10)
            results = [
                {
                    "sample_time": records[i]["timestamp"],
                    "value": records[i]["values"]["q"],
                    "stream": "unit-1",
                }
                for i in chunk
            ]
            r = client.post("/v1/lab-results", json={"results": results})
            if r.status_code == 422 and "not yet taken" in r.text:
                chunks.append(chunk)  # ahead of the stream's data: refused whole, nothing
                time.sleep(0.01)  # stored; sent again once the stream has got there
                continue
            if r.status_code != 200:
                errors.append(f"lab {r.status_code} {r.text[:200]}")
                continue
            sent = {_posix(str(x["sample_time"])): float(str(x["value"])) for x in results}
            outcomes = r.json()["outcomes"]  # in sample-time order, one per result
            assert sorted(sent) == [_posix(o["sample_time"]) for o in outcomes]
            for outcome in outcomes:
                t = _posix(outcome["sample_time"])
                acknowledged[t] = sent[t]
                if outcome["stored"]:
                    stored_by[t] += 1

    rows = list(range(len(records)))
    with TestClient(create_app(settings)) as client:
        threads = [
            threading.Thread(target=predict, args=(client,)),
            threading.Thread(target=post_lab, args=(client, rows, 1, True)),
            threading.Thread(target=post_lab, args=(client, rows[::-1], 7, False)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors[:3]
        live_bias = _bias(client)

    assert len(served) == len(records) and len(acknowledged) == len(records)
    bad = {t: stored_by[t] for t in acknowledged if stored_by[t] != 1}
    assert not bad, f"results stored twice or never: {list(bad.items())[:5]}"
    db = sqlite3.connect(tmp_path / "state" / "lab_results.sqlite")
    try:
        stored = db.execute(
            "SELECT sample_time, value, estimate, accepted FROM lab_results ORDER BY sample_time"
        ).fetchall()
    finally:
        db.close()
    assert [row[0] for row in stored] == sorted(acknowledged)  # each once, none extra
    assert all(value == acknowledged[t] for t, value, _, _ in stored)
    for t, _, estimate, _ in stored:
        if estimate is not None:  # matched: the estimate served for that very time
            assert estimate == pytest.approx(served[t], abs=1e-12)
    accepted = [row for row in stored if row[3]]
    assert len(accepted) >= 10, "too few results moved the bias to prove anything"

    card = Registry(published.root).verify("tiny", published.version)
    replay = BiasFilter(
        BiasConfig.from_card(
            card,
            gain=settings.lab_gain,
            trust=settings.lab_trust,
            max_age_s=settings.lab_max_age_s,
        )
    )
    for t, value, estimate, _ in accepted:
        assert replay.update(value, estimate, t, t).accepted
    assert live_bias == pytest.approx(replay.bias, abs=1e-12)
    assert live_bias != 0.0

    with TestClient(create_app(settings)) as client:  # restart: the store is replayed
        assert _bias(client) == pytest.approx(live_bias, abs=1e-12)


def _bias(client: TestClient) -> float:
    """Stream unit-1's bias, as /metrics reports it."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "softsensor_bias" and sample.labels["stream"] == "unit-1":
                return float(sample.value)
    raise AssertionError("no bias for stream unit-1 in /metrics")
