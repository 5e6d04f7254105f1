"""A request's body, read from its ASGI messages.

Starlette's ``Request.body()`` reads through an async generator and caches the result on the
request; the predict and inference routes read their body once, and this direct loop costs
a third of that on the one-row requests a historian sends (measured: 1.7 against 4.8 us).
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request


async def read_body(request: Request) -> bytes:
    """The whole body; ``ClientDisconnect`` if the client went away before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
