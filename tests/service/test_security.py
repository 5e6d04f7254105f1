"""Security promises not covered in test_app.py: every admin endpoint guarded, the token
compared in constant time and never logged, no CORS unless configured."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.service.conftest import Published, make_settings

TOKEN = "adm-5b0c9e7d41f2-token"
ADMIN = [
    ("/v1/models/tiny/reload", None),
    ("/v1/models/tiny/promote", {"version": "v1"}),
    ("/v1/models/tiny/rollback", None),
]


@pytest.mark.parametrize(("path", "body"), ADMIN)
def test_every_admin_endpoint_is_off_without_a_token_and_guarded_with_one(
    registry_copy: Path, tmp_path: Path, path: str, body: dict[str, str] | None
) -> None:
    """No token configured: 403 even with a bearer; configured: 401 without the right one."""
    with TestClient(create_app(make_settings(registry_copy, tmp_path / "off"))) as c:
        r = c.post(path, json=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403 and "disabled" in r.json()["detail"]
    settings = make_settings(registry_copy, tmp_path / "on", admin_token=TOKEN)
    with TestClient(create_app(settings)) as c:
        for headers in ({}, {"authorization": TOKEN}, {"authorization": f"Basic {TOKEN}"}):
            assert c.post(path, json=body, headers=headers).status_code == 401
        r = c.post(path, json=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code != 401 and r.status_code != 403


def test_token_is_compared_in_constant_time_and_never_logged(
    published: Published,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The guard calls hmac.compare_digest on every attempt (a spy around the real one), and
    no log record of any logger at any level, nor /metrics, holds the token."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # service.api.app calls hmac.compare_digest
    settings = make_settings(published.root, tmp_path, admin_token=TOKEN)
    with caplog.at_level(logging.DEBUG), TestClient(create_app(settings)) as c:
        for given in ("wrong", TOKEN[:-1], TOKEN + "x", TOKEN):
            c.post("/v1/models/tiny/reload", headers={"authorization": f"Bearer {given}"})
        metrics = c.get("/metrics").text
        assert "softsensor_http_requests_total" in metrics
    assert len(calls) == 4 and calls[-1] == (TOKEN.encode(), TOKEN.encode())
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert TOKEN not in caplog.text and TOKEN not in metrics
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


@pytest.mark.parametrize("method", ["OPTIONS", "GET"])
def test_no_cors_by_default(client: TestClient, method: str) -> None:
    """No Access-Control-* header on a preflight or a simple cross-origin request."""
    headers = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    r = client.request(method, "/v1/models", headers=headers)
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]


def test_cors_only_for_listed_origins(published: Published, tmp_path: Path) -> None:
    """SOFTSENSOR_CORS_ORIGINS opens exactly the origins listed."""
    settings = make_settings(published.root, tmp_path, cors_origins=["https://hmi.plant"])
    with TestClient(create_app(settings)) as c:
        ok = c.get("/v1/models", headers={"origin": "https://hmi.plant"})
        assert ok.headers["access-control-allow-origin"] == "https://hmi.plant"
        other = c.get("/v1/models", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_admin_errors_name_the_version_not_the_servers_paths(
    registry_copy: Path, tmp_path: Path
) -> None:
    """Registry failures answer with the model, version and reason: no absolute path of the
    server's disk in the body (the log keeps the full path for the operator)."""
    settings = make_settings(registry_copy, tmp_path, admin_token=TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings)) as c:
        answers = [
            c.post("/v1/models/tiny/promote", json={"version": "v9"}, headers=auth),
            c.post("/v1/models/tiny/rollback", headers=auth),
        ]
    for r in answers:
        assert 400 <= r.status_code < 500, r.text
        assert str(registry_copy) not in r.text and str(tmp_path) not in r.text, r.text
        assert r.json()["detail"], r.text
    assert "v9" in answers[0].json()["detail"]


def test_anonymous_model_list_does_not_reveal_the_training_file_path(
    published: Published, client: TestClient
) -> None:
    card = client.get("/v1/models").json()[0]["card"]
    assert str(published.data.parent) not in str(card), card["data"]
    assert card["data"]["source"] == published.data.name  # the file's name is still there


@pytest.mark.parametrize("where", ["records", "columns"])
def test_an_unknown_signal_name_is_not_echoed_whole(client: TestClient, where: str) -> None:
    """A 1 MB signal name gets a short 422 that still says which field is wrong."""
    name = "x" * 1_000_000
    values = {"a": 1.0, "b": 2.0, "q": 3.0, name: 1.0}
    if where == "records":
        body: dict[str, object] = {"records": [{"values": values}]}
    else:
        body = {"columns": {k: [v] for k, v in values.items()}}
    r = client.post("/v1/predict", json=body)
    assert r.status_code == 422
    assert len(r.content) < 2_000, len(r.content)
    assert "unknown signals" in r.text and "xxxx" in r.text


def test_401_names_its_scheme_and_405_lists_the_allowed_methods(
    registry_copy: Path, tmp_path: Path
) -> None:
    """RFC 9110: a 401 carries WWW-Authenticate, a 405 carries Allow."""
    settings = make_settings(registry_copy, tmp_path, admin_token=TOKEN)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/models/tiny/reload")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        for method, path, allowed in (
            ("DELETE", "/v1/predict", {"POST"}),
            ("PUT", "/v1/lab-results", {"GET", "HEAD", "POST"}),
            ("TRACE", "/v2/models/tiny/infer", {"POST"}),
        ):
            r = c.request(method, path)
            assert r.status_code == 405, (method, path, r.text)
            assert {m.strip() for m in r.headers["allow"].split(",")} == allowed, r.headers
