"""The API documentation pages work on a plant network without internet: every script and
style they load is served by the service itself, and a real browser renders them."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import Published, ServerProcess, start_server

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_host(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assets = ASSET.findall(r.text)
    assert assets, r.text
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from another host"
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 1000, url
    assert "http://" not in r.text and "https://" not in r.text, r.text


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on this machine (make test installs Debian's chromium as root)")


@pytest.fixture
def server(published: Published, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(published.root, tmp_path / "state", tmp_path / "server.log")
    try:
        proc.wait_until("/v2/health/ready")
        yield proc
    finally:
        proc.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("page", "rendered"), [("/docs", "opblock"), ("/redoc", "operation")])
def test_a_browser_renders_the_docs_with_no_network_but_the_service(
    server: ServerProcess, page: str, rendered: str
) -> None:
    """Headless Chromium with every host but the service's unreachable (a proxy that does
    not exist) renders the page: the predict operation appears in the DOM."""
    browser = _chromium()
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--proxy-server=http://127.0.0.1:9",  # nothing listens: no other host answers
                "--proxy-bypass-list=127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
                server.url + page,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    dom = out.stdout
    why = (out.returncode, dom[-2000:], out.stderr[-2000:])
    assert "/v1/predict" in dom and rendered in dom, why
