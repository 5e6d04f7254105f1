"""Bad input beyond tests/service/test_app.py: deep JSON, oversized bodies refused before they
are read, and wrong values in every numeric field of every endpoint, each a clear 4xx."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.service.conftest import Published, make_settings, tiny_records

DEEP = "[" * 100_000 + "]" * 100_000


def v2_text(data: str) -> str:
    return '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ' + data + "}]}"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/predict", '{"records": ' + DEEP + "}"),
        ("/v1/predict", DEEP),
        ("/v1/lab-results", '{"results": ' + DEEP + "}"),
        ("/v1/lab-results", DEEP),
        ("/v2/models/tiny/infer", v2_text(DEEP)),
        ("/v2/models/tiny/infer", v2_text("[" * 500 + "]" * 500)),  # parses, too deep for numpy
        ("/v1/predict", '{"records": [{"values": {"a": 1.0'),  # cut short
        ("/v1/lab-results", b'{"results": [\xff\xfe]}'),  # not UTF-8
        ("/v2/models/tiny/infer", "[]"),
    ],
)
def test_deep_or_malformed_json_is_a_4xx(client: TestClient, path: str, body: str | bytes) -> None:
    """100k nested arrays do not reach a RecursionError 5xx: the answer is a 4xx error body."""
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.json()["error"] and r.json()["detail"]


class Upload:
    """An ASGI request body that would go on forever: counts what the app really read."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.read = 0

    async def receive(self) -> dict[str, Any]:
        self.read += self.chunk
        return {"type": "http.request", "body": b"[" * self.chunk, "more_body": True}


async def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]], body: Upload) -> int:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, body.receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return int(start["status"])


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/lab-results", "/v2/models/tiny/infer"])
@pytest.mark.parametrize("declared", [True, False])
def test_oversized_body_is_413_without_reading_it_all(
    published: Published, tmp_path: Path, path: str, declared: bool
) -> None:
    """A 1 GB Content-Length is refused before one byte is read; a chunked body without a
    length is cut off just past the limit (settings.max_body_bytes)."""
    limit = 4096
    app = create_app(make_settings(published.root, tmp_path, max_body_bytes=limit))
    headers = [(b"content-length", str(1 << 30).encode())] if declared else []
    upload = Upload(chunk=1024)
    assert asyncio.run(_call(app, path, headers, upload)) == 413
    assert upload.read == (0 if declared else limit + 1024)


def _lab(value: object, sample_time: object = 1_767_225_600.0) -> dict[str, Any]:
    return {"results": [{"sample_time": sample_time, "value": value}]}


def _columns(**change: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timestamp": [1_767_225_600.0, 1_767_225_660.0],
        "columns": {"a": [1.0, 2.0], "b": [1.0, 2.0], "q": [1.0, 2.0]},
    }
    for key, value in change.items():
        if key == "timestamp":
            body["timestamp"] = value
        else:
            body["columns"][key] = value
    return body


def _v2(data: object) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": data}]}


