"""A real `softsensor serve` process: killed with SIGKILL while lab results stream in, and its
whole output searched for the admin token."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.contracts.registry import Registry
from tests.service.conftest import Published, start_server, tiny_records

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the test data's first sample


@pytest.mark.slow
def test_sigkill_while_posting_lab_results_loses_no_acknowledged_one(
    published: Published, tmp_path: Path
) -> None:
    """Post lab results one by one, kill -9 the server mid-stream, restart it on the same
    SQLite file: every result it acknowledged (2xx, stored) is there, once, with its value."""
    state, log = tmp_path / "state", tmp_path / "server.log"
    acknowledged: dict[float, float] = {}
    failures: list[str] = []
    stop = threading.Event()

    def post_forever(url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                t, value = T0 + 60.0 * i, round(1.0 + 0.001 * i, 6)
                try:
                    r = client.post(
                        "/v1/lab-results", json={"results": [{"sample_time": t, "value": value}]}
                    )
                except httpx.TransportError:
                    return  # the server is gone: nothing more can be acknowledged
                if r.status_code == 200 and r.json()["outcomes"][0]["stored"]:
                    acknowledged[t] = value
                else:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                i += 1

    server = start_server(published.root, state, log)
    try:
        server.wait_until("/v2/health/ready")
        poster = threading.Thread(target=post_forever, args=(server.url,))
        poster.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.proc.send_signal(signal.SIGKILL)  # mid-stream: the poster is still posting
        server.proc.wait(timeout=10)
        poster.join(timeout=20)
        stop.set()
    finally:
        server.stop()
    assert server.proc.returncode == -signal.SIGKILL
    assert not failures, failures[:3]
    assert len(acknowledged) >= 150, "too few results were posted to prove anything"

    restarted = start_server(published.root, state, log)
    try:
        restarted.wait_until("/v2/health/ready")
        stored = httpx.get(restarted.url + "/v1/lab-results", params={"limit": 10_000}).json()
    finally:
        restarted.stop()
    by_time: dict[float, list[float]] = {}
    for row in stored:
        t = httpx_time(row["sample_time"])
        by_time.setdefault(t, []).append(row["value"])
    missing = [t for t in acknowledged if t not in by_time]
    assert not missing, f"{len(missing)} acknowledged results lost, e.g. {missing[:3]}"
    assert all(by_time[t] == [v] for t, v in acknowledged.items())  # once, with its value
    assert len(stored) - len(acknowledged) <= 1  # at most the one in flight at the kill
    db = sqlite3.connect(state / "lab_results.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def httpx_time(iso: str) -> float:
    """POSIX seconds of an ISO time as the service lists it."""
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


@pytest.mark.slow
def test_admin_token_never_reaches_logs_or_metrics(
    registry_copy: Path, published: Published, tmp_path: Path
) -> None:
    """With the right and wrong tokens, refused and accepted reloads and promotes, at debug
    log level with uvicorn's access log on: the token is in no output line and no metric."""
    token = "tok-9c1f27d3e8b04a65-secret"
    server = start_server(
        registry_copy,
        tmp_path / "state",
        tmp_path / "server.log",
        {"SOFTSENSOR_ADMIN_TOKEN": token, "SOFTSENSOR_WATCH_INTERVAL_S": "0.2"},
        debug=True,
    )
    try:
        server.wait_until("/v2/health/ready")
        with httpx.Client(base_url=server.url, timeout=10) as c:
            good, bad = {"authorization": f"Bearer {token}"}, {"authorization": f"Bearer {token}x"}
            assert c.post("/v1/models/tiny/reload", headers=bad).status_code == 401
            assert c.post("/v1/models/tiny/reload", headers=good).status_code == 200
            r = c.post("/v1/models/tiny/promote", json={"version": "nope"}, headers=good)
            assert r.status_code == 404
            registry = Registry(registry_copy)
            (registry_copy / "tiny" / "champion").write_text('{"version": "v7"}')  # missing
            assert c.post("/v1/models/tiny/reload", headers=good).status_code == 503
            records = tiny_records(published.data, 0, 3)
            assert c.post("/v1/predict", json={"records": records}, headers=good).status_code == 200
            metrics = c.get("/metrics", headers=good).text
            assert "softsensor_model_reload_refusals_total" in metrics
            assert registry.champion("tiny") == "v7"
    finally:
        server.stop()
    output = server.output()
    assert "/v1/models/tiny/reload" in output  # the access log was on: requests were logged
    assert token not in output and token not in metrics


@pytest.mark.slow
def test_a_late_lab_result_matches_its_estimate_after_kill_9(
    published: Published, tmp_path: Path
) -> None:
    """Two units predicted row by row, the server killed with SIGKILL, restarted: an analyzer
    result for a sample estimated before the kill still matches that very estimate (the log
    is on disk before the reply), moves unit A's bias and not unit B's, and each stream's
    clock is back (an old row is a 409, the next one is served)."""
    state, log = tmp_path / "state", tmp_path / "server.log"
    records = tiny_records(published.data, 0, 14)
    served: dict[str, list[float]] = {"unit-a": [], "unit-b": []}
    server = start_server(published.root, state, log)
    try:
        server.wait_until("/v2/health/ready")
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for rec in records[:12]:
                for unit in served:
                    r = client.post("/v1/predict", json={"stream": unit, "records": [rec]})
                    assert r.status_code == 200, r.text
                    served[unit].append(r.json()["rows"][0]["estimate"])
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
    finally:
        server.stop()
    assert server.proc.returncode == -signal.SIGKILL

    restarted = start_server(published.root, state, log)
    try:
        restarted.wait_until("/v2/health/ready")
        with httpx.Client(base_url=restarted.url, timeout=10) as client:
            lab = {"sample_time": records[8]["timestamp"], "value": served["unit-a"][8] + 0.3}
            r = client.post("/v1/lab-results", json={"results": [lab | {"stream": "unit-a"}]})
            assert r.status_code == 200, r.text
            outcome = r.json()["outcomes"][0]
            assert outcome["accepted"] and outcome["estimate"] == served["unit-a"][8]
            assert outcome["bias"] == pytest.approx(0.3 * 0.3)
            old = client.post("/v1/predict", json={"stream": "unit-a", "records": [records[5]]})
            assert old.status_code == 409
            answers = {
                unit: client.post("/v1/predict", json={"stream": unit, "records": [records[12]]})
                for unit in served
            }
            assert all(a.status_code == 200 for a in answers.values())
            assert answers["unit-a"].json()["bias"] == pytest.approx(0.09)
            assert answers["unit-b"].json()["bias"] == 0.0
    finally:
        restarted.stop()
