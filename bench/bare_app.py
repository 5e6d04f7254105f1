"""The floor of ``bench.service``: an ASGI app that does nothing but read the body and send a
fixed answer, served by the same uvicorn. What it costs per request is the HTTP server's own
work (parsing, the ASGI cycle, the socket writes), which every app on that server pays; the
reference app's rate over the floor's is the most any app there could gain on the reference.

    uvicorn --lifespan off bench.bare_app:app
"""

from __future__ import annotations

from typing import Any

ANSWER = b'{"y":[0.0]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # served with --lifespan off: nothing else arrives
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
