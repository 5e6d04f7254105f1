"""Large bodies do not hold up other clients: row limits apply before a body is validated
field by field, and large bodies are read and scored off the event loop, so a readiness probe
sent while one is being read is answered first (a real server process, real sockets)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import Published, ServerProcess, start_server

ROWS = 150_000  # records in the slow body: about a second of validation on this machine


@pytest.fixture
def server(published: Published, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"SOFTSENSOR_MAX_BATCH_ROWS": str(ROWS), "SOFTSENSOR_MAX_BODY_BYTES": str(64 << 20)}
    proc = start_server(published.root, tmp_path / "state", tmp_path / "server.log", env)
    try:
        proc.wait_until("/v2/health/ready")
        yield proc
    finally:
        proc.stop()


def _records(n: int) -> bytes:
    rows = [{"timestamp": 60.0 * i, "values": {"a": 1.0, "b": 2.0, "q": 3.0}} for i in range(n)]
    return json.dumps({"records": rows}).encode()


def _v2(rows: int) -> bytes:
    data = [1.0, 2.0, 3.0, 4.0] * rows
    tensor = {"name": "x", "shape": [rows, 4], "datatype": "FP64", "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def test_a_large_body_is_read_off_the_event_loop(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a large predict body is being read and validated, a readiness probe is
    answered. The reading of the big body is held (in this process's real server) until
    the probe has its answer: on the event loop, that hold would block the probe too, and
    the probe times out. Before, the body was read on the event loop."""
    import uvicorn

    from service.api.app import create_app
    from service.api.columnar import read_predict
    from tests.service.conftest import free_port, make_settings

    reading, probed = threading.Event(), threading.Event()
    held: dict[str, bool] = {}
    real = read_predict

    def held_read(body: bytes, *args: object) -> object:
        if len(body) > 1 << 20:
            reading.set()
            held["probe_answered_meanwhile"] = probed.wait(timeout=15)
        return real(body, *args)  # type: ignore[arg-type]

    monkeypatch.setattr("service.api.routes.read_predict", held_read)
    settings = make_settings(published.root, tmp_path, max_batch_rows=ROWS, max_body_bytes=64 << 20)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        answers: dict[str, int] = {}

        def big() -> None:
            r = httpx.post(url + "/v1/predict", content=_records(ROWS), timeout=120)
            answers["big"] = r.status_code

        worker = threading.Thread(target=big)
        worker.start()
        assert reading.wait(timeout=30), "the large body never reached the reader"
        probe = httpx.get(url + "/v2/health/ready", timeout=5)
        probed.set()
        worker.join(timeout=60)
    finally:
        probed.set()
        server.should_exit = True
        thread.join(timeout=30)
    assert probe.status_code == 200
    assert held["probe_answered_meanwhile"] and answers["big"] == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/predict", _records(ROWS + 1)),
        ("/v1/predict", json.dumps({"records": [{}] * 1_000_000}).encode()),
        ("/v2/models/tiny/infer", _v2(ROWS + 1)),
    ],
    ids=["records", "empty-records", "v2"],
)
def test_too_many_rows_are_refused_before_they_are_validated(
    server: ServerProcess, path: str, body: bytes
) -> None:
    """413 naming the limit; the records are counted, not validated one by one (a million
    empty records were validated first and then refused, seconds of the event loop)."""
    r = httpx.post(server.url + path, content=body, timeout=60)
    assert r.status_code == 413, r.text[:300]
    assert str(ROWS) in r.json()["detail"]
