"""Faults of a fleet on shared state: a replica killed with SIGKILL while lab results stream
in through a round-robin client, and the PostgreSQL server crashed and restarted under a
running service. Real processes, a real server."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.pgserver import PgServer
from tests.service.conftest import Published, start_server, tiny_records
from tests.service.test_process import httpx_time

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the test data's first sample


@pytest.mark.slow
def test_sigkill_of_one_replica_loses_no_acknowledged_lab_result(
    published: Published, tmp_path: Path, pg_url: str
) -> None:
    """Round-robin lab posts over two replicas; one is killed -9 mid-stream and the client
    carries on with the other: every result acknowledged by either is stored, once."""
    env = {"SOFTSENSOR_STATE_URL": pg_url}
    servers = [
        start_server(published.root, tmp_path / f"r{i}", tmp_path / f"r{i}.log", env)
        for i in range(2)
    ]
    acknowledged: dict[float, float] = {}
    failures: list[str] = []
    stop = threading.Event()

    def post_forever() -> None:
        alive = [s.url for s in servers]
        with httpx.Client(timeout=10) as client:
            i = 0
            while not stop.is_set() and alive:
                url = alive[i % len(alive)]
                t, value = T0 + 60.0 * i, round(1.0 + 0.001 * i, 6)
                try:
                    r = client.post(
                        f"{url}/v1/lab-results",
                        json={"results": [{"sample_time": t, "value": value}]},
                    )
                except httpx.TransportError:  # that replica is gone: not acknowledged
                    alive.remove(url)
                    i += 1
                    continue
                if r.status_code == 200 and r.json()["outcomes"][0]["stored"]:
                    acknowledged[t] = value
                else:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                i += 1

    try:
        for server in servers:
            server.wait_until("/v2/health/ready")
        poster = threading.Thread(target=post_forever)
        poster.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        servers[0].proc.send_signal(signal.SIGKILL)  # mid-stream
        servers[0].proc.wait(timeout=10)
        before = len(acknowledged)
        while len(acknowledged) < before + 50 and time.monotonic() < deadline + 30:
            time.sleep(0.01)
        stop.set()
        poster.join(timeout=30)
        stored = httpx.get(servers[1].url + "/v1/lab-results", params={"limit": 10_000}).json()
    finally:
        stop.set()
        for server in servers:
            server.stop()
    assert servers[0].proc.returncode == -signal.SIGKILL
    assert not failures, failures[:3]
    assert len(acknowledged) >= 150, "too few results were posted to prove anything"
    by_time: dict[float, list[float]] = {}
    for row in stored:
        by_time.setdefault(httpx_time(row["sample_time"]), []).append(row["value"])
    missing = [t for t in acknowledged if t not in by_time]
    assert not missing, f"{len(missing)} acknowledged results lost, e.g. {missing[:3]}"
    assert all(by_time[t] == [v] for t, v in acknowledged.items())  # once, with its value
    assert len(stored) - len(acknowledged) <= 1  # at most the one in flight at the kill


def lab(t: float, value: float) -> dict[str, object]:
    return {"results": [{"stream": "unit-a", "sample_time": t, "value": value}]}


@pytest.mark.slow
def test_postgres_restarted_under_a_running_service(
    published: Published, tmp_path: Path, pg_url: str, pg_server: PgServer
) -> None:
    """While the database is down: lab results and stateful predicts get 503 naming the
    database, a predict that sends its window (on the default stream, held here) keeps its
    200. Back up: the service recovers
    by itself (no restart) and nothing acknowledged before is lost."""
    env = {"SOFTSENSOR_STATE_URL": pg_url, "SOFTSENSOR_STATE_TIMEOUT_S": "1"}
    server = start_server(published.root, tmp_path / "r", tmp_path / "r.log", env)
    records = tiny_records(published.data, 0, 40)
    window = {"records": records[30:36]}  # no stream: needs no state
    try:
        server.wait_until("/v2/health/ready")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for record in records[:10]:
                r = client.post("/v1/predict", json={"stream": "unit-a", "records": [record]})
                assert r.status_code == 200, r.text
            assert client.post("/v1/predict", json=window).status_code == 200
            first = client.post("/v1/lab-results", json=lab(T0 + 300, 1.0))
            assert first.status_code == 200 and first.json()["outcomes"][0]["stored"]

            pg_server.stop("immediate")  # a crash: recovered from its WAL at start
            try:
                down = client.post("/v1/lab-results", json=lab(T0 + 360, 1.0))
                assert down.status_code == 503, down.text
                assert down.json()["error"] == "store_unavailable"
                assert "PostgreSQL" in down.json()["detail"]
                assert "retry" in down.json()["detail"]
                stateful = client.post(
                    "/v1/predict", json={"stream": "unit-a", "records": [records[10]]}
                )
                assert stateful.status_code == 503, stateful.text
                assert stateful.json()["error"] == "store_unavailable"
                for _ in range(3):
                    stateless = client.post("/v1/predict", json=window)
                    assert stateless.status_code == 200, stateless.text
                assert client.get("/v1/lab-results").status_code == 503
            finally:
                pg_server.start_again()

            deadline, again = time.monotonic() + 30, None
            while time.monotonic() < deadline:
                again = client.post("/v1/lab-results", json=lab(T0 + 360, 1.0))
                if again.status_code == 200:
                    break
                assert again.status_code == 503, again.text
                time.sleep(0.2)
            assert again is not None and again.status_code == 200, "did not recover"
            r = client.post("/v1/predict", json={"stream": "unit-a", "records": [records[10]]})
            assert r.status_code == 200, r.text
            assert client.post("/v1/predict", json=window).status_code == 200
            stored = client.get("/v1/lab-results", params={"stream": "unit-a"}).json()
            assert sorted(httpx_time(row["sample_time"]) for row in stored) == [
                T0 + 300,
                T0 + 360,
            ]
    finally:
        server.stop()
    assert "unavailable" in server.output()  # the log says what happened
