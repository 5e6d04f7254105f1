"""Replicas that agree: real `softsensor serve` processes on one real PostgreSQL database,
driven by a round-robin client, answer as one replica does; each lab result is stored once;
a bias moved on one is applied by the other within the stated delay."""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.contracts.registry import Registry
from service.lab.bias import BiasConfig
from tests.service.conftest import Published, ServerProcess, start_server, tiny_records

REFRESH_S = 0.2  # SOFTSENSOR_STATE_REFRESH_S of the replicas
STATED_DELAY_S = REFRESH_S + 1.0  # the refresh period plus a read, with a loaded CI box's margin
STREAM = "unit-a"


def serve(published: Published, tmp: Path, name: str, url: str | None) -> ServerProcess:
    env = {"SOFTSENSOR_STATE_REFRESH_S": str(REFRESH_S)}
    if url is not None:
        env["SOFTSENSOR_STATE_URL"] = url
    server = start_server(published.root, tmp / name, tmp / f"{name}.log", env)
    return server


@pytest.fixture
def replicas(published_long: Published, tmp_path: Path, pg_url: str) -> Iterator[list[Any]]:
    """Two replicas on one PostgreSQL database, and one alone on its own SQLite file."""
    servers = [serve(published_long, tmp_path, f"r{i}", pg_url) for i in range(2)]
    servers.append(serve(published_long, tmp_path, "single", None))
    try:
        for server in servers:
            server.wait_until("/v2/health/ready")
        yield servers
    finally:
        for server in servers:
            server.stop()


def metric(url: str, name: str, **labels: str) -> float | None:
    """One sample of the replica's /metrics, read as Prometheus reads it."""
    text = httpx.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def wait_for_bias(urls: list[str], bias: float) -> float:
    """Seconds until every replica applies ``bias`` to the stream (fails past the delay)."""
    start = time.monotonic()
    while True:
        seen = [metric(u, "softsensor_bias", model="tiny", stream=STREAM) for u in urls]
        if all(b is not None and abs(b - bias) < 1e-12 for b in seen):
            return time.monotonic() - start
        if time.monotonic() - start > 2 * STATED_DELAY_S:
            raise AssertionError(f"biases {seen} are not {bias} after {2 * STATED_DELAY_S} s")
        time.sleep(0.02)


def drive(urls: list[str], records: list[dict[str, Any]], offset: float) -> dict[str, Any]:
    """One row per request on one stream, round-robin over ``urls``; every 6th row a lab
    result (a row 3 back, ``offset`` above its estimate) posted to the next replica."""
    answers, labs, delays = [], [], []
    with httpx.Client(timeout=30) as client:
        for i, record in enumerate(records):
            url = urls[i % len(urls)]
            r = client.post(f"{url}/v1/predict", json={"stream": STREAM, "records": [record]})
            assert r.status_code == 200, r.text
            answers.append(r.json())
            if i % 6 == 5:
                row = answers[i - 3]["rows"][0]
                lab = {"stream": STREAM, "sample_time": row["timestamp"]}
                lab["value"] = row["estimate"] + offset
                posted = client.post(
                    f"{urls[(i + 1) % len(urls)]}/v1/lab-results", json={"results": [lab]}
                )
                assert posted.status_code == 200, posted.text
                outcome = posted.json()["outcomes"][0]
                labs.append(outcome)
                delays.append(wait_for_bias(urls, outcome["bias"]))
    return {"answers": answers, "labs": labs, "delays": delays}


@pytest.mark.slow
def test_round_robin_replicas_answer_as_a_single_one(
    replicas: list[ServerProcess], published_long: Published
) -> None:
    """Stream lag history, trackers, bias and alarms follow the stream from replica to
    replica: every answer (estimates, status, bias, alarms) is the single replica's."""
    *fleet, single = replicas
    card = Registry(published_long.root).verify("tiny", "v1")
    offset = 0.8 * BiasConfig.from_card(card).max_residual  # plausible, and it moves the bias
    records = tiny_records(published_long.data, 0, 60)
    together = drive([s.url for s in fleet], records, offset)
    alone = drive([single.url], records, offset)

    assert together["answers"] == alone["answers"]
    assert together["labs"] == alone["labs"]
    assert sum(lab["accepted"] for lab in together["labs"]) >= 5
    assert max(together["delays"]) <= STATED_DELAY_S, together["delays"]
    # The residual alarm is the stream's, once: both replicas say the same.
    alarms = {
        metric(s.url, "softsensor_alarm", model="tiny", stream=STREAM, alarm="residual")
        for s in fleet
    }
    assert len(alarms) == 1
    assert "residual" in together["answers"][-1]["alarms"], "the offset should raise it"


@pytest.mark.slow
def test_a_lab_result_posted_to_both_replicas_at_once_is_stored_once(
    replicas: list[ServerProcess], published_long: Published
) -> None:
    """The same result sent to both replicas at the same moment (a client's retry through
    the other pod): one stores it, the other answers a duplicate; one row in the database."""
    *fleet, _ = replicas
    records = tiny_records(published_long.data, 0, 12)
    with httpx.Client(timeout=30) as client:
        for i, record in enumerate(records):
            r = client.post(
                f"{fleet[i % 2].url}/v1/predict", json={"stream": STREAM, "records": [record]}
            )
            assert r.status_code == 200, r.text
    stored = []
    for record in records[2:10]:
        lab = {"results": [{"stream": STREAM, "sample_time": record["timestamp"], "value": 1.0}]}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            urls = [f"{s.url}/v1/lab-results" for s in fleet]
            posts = list(pool.map(functools.partial(httpx.post, json=lab), urls))
        assert [p.status_code for p in posts] == [200, 200], [p.text for p in posts]
        outcomes = [p.json()["outcomes"][0] for p in posts]
        stored.append(sorted(o["stored"] for o in outcomes))
        assert outcomes[0]["bias"] == outcomes[1]["bias"]
    assert stored == [[False, True]] * 8
    listed = httpx.get(f"{fleet[0].url}/v1/lab-results", params={"limit": 100}).json()
    assert len(listed) == 8
    assert len({row["sample_time"] for row in listed}) == 8
