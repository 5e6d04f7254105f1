"""The Open Inference Protocol driven by its real client: ``tritonclient[http]`` against a real
`softsensor serve` process on loopback, and the content-type rules every JSON endpoint shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.contracts.registry import Registry
from tests.service.conftest import Published, ServerProcess, expected_estimates, start_server

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] not installed")


@pytest.fixture
def server(published: Published, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(published.root, tmp_path / "state", tmp_path / "server.log")
    try:
        proc.wait_until("/v2/health/ready")
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_tritonclient_reads_metadata_and_infers(
    server: ServerProcess, published: Published, compression: str | None
) -> None:
    """Triton's own HTTP client sends no Content-Type: it must still get its estimates, equal
    to what the exported model gives on the rows training assembled; also with the body
    compressed, as the client does when asked (``request_compression_algorithm``), and
    asking for a compressed answer, which it reads uncompressed as well."""
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("tiny")
        meta = client.get_model_metadata("tiny")
        (inp,) = meta["inputs"]
        (out,) = meta["outputs"]
        ds = published.dataset
        card = Registry(published.root).verify("tiny", published.version)
        cols = [ds.feature_names.index(f.name) for f in card.features]
        x = ds.test.x[:5, cols].astype(np.float32)
        tensor = httpclient.InferInput(inp["name"], list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=False)
        wanted = httpclient.InferRequestedOutput(out["name"], binary_data=False)
        result = client.infer(
            "tiny",
            [tensor],
            outputs=[wanted],
            request_id="7",
            request_compression_algorithm=compression,
            response_compression_algorithm=compression,
        )
    finally:
        client.close()
    estimate = result.as_numpy(out["name"])
    assert estimate is not None and estimate.shape == (5, 1)
    expected = expected_estimates(published)
    want = [expected[int(t)] for t in ds.test.index[:5]]
    assert estimate.ravel().tolist() == pytest.approx(want, abs=1e-5)
    assert result.get_response()["id"] == "7"


@pytest.mark.parametrize(
    "path", ["/v1/predict", "/v1/lab-results", "/v2/models/tiny/infer", "/v1/models/tiny/reload"]
)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_json_endpoint_refuses_other_content_types_with_415(
    server: ServerProcess, path: str, content_type: str
) -> None:
    """A cross-site form can post text/plain or a form without a CORS preflight: such a body
    is refused before it is read, on the fast path and the framework's alike."""
    body = '{"records": [{"values": {"a": 1, "b": 2, "q": 3}}]}'
    r = httpx.post(server.url + path, content=body, headers={"content-type": content_type})
    assert r.status_code == 415, r.text
    assert r.json()["error"] == "unsupported_media_type"
    assert "application/json" in r.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON"],
)
def test_json_or_no_content_type_is_read_as_json(
    server: ServerProcess, content_type: str | None
) -> None:
    body = b'{"records": [{"values": {"a": 1, "b": 2, "q": 3}}]}'
    headers = {} if content_type is None else {"content-type": content_type}
    for path in ("/v1/predict", "/v1/lab-results"):
        request = httpx.Request("POST", server.url + path, content=body, headers=headers)
        request.headers.pop("content-type", None) if content_type is None else None
        with httpx.Client() as c:
            r = c.send(request)
        # lab-results wants "results": a 422 about the body proves it was parsed as JSON
        assert r.status_code == (200 if path == "/v1/predict" else 422), r.text
