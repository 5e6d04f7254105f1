"""Input quality in, status out: what a historian says of its values decides the row status.

The reference for the thresholds is DeltaV's neural network block (``service.scoring.status``):
an uncertain input makes the estimate uncertain; a bad input is substituted (here: carried
forward, the card's policy for a gap) and the estimate is uncertain; more bad inputs than a
quarter of the signals (DeltaV: more than 5 of 20) make it bad. DeltaV makes an estimate Bad
as soon as one input is Bad; we substitute the value instead, as an operator would rather see
an uncertain estimate than none when one transmitter of twelve drops out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.service.conftest import Published, start_server, tiny_records

GOOD, UNCERTAIN, BAD = 0, 0x40000000, 0x80000000  # OPC UA severities (Part 4, 7.39)
RANK = {"good": 0, "uncertain": 1, "bad": 2}


@pytest.fixture(scope="module")
def client(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `softsensor serve` on loopback, as a historian meets it."""
    tmp = tmp_path_factory.mktemp("quality")
    proc = start_server(published.root, tmp / "state", tmp / "server.log")
    try:
        proc.wait_until("/v2/health/ready")
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            yield c
    finally:
        proc.stop()


def _window(published: Published) -> list[dict[str, Any]]:
    return tiny_records(published.data, 10, 16)


