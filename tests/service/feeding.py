"""Rows sent the way a historian sends them: one request per row on a stream."""

from __future__ import annotations

from typing import Any


def feed(client: Any, stream: str, records: list[dict[str, Any]]) -> list[float]:
    """Row by row on ``stream``; the estimates served."""
    out = []
    for rec in records:
        r = client.post("/v1/predict", json={"stream": stream, "records": [rec]})
        assert r.status_code == 200, r.text
        out.append(r.json()["rows"][0]["estimate"])
    return out
