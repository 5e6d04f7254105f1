"""PI Web API through ``POST /v1/predict`` of a real `softsensor serve` on loopback.

A streamset read body (golden file, the documented shape: a questionable value, digital
states, a substituted value) goes in with ``?format=piwebapi``; the tag map named by
``SOFTSENSOR_TAG_MAPS`` maps its streams to the model's signals; the rows are scored by the
ordinary predict path, so they answer exactly what the same rows sent as records answer. With
``?answer=piwebapi`` the answer is the body of PI's ``POST streamsets/recorded`` (golden
file: one stream per output point, ``Good``/``Questionable`` from each row's status). A bad
tag map stops the server at start, naming the file and the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.pi_schemas import PiRecordedWrite, PiStreamset
from tests.service.conftest import Published, ServerProcess, start_server, tiny_records

GOLDEN = Path(__file__).parent / "golden"
TAG_MAP = GOLDEN / "pi_predict_tagmap.yaml"
OUTPUTS = {  # the tag map's output points, in its order
    "F1DPmN2dAgq4h0i0qEIGdqPPQAAQUkEZRjpDT0xBLlFJMjAw": "estimate",
    "F1DPmN2dAgq4h0i0qEIGdqPPQAAQUkEZRjpDT0xBLlFJMjAx": "estimate_corrected",
    "F1DPmN2dAgq4h0i0qEIGdqPPQAAQUkEZRjpDT0xBLlFJMjAy": "interval_low",
    "F1DPmN2dAgq4h0i0qEIGdqPPQAAQUkEZRjpDT0xBLlFJMjAz": "interval_high",
}


def _golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def server(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("pi_predict")
    env = {"SOFTSENSOR_TAG_MAPS": json.dumps([str(TAG_MAP)])}
    proc = start_server(published.root, tmp / "state", tmp / "server.log", env)
    try:
        proc.wait_until("/v2/health/ready")
        yield proc.url
    finally:
        proc.stop()


def _warm(url: str, published: Published, stream: str) -> None:
    """The stream's first five minutes as records, so the PI rows have their lag history."""
    body = {"stream": stream, "records": tiny_records(published.data, 0, 5)}
    r = httpx.post(f"{url}/v1/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text


def _as_records(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The golden read body's rows as predict records, written out by hand: a good value as
    its number; Good false (a digital state) as null and bad; Questionable or Substituted as
    uncertain."""
    signal = {"COLA.TI103": "a", "COLA.FI104": "b", "COLA.AI105": "q"}
    rows: dict[str, dict[str, Any]] = {}
    for stream in body["Items"]:
        s = signal[stream["Name"]]
        for v in stream["Items"]:
            row = rows.setdefault(v["Timestamp"], {"timestamp": v["Timestamp"], "values": {}})
            row["values"][s] = v["Value"] if v["Good"] else None
            if not v["Good"]:
                row.setdefault("quality", {})[s] = "bad"
            elif v["Questionable"] or v["Substituted"]:
                row.setdefault("quality", {})[s] = "uncertain"
    return [rows[t] for t in sorted(rows)]


def _records_answer(url: str, published: Published, stream: str) -> dict[str, Any]:
    _warm(url, published, stream)
    body = {"stream": stream, "records": _as_records(_golden("pi_predict_read.json"))}
    r = httpx.post(f"{url}/v1/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_a_streamset_read_is_scored_as_the_same_rows_as_records(
    server: str, published: Published
) -> None:
    want = _records_answer(server, published, "as-records-1")
    _warm(server, published, "pi-1")
    r = httpx.post(
        f"{server}/v1/predict",
        params={"format": "piwebapi", "stream": "pi-1"},
        json=_golden("pi_predict_read.json"),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["stream"] == "pi-1" and got["model"] == "tiny"
    assert got["rows"] == want["rows"]
    statuses = [row["status"] for row in got["rows"]]
    assert statuses == ["good", "uncertain", "uncertain", "uncertain", "bad"]
    reasons = [row["reasons"] for row in got["rows"]]
    assert "quality_uncertain:a" in reasons[1]  # Questionable
    assert "quality_bad:b" in reasons[2]  # the digital state I/O Timeout
    assert "quality_uncertain:q" in reasons[3]  # Substituted
    assert {"quality_bad:a", "quality_bad:b"} <= set(reasons[4])  # Shutdown, I/O Timeout


def test_the_round_trip_answers_the_recorded_write_body(server: str, published: Published) -> None:
    want = _records_answer(server, published, "as-records-2")["rows"]
    _warm(server, published, "pi-2")
    r = httpx.post(
        f"{server}/v1/predict?format=piwebapi&answer=piwebapi&stream=pi-2&model=tiny",
        json=_golden("pi_predict_read.json"),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    # The numbers are the model's (the same as /v1/predict answers the rows as records) ...
    for stream in body:
        field = OUTPUTS[stream["WebId"]]
        values = [v["Value"] for v in stream["Items"]]
        if field.startswith("interval_"):
            expected = [row["interval"][field == "interval_high"] for row in want]
        else:
            expected = [row[field] for row in want]
        assert values == expected, field
        for v in stream["Items"]:
            v["Value"] = None
    # ... and everything else is the documented UpdateValuesAdHoc shape, with the qualities.
    assert body == _golden("pi_predict_write.json")


def _read_until(body: dict[str, Any], last: str) -> dict[str, Any]:
    """The streamset read a poller made at ``last``: every value up to that time."""
    out: dict[str, Any] = json.loads(json.dumps(body))
    for stream in out["Items"]:
        stream["Items"] = [v for v in stream["Items"] if v["Timestamp"] <= last]
    return out


def test_a_connectors_overlapping_reads_write_each_row_once(
    server: str, published: Published
) -> None:
    """A connector re-reads a trailing window (``startTime=*-10m``), so each read repeats
    rows the stream has scored: those are skipped, the new rows are answered exactly as the
    whole read answers them, and a read with nothing new writes nothing."""
    want = _records_answer(server, published, "as-records-4")["rows"]
    _warm(server, published, "pi-4")
    full = _golden("pi_predict_read.json")
    url = f"{server}/v1/predict?format=piwebapi&answer=piwebapi&stream=pi-4"
    written: list[tuple[str, float]] = []
    for poll in ("2026-01-01T00:07:00Z", "2026-01-01T00:09:00Z", "2026-01-01T00:09:00Z"):
        r = httpx.post(url, json=_read_until(full, poll), timeout=30)
        assert r.status_code == 200, r.text
        estimate = [s for s in r.json() if OUTPUTS[s["WebId"]] == "estimate"]
        written += [(v["Timestamp"], v["Value"]) for s in estimate for v in s["Items"]]
    when = [datetime.fromisoformat(t) for t, _ in written]
    assert when == [datetime.fromisoformat(row["timestamp"]) for row in want]
    assert [v for _, v in written] == [row["estimate"] for row in want]
    again = httpx.post(url, json=full, timeout=30)
    assert again.status_code == 200 and again.json() == [], again.text


def test_records_skip_the_rows_their_stream_has_seen_only_when_asked(
    server: str, published: Published
) -> None:
    _warm(server, published, "rec-5")
    window = {"stream": "rec-5", "records": tiny_records(published.data, 2, 8)}
    refused = httpx.post(f"{server}/v1/predict", json=window, timeout=30)
    assert refused.status_code == 409, refused.text  # the default: a conflict
    r = httpx.post(f"{server}/v1/predict", json=window | {"overlap": "skip"}, timeout=30)
    assert r.status_code == 200, r.text
    alone = {"stream": "rec-5b", "records": tiny_records(published.data, 0, 8)}
    whole = httpx.post(f"{server}/v1/predict", json=alone, timeout=30).json()["rows"]
    assert r.json()["rows"] == whole[5:]  # rows 5..7: what the stream had not seen
    nothing = httpx.post(f"{server}/v1/predict", json=window | {"overlap": "skip"}, timeout=30)
    assert nothing.status_code == 200 and nothing.json()["rows"] == [], nothing.text


def test_the_golden_bodies_have_the_shapes_the_openapi_schema_states() -> None:
    for name in ("pi_predict_read.json", "pi_streamset_recorded.json"):
        PiStreamset.model_validate(_golden(name))
    golden = _golden("pi_recorded_write.json")
    assert PiRecordedWrite.model_validate(golden).model_dump(mode="json") == golden


def test_records_in_can_answer_the_write_body_too(server: str, published: Published) -> None:
    rows = _records_answer(server, published, "as-records-3")["rows"]
    body = {"stream": "rec-pi-3", "records": _as_records(_golden("pi_predict_read.json"))}
    _warm(server, published, "rec-pi-3")
    r = httpx.post(f"{server}/v1/predict?answer=piwebapi", json=body, timeout=30)
    assert r.status_code == 200, r.text
    estimate = r.json()[0]
    assert [v["Value"] for v in estimate["Items"]] == [row["estimate"] for row in rows]
    assert [v["Good"] for v in estimate["Items"]] == [True, True, True, True, False]


@pytest.mark.parametrize(
    ("query", "change", "message"),
    [
        ("format=piwebapi", {"Items.2.WebId": "F1DPother", "Items.2.Name": "X.AI9"}, None),
        ("format=piwebapi&answer=csv", {}, "answer"),
        ("format=opc", {}, "format"),
        ("format=piwebapi&fromat=x", {}, "fromat"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    server: str, query: str, change: dict[str, str], message: str | None
) -> None:
    body = _golden("pi_predict_read.json")
    for key, value in change.items():
        _, i, field = key.split(".")
        body["Items"][int(i)][field] = value
        body["Items"][int(i)]["Path"] = "\\\\PISRV01\\X.AI9"
    r = httpx.post(f"{server}/v1/predict?{query}&stream=bad", json=body, timeout=30)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    text = json.dumps(detail)
    if message is None:
        assert "Items[2]" in text and "'X.AI9'" in text and "tag map of model 'tiny'" in text
    else:
        assert message in text


def test_a_pi_body_without_its_format_gets_a_hint(server: str) -> None:
    r = httpx.post(f"{server}/v1/predict", json=_golden("pi_predict_read.json"), timeout=30)
    assert r.status_code == 422, r.text
    assert "?format=piwebapi" in r.json()["detail"]


def test_a_bad_tag_map_stops_the_server_naming_the_file_and_key(
    published: Published, tmp_path: Path
) -> None:
    bad = tmp_path / "column.yaml"
    bad.write_text("model: tiny\ninputs: [{signal: a, webid: W}]\n", encoding="utf-8")
    env = {"SOFTSENSOR_TAG_MAPS": json.dumps([str(tmp_path)])}
    proc: ServerProcess = start_server(published.root, tmp_path / "state", tmp_path / "s.log", env)
    try:
        code = proc.proc.wait(timeout=60)
    finally:
        proc.stop()
    output = proc.output()
    assert code != 0, output
    assert str(bad) in output and "inputs.0.webid" in output, output