def _last(client: httpx.Client, records: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/predict", json={"records": records, **extra})
    assert r.status_code == 200, r.text
    row: dict[str, Any] = r.json()["rows"][-1]
    return row


def _with(records: list[dict[str, Any]], **last: Any) -> list[dict[str, Any]]:
    """The window with its last record changed (values and quality)."""
    out = [dict(r) for r in records]
    out[-1] = out[-1] | last
    return out


@pytest.mark.parametrize(
    ("quality", "encoding", "status", "reasons"),
    [
        ({"a": "Good"}, None, "good", []),
        ({"a": "Uncertain_LastKnownValue"}, None, "uncertain", ["quality_uncertain:a"]),
        ({"a": "Questionable"}, None, "uncertain", ["quality_uncertain:a"]),  # PI's flag
        ({"a": "BadNoCommunication"}, None, "uncertain", ["quality_bad:a", "imputed:a"]),
        ({"a": 0x80310000}, "opcua", "uncertain", ["quality_bad:a"]),  # BadNoCommunication
        ({"a": 0x40920000}, "opcua", "uncertain", ["quality_uncertain:a"]),
        ({"a": 0}, "opcua", "good", []),
        ({"a": 192}, "opcda", "good", []),  # OPC DA: 0xC0 is Good
        ({"a": 0}, "opcda", "uncertain", ["quality_bad:a"]),  # ... and 0 is Bad
        ({"a": 20}, "percent", "uncertain", ["quality_bad:a"]),  # PHD confidence
        ({"a": "Bad", "b": "Bad"}, None, "bad", ["quality_bad:a", "quality_bad:b"]),
        # OPC UA's JSON StatusCode object names its own encoding (Part 6, 5.4.2.12)
        (
            {"a": {"Code": 0x80310000, "Symbol": "BadNoCommunication"}},
            None,
            "uncertain",
            ["quality_bad:a"],
        ),
        ({"a": {"Code": 0x80310000}}, "opcda", "uncertain", ["quality_bad:a"]),
        ({"a": {"Symbol": "UncertainLastUsableValue"}}, None, "uncertain", ["quality_uncertain:a"]),
        ({"a": {"Code": 0}}, None, "good", []),
        # PI's flags as an object, and Kepware's boolean
        (
            {"a": {"Good": False, "Questionable": False, "Substituted": False}},
            None,
            "uncertain",
            ["quality_bad:a"],
        ),
        ({"a": {"Good": True, "Questionable": True}}, None, "uncertain", ["quality_uncertain:a"]),
        ({"a": {"Good": True, "Substituted": True}}, None, "uncertain", ["quality_uncertain:a"]),
        ({"a": {"Good": True, "Questionable": False, "Annotated": True}}, None, "good", []),
        ({"a": False}, None, "uncertain", ["quality_bad:a"]),
        ({"a": True}, None, "good", []),
    ],
)
def test_input_quality_decides_the_row_status(
    client: httpx.Client,
    published: Published,
    quality: dict[str, Any],
    encoding: str | None,
    status: str,
    reasons: list[str],
) -> None:
    """Each sent quality gives the row at least its status, with the input named, and the
    status comes back as an OPC UA status code too."""
    window = _window(published)
    base = _last(client, window)
    extra = {} if encoding is None else {"quality_encoding": encoding}
    row = _last(client, _with(window, quality=quality), **extra)
    want = max(RANK[status], RANK[base["status"]])
    assert RANK[row["status"]] == want, row
    assert set(reasons) <= set(row["reasons"]), row
    assert row["status_code"] == (GOOD, UNCERTAIN, BAD)[want]


def test_a_bad_value_is_carried_forward_not_used(
    client: httpx.Client, published: Published
) -> None:
    """A bad-quality value and a digital state in its place give the estimate of the row with
    the previous value carried forward: the bad number never reaches the model."""
    window = _window(published)
    before = window[-2]["values"]["a"]
    carried = _with(window, values=window[-1]["values"] | {"a": before})
    want = _last(client, carried)["estimate"]
    wild = window[-1]["values"] | {"a": 1e6 if before < 1e5 else -1e6}
    marked = _last(client, _with(window, values=wild, quality={"a": "Bad_SensorFailure"}))
    state = _last(client, _with(window, values=window[-1]["values"] | {"a": "I/O Timeout"}))
    pi_state = {"Name": "I/O Timeout", "Value": 246, "IsSystem": True}  # as PI sends it
    as_object = _last(client, _with(window, values=window[-1]["values"] | {"a": pi_state}))
    error = _last(client, _with(window, values=window[-1]["values"] | {"a": {"Errors": ["x"]}}))
    for row in (marked, state, as_object, error):
        assert row["estimate"] == pytest.approx(want)
        assert "quality_bad:a" in row["reasons"] and row["status"] != "good", row


def test_numbers_written_as_text_are_read_as_numbers(
    client: httpx.Client, published: Published
) -> None:
    """OPC UA's JSON encoding writes an Int64 as text ("42"), and CSV-to-JSON bridges every
    value: such a value is the number, not a digital state carried forward as bad. Text
    that is no finite number ("NaN", as OPC UA writes a NaN double) stays a bad value."""
    window = _window(published)
    want = _last(client, window)
    as_text = [
        r | {"values": {s: f" {v!r}" if s == "a" else repr(v) for s, v in r["values"].items()}}
        for r in window
    ]
    got = _last(client, as_text)
    assert got["estimate"] == want["estimate"] and got["status"] == want["status"]
    columns = {s: [str(r["values"][s]) for r in window] for s in ("a", "b", "q")}
    body = {"timestamp": [r["timestamp"] for r in window], "columns": columns}
    r = client.post("/v1/predict", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["estimate"][-1] == want["estimate"]
    for text in ("NaN", "Infinity", "1e999", "1,5"):
        row = _last(client, _with(window, values=window[-1]["values"] | {"a": text}))
        assert "quality_bad:a" in row["reasons"], (text, row)


def test_columns_carry_quality_lists(client: httpx.Client, published: Published) -> None:
    records = _window(published)
    columns = {s: [r["values"][s] for r in records] for s in ("a", "b", "q")}
    body = {
        "timestamp": [r["timestamp"] for r in records],
        "columns": columns,
        "quality": {"b": [None] * (len(records) - 1) + ["Uncertain"]},
    }
    r = client.post("/v1/predict", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"][-1] != "good" and out["status_code"][-1] >= UNCERTAIN
    last = next(f for f in out["flags"] if f["row"] == len(records) - 1)
    assert "quality_uncertain:b" in last["reasons"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quality": {"a": 192}}, "records[5].quality.a"),  # a number without its encoding
        ({"quality": {"zz": "Good"}}, "records[5].quality"),  # not a signal of the model
        ({"quality": {"a": "Splendid"}}, "records[5].quality.a"),  # no known family
        ({"quality": {"a": {"Code": "bad"}}}, "records.5.quality.a"),
        ({"quality": {"a": {"Code": 2**32}}}, "records.5.quality.a"),
        ({"quality": {"a": {"Symbol": "Splendid"}}}, "records.5.quality.a"),
        ({"quality": {"a": {"Good": "no"}}}, "records.5.quality.a"),
        ({"quality": {"a": {"Colour": "red"}}}, "records.5.quality.a"),
        ({"values": {"a": {"Value": 246}, "b": 1.0, "q": 1.0}}, "records.5.values.a"),
    ],
)
def test_a_quality_it_cannot_read_is_refused_naming_the_field(
    client: httpx.Client, published: Published, body: dict[str, Any], field: str
) -> None:
    r = client.post("/v1/predict", json={"records": _with(_window(published), **body)})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    if isinstance(detail, str):  # the service's own reading
        assert detail.startswith(field), detail
    else:  # the schema's: every way it failed, each naming the field
        assert detail and all(d["field"].startswith(field) for d in detail), detail


def test_the_answer_without_qualities_is_unchanged(
    client: httpx.Client, published: Published
) -> None:
    """No quality sent: every value good, the status code that of the status."""
    row = _last(client, _window(published))
    assert row["status_code"] == (GOOD, UNCERTAIN, BAD)[RANK[row["status"]]]
    assert not any(r.startswith("quality_") for r in row["reasons"])
