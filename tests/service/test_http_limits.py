"""HTTP limits of a real `softsensor serve` process, met by raw sockets the way a broken or
hostile client behaves: oversized headers, headers or a body that never finish, a connection
that sends nothing, an idle keep-alive connection."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.conftest import Published, ServerProcess, start_server

LIMITS = {
    "SOFTSENSOR_MAX_HEADER_BYTES": "16384",
    "SOFTSENSOR_HEADER_TIMEOUT_S": "1",
    "SOFTSENSOR_BODY_TIMEOUT_S": "1",
    "SOFTSENSOR_KEEP_ALIVE_S": "1",
}


@pytest.fixture
def server(published: Published, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(published.root, tmp_path / "state", tmp_path / "server.log", LIMITS)
    try:
        proc.wait_until("/v2/health/ready")
        yield proc
    finally:
        proc.stop()


def _connect(server: ServerProcess) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took;
    fails if it is still open after ``within`` seconds."""
    sock.settimeout(within)
    started = time.monotonic()
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pytest.fail(f"connection still open after {within} s; got {got[:200]!r}")
    except ConnectionResetError:
        pass
    return got, time.monotonic() - started


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_oversized_headers_are_refused_with_431_and_memory_stays_flat(
    server: ServerProcess,
) -> None:
    """Four sockets each try to send 32 MiB of one header: each is answered 431 and closed
    after about the limit, and the server's RSS barely moves (it grew by 550 MiB before)."""
    before = _rss_kib(server.proc.pid)
    chunk = b"a" * 65536
    answers = []
    for _ in range(4):
        sock = _connect(server)
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nhost: x\r\nx-flood: ")
        sent = 0
        try:
            while sent < 32 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, _ = _read_until_closed(sock, within=10)
        answers.append((sent, got))
        sock.close()
    for sent, got in answers:
        assert got.startswith(b"HTTP/1.1 431"), got[:200]
        assert sent < 32 << 20, "the server read all of it"
    assert _rss_kib(server.proc.pid) - before < 20 << 10  # < 20 MiB
    assert server.proc.poll() is None


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, nothing sent
        b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n",  # headers never finished
        b"POST /v1/lab-results HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b'content-length: 100\r\n\r\n{"results": ',  # body cut short
    ],
    ids=["silent", "partial-headers", "short-body"],
)
def test_a_request_that_never_finishes_is_closed_after_its_timeout(
    server: ServerProcess, sent: bytes
) -> None:
    sock = _connect(server)
    sock.sendall(sent)
    got, seconds = _read_until_closed(sock, within=8)
    sock.close()
    assert 0.5 < seconds < 5, seconds
    if sent:
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
    # and the server still answers everyone else
    server.wait_until("/v2/health/ready", timeout=5)


def test_a_slow_but_steady_body_is_not_cut_off(server: ServerProcess) -> None:
    """The body timeout is a pause limit, not a deadline: a body sent in pieces 0.5 s apart
    for 2.5 s (longer than the 1 s limit) is read whole and answered."""
    body = b'{"results": [{"sample_time": 1767225600.0, "value": 1.0}]}'
    sock = _connect(server)
    head = (
        b"POST /v1/lab-results HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    sock.sendall(head)
    for i in range(0, len(body), 12):
        time.sleep(0.5)
        sock.sendall(body[i : i + 12])
    got, _ = _read_until_closed(sock, within=8)
    sock.close()
    assert got.startswith(b"HTTP/1.1 200"), got[:300]


def test_an_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
    got, seconds = _read_until_closed(sock, within=8)
    sock.close()
    assert got.startswith(b"HTTP/1.1 200") and seconds < 5, (got[:100], seconds)


def _responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` whole responses (head, body) read off a keep-alive connection."""
    sock.settimeout(10)
    buffer = b""
    out: list[tuple[bytes, bytes]] = []
    while len(out) < count:
        if b"\r\n\r\n" not in buffer:
            buffer += sock.recv(65536)
            continue
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            rest += sock.recv(65536)
        out.append((head, rest[:length]))
        buffer = rest[length:]
    return out


def test_answers_whole_on_one_connection_heads_pipelines_and_continues(
    server: ServerProcess, published: Published
) -> None:
    """Each response head goes out with its body in one write: a HEAD (no body write), two
    pipelined requests, a refusal and a 100-continue upload each still get their whole,
    ordered answers on one keep-alive connection."""
    import json

    from tests.service.conftest import tiny_records

    body = json.dumps({"records": tiny_records(published.data, 0, 1)}).encode()
    post = (
        b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    with _connect(server) as sock:
        sock.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        sock.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 ") and head.endswith(b"\r\n\r\n"), head
        sock.sendall(post + b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")  # pipelined
        (h1, b1), (h2, _) = _responses(sock, 2)
        assert h1.startswith(b"HTTP/1.1 200") and json.loads(b1)["rows"][0]["estimate"] > -1e9
        assert h2.startswith(b"HTTP/1.1 200")
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\n"
            b"content-length: 2\r\n\r\nhi"
        )
        ((h3, b3),) = _responses(sock, 1)
        assert h3.startswith(b"HTTP/1.1 415") and b"application/json" in b3
        sock.sendall(
            post.replace(b"\r\n\r\n", b"\r\nexpect: 100-continue\r\n\r\n", 1)[
                : post.index(b"\r\n\r\n") + len(b"\r\nexpect: 100-continue\r\n\r\n")
            ]
        )
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        ((h4, b4),) = _responses(sock, 1)
        assert h4.startswith(b"HTTP/1.1 200") and b"estimate" in b4
