"""What a predict answer hands to the OPC UA server: the latest row of its (model, stream).

Kept apart from ``service.plant.opcua_server`` so that the predict route imports no asyncua:
the service without ``--opcua`` never loads it. An OPC UA variable holds a current value, so
an answer publishes its last row (a batch is a backfill; what the variable shows is the
newest estimate, and a subscribed client sees each answer's newest one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from service.plant.quality import Quality
from service.state.clock import to_posix


@dataclass(frozen=True)
class PublishedRow:
    """The latest answered row of one stream."""

    model: str
    stream: str
    time: datetime
    estimate: float
    corrected: float
    low: float
    high: float
    status: Quality


class Publisher(Protocol):
    """Takes rows without waiting (the OPC UA server's queue)."""

    def publish(self, rows: list[PublishedRow]) -> None: ...


def _time_of(stamp: Any) -> datetime:
    """The row's data time as the request gave it (a datetime, ISO text or POSIX seconds);
    none given: now."""
    if stamp is None:
        return datetime.now(UTC)
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp)
    return datetime.fromtimestamp(to_posix(stamp), UTC)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def latest_row(answer: dict[str, Any]) -> PublishedRow | None:
    """The answer's last row, from a records answer (``rows``) or a columns answer (one list
    per field); None for an answer without rows."""
    head = (str(answer["model"]), str(answer["stream"]))
    rows = answer.get("rows")
    if rows is not None:
        if not rows:
            return None
        r = rows[-1]
        stamp, est, cor = r["timestamp"], r["estimate"], r["estimate_corrected"]
        low, high = r["interval"]
        word = r["status"]
    else:
        n = len(answer["estimate"])
        if n == 0:
            return None
        stamps = answer.get("timestamp")
        stamp = None if stamps is None else stamps[n - 1]
        est, cor = answer["estimate"][n - 1], answer["estimate_corrected"][n - 1]
        low, high = answer["interval_low"][n - 1], answer["interval_high"][n - 1]
        word = answer["status"][n - 1]
    return PublishedRow(
        *head,
        time=_time_of(stamp),
        estimate=_number(est),
        corrected=_number(cor),
        low=_number(low),
        high=_number(high),
        status=Quality[str(word).upper()],
    )


def publish_answer(publisher: Publisher | None, answer: dict[str, Any]) -> None:
    """Hand the answer's latest row over, if an OPC UA server runs; never raises: a failure
    to publish must not fail the prediction the client asked for."""
    if publisher is None:
        return
    try:
        row = latest_row(answer)
    except (KeyError, IndexError, TypeError, ValueError):
        return
    if row is not None:
        publisher.publish([row])