RAW = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        # NaN and infinities, as JSON extensions and as overflowing literals
        ("/v1/predict", '{"records": [{"values": {"a": Infinity, "b": 1, "q": 1}}]}', 422, "a"),
        ("/v1/predict", '{"records": [{"values": {"a": 1e999, "b": 1, "q": 1}}]}', 422, "a"),
        ("/v1/predict", '{"columns": {"a": [-Infinity], "b": [1], "q": [1]}}', 422, "columns"),
        ("/v1/lab-results", '{"results": [{"sample_time": 1, "value": NaN}]}', 422, "value"),
        ("/v1/lab-results", '{"results": [{"sample_time": Infinity, "value": 1}]}', 422, "time"),
        ("/v2/models/tiny/infer", v2_text("[NaN, 1, 2, 3]"), 400, "data"),
        # strings, booleans and nulls where a number belongs
        ("/v1/predict", _columns(b=[[1.0], 2.0]), 422, "columns.b"),  # text: a digital state
        ("/v1/predict", _columns(b=[True, 2.0]), 422, "columns.b"),
        ("/v1/predict", _columns(timestamp=[None, 1.0]), 422, "timestamp"),
        ("/v1/predict", _columns(timestamp=[True, False]), 422, "timestamp"),
        ("/v1/lab-results", _lab("1.0"), 422, "value"),
        ("/v1/lab-results", _lab(True), 422, "value"),
        ("/v1/lab-results", _lab(None), 422, "value"),
        ("/v1/lab-results", _lab(1.0, None), 422, "sample_time"),
        ("/v1/lab-results", _lab(1.0, False), 422, "sample_time"),
        ("/v1/lab-results", _lab(1.0, 1e300), 422, "sample_time"),  # no date can hold it
        # just before year 1: refused, not read back as milliseconds (a date in 1968)
        ("/v1/lab-results", _lab(1.0, -62_135_596_801.0), 422, "sample_time"),
        ("/v2/models/tiny/infer", _v2([True, 1.0, 2.0, 3.0]), 400, "data"),
        ("/v2/models/tiny/infer", _v2([None, 1.0, 2.0, 3.0]), 400, "data"),
        ("/v2/models/tiny/infer", _v2(["1", 1.0, 2.0, 3.0]), 400, "data"),
        # duplicated and unsorted timestamps
        ("/v1/predict", _columns(timestamp=[5.0, 5.0]), 422, "timestamp[1]: duplicated"),
        ("/v1/predict", _columns(timestamp=[6.0, 5.0]), 422, "earlier than the row before"),
        (
            "/v1/lab-results",
            {"results": [{"sample_time": 60.0, "value": 1.0}, {"sample_time": 60.0, "value": 1.0}]},
            422,
            "duplicated",
        ),
        (
            "/v1/lab-results",  # the same instant written two ways
            {
                "results": [
                    {"sample_time": "2026-01-01T00:00:00Z", "value": 1.0},
                    {"sample_time": 1_767_225_600.0, "value": 2.0},
                ]
            },
            422,
            "duplicated",
        ),
        # unknown and missing features
        ("/v1/predict", _columns(zz=[1.0, 2.0]), 422, "unknown signals ['zz']"),
        ("/v1/predict", {"columns": {"a": [1.0], "q": [1.0]}}, 422, "missing signals ['b']"),
        ("/v2/models/tiny/infer", _v2([1.0, 2.0, 3.0]), 400, "shape"),
        # values so far out of range that the float32 graph overflows: the client's, not a 500
        ("/v1/predict", {"records": [{"values": {"a": 1e300, "b": 1, "q": 1}}]}, 422, "['a']"),
        ("/v2/models/tiny/infer", _v2([1e300, 1.0, 2.0, 3.0]), 400, "valid range"),
        # integers no float can hold: JSON allows them, numpy's cast overflows
        ("/v2/models/tiny/infer", v2_text(f"[{2**1024}, 1, 2, 3]"), 400, "data"),
        ("/v2/models/tiny/infer", v2_text(f"[[{-(2**1100)}, 1, 2, 3]]"), 400, "data"),
        (
            "/v1/predict",
            '{"records": [{"values": {"a": ' + str(2**1024) + ', "b": 1, "q": 1}}]}',
            422,
            "a",
        ),
    ],
)
def test_wrong_numbers_are_a_clear_4xx(
    client: TestClient, path: str, body: object, status: int, field: str
) -> None:
    """Each refusal is a 4xx whose detail names the field (or signal) and the reason."""
    if isinstance(body, str):
        r = client.post(path, content=body, headers=RAW)
    else:
        r = client.post(path, json=body)
    assert r.status_code == status, r.text[:300]
    assert r.json()["error"] and field in json.dumps(r.json()["detail"]), r.text[:300]
    assert client.get("/v1/lab-results").json() == []  # nothing was half applied


def test_an_absurd_value_in_a_stream_passes_and_the_stream_recovers(client: TestClient) -> None:
    """A historian's 1e300 "bad value" in the analyzer signal q, which the model reads two
    two samples later (lag 2): that sample itself is scored (q is flagged), the one whose
    lag holds it is refused with a 422 naming q, and the stream then scores again. A refused
    sample still moves the stream on; before, the stream stayed stuck behind the value."""
    import warnings

    def post(minute: int, q: float) -> Any:
        body = {
            "stream": "unit-9",
            "records": [
                {"timestamp": 60.0 * minute, "values": {"a": 1.0, "b": 2.0, "q": q}},
            ],
        }
        return client.post("/v1/predict", json=body)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused quietly: no numpy overflow warning in the logs
        statuses = [post(1, 3.0).status_code, post(2, 3.0).status_code]
        absurd = post(3, 1e300)
        assert absurd.status_code == 200, absurd.text
        assert absurd.json()["rows"][0]["flags"]["out_of_range"] == ["q"]
        statuses.append(post(4, 3.0).status_code)
        refused = post(5, 3.0)
        statuses += [post(minute, 3.0).status_code for minute in (6, 7)]
    assert statuses == [200, 200, 200, 200, 200]
    assert refused.status_code == 422, refused.text
    assert "['q']" in refused.json()["detail"] and "history" in refused.json()["detail"]


def test_null_reading_means_not_available_not_an_error(
    client: TestClient, published: Published
) -> None:
    """The one numeric field where null is allowed: a reading that is not available is
    carried forward and flagged ``imputed`` (see the schema's docs), not refused."""
    records = tiny_records(published.data, 0, 4)
    records[3]["values"]["b"] = None
    r = client.post("/v1/predict", json={"records": records})
    assert r.status_code == 200 and r.json()["rows"][3]["flags"]["imputed"] == ["b"]


def test_conflicting_lab_batch_stores_nothing(client: TestClient) -> None:
    """A batch with one result that contradicts a stored one is refused whole (409)."""
    assert client.post("/v1/lab-results", json=_lab(1.0, 60.0)).status_code == 200
    batch = {"results": [{"sample_time": 30.0, "value": 1.0}, {"sample_time": 60.0, "value": 2.0}]}
    r = client.post("/v1/lab-results", json=batch)
    assert r.status_code == 409 and "already stored" in r.json()["detail"]
    assert [row["value"] for row in client.get("/v1/lab-results").json()] == [1.0]


@pytest.mark.parametrize("since", ["-62135596801", "1e300", "nan", "yesterday", ""])
def test_lab_listing_refuses_a_since_no_date_can_hold(client: TestClient, since: str) -> None:
    r = client.get("/v1/lab-results", params={"since": since})
    assert r.status_code == 422, r.text
    assert "since" in json.dumps(r.json()["detail"])
