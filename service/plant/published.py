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
from service.scoring.answers import served_columns
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
    """The answer's last row, from a records or a columns answer; None without rows."""
    last = served_columns(answer, -1)
    if not last["estimate"]:
        return None
    return PublishedRow(
        str(answer["model"]),
        str(answer["stream"]),
        time=_time_of(last["timestamp"][0]),
        estimate=_number(last["estimate"][0]),
        corrected=_number(last["estimate_corrected"][0]),
        low=_number(last["interval_low"][0]),
        high=_number(last["interval_high"][0]),
        status=Quality[str(last["status"][0]).upper()],
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
