"""Compressed bodies: a request's ``Content-Encoding: gzip`` (or ``deflate``) read as the
JSON it holds, and a large answer sent gzipped to a client that accepts it.

A historian's bridge that sends a day's backfill over a slow link from an edge box
compresses it (Telegraf, Fluent Bit and most HTTP client libraries can), and the body limit
must hold for what the body becomes, not for what travels: a megabyte of gzip can
inflate to a gigabyte. So the body is decoded as it arrives, chunk by chunk, never beyond the
limit; a body that is not what its header says gets a 400 that says so, and an encoding the
service cannot read (br, zstd, compress) a 415 naming it, instead of "Invalid JSON".

With ``gzip_answers`` set, the answers to large batches (a backfill: megabytes of JSON) go
back gzipped when the request says ``Accept-Encoding: gzip``, compressed in the worker thread
that scored them; the one-row answers of the hot path are too small to gain and are sent as
they are. It is off by default: on loopback, 100,000-row answers went from 196,000 to 137,000
rows/s (``bench.service``), and most HTTP libraries accept gzip without being asked to.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

from service.api.errors import error_body
from service.api.middleware import WITH_BODY
from service.api.types import ASGIApp, Message, Receive, Scope, Send
from service.contracts.errors import (
    PayloadTooLargeError,
    UnreadableBodyError,
    UnsupportedMediaTypeError,
)

# zlib's window bits per coding: 31 the gzip wrapper, 15 the zlib one (HTTP's "deflate")
WBITS = {b"gzip": 31, b"x-gzip": 31, b"deflate": 15}
BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark
DROPPED = frozenset((b"content-encoding", b"content-length"))  # they describe the wire form
COMPRESS_ABOVE = 64 * 1024  # answers larger than this go gzipped to a client that takes it
GZIP_LEVEL = 1  # JSON numbers shrink about 4x at the fastest level already


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (RFC 9110 12.5.3: by name or ``*``,
    with a quality above 0)."""
    for item in accept_encoding.lower().split(","):
        name, _, params = item.partition(";")
        if name.strip() not in ("gzip", "x-gzip", "*"):
            continue
        quality = params.strip().removeprefix("q=")
        try:
            if not params.strip() or float(quality) > 0:
                return True
        except ValueError:
            continue
    return False


def compressed(content: bytes, gzip_ok: bool) -> tuple[bytes, dict[str, str]]:
    """An answer's bytes and the headers they need: gzipped when the client takes it and
    it is large enough to gain."""
    if not gzip_ok or len(content) <= COMPRESS_ABOVE:
        return content, {}
    packed = gzip.compress(content, compresslevel=GZIP_LEVEL, mtime=0)
    return packed, {"content-encoding": "gzip", "vary": "accept-encoding"}


class _Decoder:
    """One body's decoding: gzip members one after another (RFC 1952 allows several), never
    more output than ``limit`` bytes."""

    def __init__(self, coding: bytes, limit: int) -> None:
        self.coding = coding.decode("latin-1")
        self.wbits = WBITS[coding]
        self.limit = limit
        self.produced = 0
        self.member = zlib.decompressobj(self.wbits)

    def feed(self, data: bytes, last: bool) -> bytes:
        out: list[bytes] = []
        try:
            while data:
                room = self.limit + 1 - self.produced
                chunk = self.member.decompress(data, room)
                self._count(chunk, out)
                if self.member.unconsumed_tail:  # more output than the room left
                    self._too_large()
                data = b""
                if self.member.eof:  # the next gzip member, if any, starts here
                    data = self.member.unused_data
                    if data:
                        self.member = zlib.decompressobj(self.wbits)
            if last:
                self._count(self.member.flush(), out)
                if not self.member.eof:
                    raise UnreadableBodyError(
                        f"body: Content-Encoding {self.coding}, but the data ends before the "
                        "compressed stream does (truncated)"
                    )
        except zlib.error as exc:
            raise UnreadableBodyError(
                f"body: Content-Encoding {self.coding}, but the data is not {self.coding} ({exc})"
            ) from exc
        return b"".join(out)

    def _count(self, chunk: bytes, out: list[bytes]) -> None:
        self.produced += len(chunk)
        if self.produced > self.limit:
            self._too_large()
        out.append(chunk)

    def _too_large(self) -> None:
        raise PayloadTooLargeError(
            f"body exceeds {self.limit} bytes once decoded (Content-Encoding {self.coding})"
        )


class ContentEncoding:
    """Bodies sent with ``Content-Encoding`` gzip, x-gzip or deflate reach the routes
    decoded, within ``limit`` bytes decoded; identity passes as it is; others get 415.
    Either way a UTF-8 byte-order mark in front of the body is dropped."""

    def __init__(self, app: ASGIApp, limit: int, roots: Sequence[Path] = ()) -> None:
        self.app = app
        self.limit = limit
        self.roots = roots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WITH_BODY:
            await self.app(scope, receive, send)
            return
        codings = [
            c.strip().lower()
            for name, value in scope["headers"]
            if name == b"content-encoding"
            for c in value.split(b",")
        ]
        codings = [c for c in codings if c and c != b"identity"]
        if not codings:
            await self.app(scope, without_bom(receive), send)
            return
        if len(codings) > 1 or codings[0] not in WBITS:
            shown = b", ".join(codings).decode("latin-1")[:80]
            exc = UnsupportedMediaTypeError(
                f"content-encoding {shown!r} is not accepted: send the body as it is, or "
                "compressed once with gzip or deflate"
            )
            await error_body(exc, self.roots).send(scope, receive, send)
            return
        decoder = _Decoder(codings[0], self.limit)
        scope["headers"] = [(n, v) for n, v in scope["headers"] if n not in DROPPED]

        async def receive_decoded() -> Message:
            message = await receive()
            if message["type"] != "http.request":
                return message
            last = not message.get("more_body", False)
            body = decoder.feed(message.get("body", b""), last)
            return {**message, "body": body}

        await self.app(scope, without_bom(receive_decoded), send)


def without_bom(receive: Receive) -> Receive:
    """The body without a UTF-8 byte-order mark in front. RFC 8259 (8.1) lets a parser
    ignore one, and clients on Windows send it (PowerShell 5 and .NET writers of UTF-8);
    pydantic's parser would call the body invalid JSON at its first byte."""
    held = b""
    checked = False

    async def receive_json() -> Message:
        nonlocal held, checked
        message = await receive()
        if checked or message["type"] != "http.request":
            return message
        body = held + message.get("body", b"")
        if len(body) < len(BOM) and BOM.startswith(body) and message.get("more_body", False):
            held = body  # a mark split over chunks: wait for the rest of it
            return {**message, "body": b""}
        checked = True
        if not held and not body.startswith(BOM):  # the usual body: passed as it came
            return message
        return {**message, "body": body.removeprefix(BOM)}

    return receive_json
