"""HTTP as clients other than our own use it, against a real `softsensor serve` process:
compressed bodies (a bridge sending a backfill from an edge box gzips it) and HEAD (load
balancers and uptime checkers probe health with it)."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.conftest import Published, ServerProcess, serving, tiny_records

LIMIT = 200_000  # SOFTSENSOR_MAX_BODY_BYTES of the server below


@pytest.fixture(scope="module")
def server(
    published: Published, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {"SOFTSENSOR_MAX_BODY_BYTES": str(LIMIT), "SOFTSENSOR_GZIP_ANSWERS": "true"}
    with serving(published.root, tmp_path_factory.mktemp("http-semantics"), env) as proc:
        yield proc


def _body(published: Published, stop: int = 30) -> bytes:
    return json.dumps({"records": tiny_records(published.data, 0, stop)}).encode()


def _post(server: ServerProcess, content: bytes, **headers: str) -> httpx.Response:
    headers = {"content-type": "application/json"} | headers
    return httpx.post(server.url + "/v1/predict", content=content, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("GZIP, identity", gzip.compress),
    ],
)
def test_a_compressed_body_gets_the_answer_of_the_plain_one(
    server: ServerProcess, published: Published, coding: str, encode: object
) -> None:
    plain = _body(published)
    expected = _post(server, plain)
    assert expected.status_code == 200, expected.text
    assert callable(encode)
    r = _post(server, encode(plain), **{"content-encoding": coding})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == expected.json()["rows"]


def test_gzip_members_one_after_another_are_one_body(
    server: ServerProcess, published: Published
) -> None:
    plain = _body(published)
    half = len(plain) // 2
    r = _post(
        server,
        gzip.compress(plain[:half]) + gzip.compress(plain[half:]),
        **{"content-encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == _post(server, plain).json()["rows"]


def test_a_byte_order_mark_before_the_json_is_ignored(
    server: ServerProcess, published: Published
) -> None:
    """PowerShell 5 and .NET UTF-8 writers put a byte-order mark in front; RFC 8259 lets a
    parser ignore it. Before, every such body was 'Invalid JSON' at its first byte."""
    bom = b"\xef\xbb\xbf"
    plain = _body(published)
    expected = _post(server, plain).json()["rows"]
    assert _post(server, bom + plain).json()["rows"] == expected
    packed = _post(server, gzip.compress(bom + plain), **{"content-encoding": "gzip"})
    assert packed.json()["rows"] == expected
    chunks = iter([bom[:1], bom[1:] + plain[:5], plain[5:]])  # sent chunked, the mark split
    assert _post(server, chunks).json()["rows"] == expected  # type: ignore[arg-type]
    lab = httpx.post(server.url + "/v1/lab-results", content=bom + b'{"results": []}', timeout=30)
    assert lab.status_code == 422 and "Invalid JSON" not in lab.text, lab.text


def test_a_compressed_body_is_held_to_the_limit_once_decoded(server: ServerProcess) -> None:
    """A gzip bomb: 2 MB of spaces travel as 2 kB; the decoded limit is 200 kB."""
    bomb = gzip.compress(b"{" + b" " * 2_000_000 + b"}")
    assert len(bomb) < LIMIT
    r = _post(server, bomb, **{"content-encoding": "gzip"})
    assert r.status_code == 413, r.text
    assert "once decoded" in r.json()["detail"]
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"records": []}', "is not gzip"),  # sent plain, labelled gzip
        (gzip.compress(b'{"records": []}')[:-12], "truncated"),
    ],
)
def test_a_body_that_is_not_what_its_encoding_says_is_a_400_saying_so(
    server: ServerProcess, content: bytes, says: str
) -> None:
    r = _post(server, content, **{"content-encoding": "gzip"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    assert "Content-Encoding gzip" in r.json()["detail"] and says in r.json()["detail"]


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, gzip"])
def test_an_encoding_the_service_cannot_read_is_a_415_naming_it(
    server: ServerProcess, published: Published, coding: str
) -> None:
    r = _post(server, _body(published), **{"content-encoding": coding})
    assert r.status_code == 415, r.text
    assert coding in r.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/v2/health/ready", "/v2/health/live", "/metrics", "/v1/models", "/v2/models/tiny"]
)
def test_head_answers_as_get_without_a_body(server: ServerProcess, path: str) -> None:
    get = httpx.get(server.url + path)
    head = httpx.head(server.url + path)
    assert get.status_code == 200
    assert head.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # the metrics move between the two requests
        assert head.headers["content-length"] == get.headers["content-length"]


def test_head_of_a_post_only_endpoint_is_405_and_allow_lists_head_beside_get(
    server: ServerProcess,
) -> None:
    r = httpx.head(server.url + "/v1/predict")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    r = httpx.request("PUT", server.url + "/v1/lab-results")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}


def test_head_requests_are_counted_under_their_own_method_and_route(
    server: ServerProcess,
) -> None:
    httpx.head(server.url + "/v2/health/live")
    text = httpx.get(server.url + "/metrics").text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("softsensor_http_requests_total{")
        and 'method="HEAD"' in line
        and 'endpoint="/v2/health/live"' in line
        and 'status="200"' in line
    ]
    assert counted, "no HEAD request answered and counted for /v2/health/live"


def _problems(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 422, r.text
    assert "function-" not in r.text and "constrained-" not in r.text, r.text
    detail: list[dict[str, str]] = r.json()["detail"]
    return detail


@pytest.mark.parametrize(
    ("record", "field", "says"),
    [
        ({"values": {"a": True, "b": 1.0, "q": 1.0}}, "records.0.values.a", "expected a number"),
        ({"values": {"a": [1.0], "b": 1.0, "q": 1.0}}, "records.0.values.a", "digital state"),
        (
            {"values": {"a": {"Value": 246}, "b": 1.0, "q": 1.0}},
            "records.0.values.a",
            "must be a digital state with its 'Name'",
        ),
        (
            {"values": {"a": 1.0, "b": 1.0, "q": 1.0}, "quality": {"a": {"Code": 2**32}}},
            "records.0.quality.a",
            "Code must be an OPC UA status code",
        ),
        (
            {"values": {"a": 1.0, "b": 1.0, "q": 1.0}, "quality": {"a": [192]}},
            "records.0.quality.a",
            "OPC UA status code",
        ),
        (
            {"timestamp": [1], "values": {"a": 1.0, "b": 1.0, "q": 1.0}},
            "records.0.timestamp",
            "POSIX seconds",
        ),
    ],
)
def test_a_value_of_no_accepted_form_is_one_problem_naming_its_field(
    server: ServerProcess, record: dict[str, object], field: str, says: str
) -> None:
    """Not one line per form pydantic tried, under locations made of its internals."""
    problems = _problems(_post(server, json.dumps({"records": [record]}).encode()))
    assert [p["field"] for p in problems] == [field], problems
    assert says in problems[0]["reason"], problems


def test_a_column_of_bad_values_lists_its_first_problems_and_counts_the_rest(
    server: ServerProcess,
) -> None:
    n = 5000
    body = {"columns": {"a": [True] * n, "b": [1.0] * n, "q": [1.0] * n}}
    r = _post(server, json.dumps(body).encode())
    problems = _problems(r)
    assert len(r.content) < 10_000, len(r.content)
    assert [p["field"] for p in problems[:3]] == ["columns.a.0", "columns.a.1", "columns.a.2"]
    assert problems[-1] == {"field": "body", "reason": f"and {n - 20} more problems, not listed"}


def _big_columns(n: int = 1500) -> bytes:
    """A batch over 64 kB (the size scored and written in a worker thread)."""
    rng = np.random.default_rng(1)
    cols = {s: rng.normal(size=n).round(6).tolist() for s in ("a", "b", "q")}
    stamps = [1767225600.0 + 60.0 * i for i in range(n)]
    body = json.dumps({"timestamp": stamps, "columns": cols}).encode()
    assert 64 * 1024 < len(body) < LIMIT
    return body


def test_a_large_answer_goes_gzipped_to_a_client_that_takes_it(server: ServerProcess) -> None:
    """With SOFTSENSOR_GZIP_ANSWERS (the server above); off, as by default: see the next."""
    body = _big_columns()
    plain = _post(server, body, **{"accept-encoding": "identity"})
    assert plain.status_code == 200, plain.text
    assert "content-encoding" not in plain.headers
    packed = _post(server, body, **{"accept-encoding": "br;q=1.0, gzip;q=0.8"})
    assert packed.status_code == 200, packed.text
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(plain.content) / 2
    assert packed.json()["estimate"] == plain.json()["estimate"]  # httpx decoded it
    refused = _post(server, body, **{"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_a_one_row_answer_is_not_compressed(server: ServerProcess, published: Published) -> None:
    r = _post(server, _body(published, 3), **{"accept-encoding": "gzip"})
    assert r.status_code == 200 and "content-encoding" not in r.headers


def test_answers_are_not_compressed_by_default(published: Published, tmp_path: Path) -> None:
    with serving(published.root, tmp_path) as proc:
        r = httpx.post(
            proc.url + "/v1/predict",
            content=_big_columns(),
            headers={"content-type": "application/json", "accept-encoding": "gzip"},
        )
    assert r.status_code == 200 and "content-encoding" not in r.headers
