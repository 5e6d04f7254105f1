"""The estimates as OPC UA variables: what `softsensor serve --opcua ENDPOINT` exposes.

Per model and stream, an object ``SoftSensor/<model>/<stream>`` holds ``Estimate``,
``EstimateCorrected``, ``IntervalLow``, ``IntervalHigh`` (Double) and ``Status`` (String:
good, uncertain, bad). Each numeric value carries the row's status as its OPC UA status code
and the row's data time as its source timestamp, so an OPC UA client (a DCS, a historian's
OPC UA collector) stores the estimate with its quality. NodeIds are stable strings,
``ns=<softsensor namespace>;s=<model>.<stream>.Estimate``, so a client can be configured
once.

A stream whose estimates stop arriving (its historian or bridge is gone) turns
``BadNoCommunication`` after ``stale_after_s``: a DCS must not go on using the last number.

The server runs on the service's event loop; predict hands it rows through ``publish``,
which never waits (a queue drained by the server's own task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from asyncua import Node, Server, ua

from service.plant.published import PublishedRow

__all__ = ["BAD_NO_COMMUNICATION", "NAMESPACE", "EstimateServer", "PublishedRow", "node_id"]
log = logging.getLogger("softsensor.opcua")
NAMESPACE = "urn:softsensor:estimates"
VALUES = ("Estimate", "EstimateCorrected", "IntervalLow", "IntervalHigh")
BAD_NO_COMMUNICATION = 0x80310000


@dataclass
class _StreamNodes:
    values: dict[str, Node]
    status: Node
    last_seen: float  # monotonic, when its last row arrived
    stale: bool = False


def node_id(index: int, model: str, stream: str, name: str) -> ua.NodeId:
    return ua.NodeId(f"{model}.{stream}.{name}", index)


class EstimateServer:
    """An asyncua server holding the latest estimate of every (model, stream)."""

    def __init__(self, endpoint: str, stale_after_s: float = 30.0, queue_size: int = 10_000):
        self.endpoint = endpoint
        self.stale_after_s = stale_after_s
        self._queue: asyncio.Queue[PublishedRow] = asyncio.Queue(maxsize=queue_size)
        self._server = Server()
        self._streams: dict[tuple[str, str], _StreamNodes] = {}
        self._models: dict[str, Node] = {}
        self._root: Node | None = None
        self._index = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def namespace_index(self) -> int:
        return self._index

    async def start(self) -> None:
        await self._server.init()
        self._server.set_endpoint(self.endpoint)
        self._server.set_server_name("Column soft sensor")
        self._server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self._index = await self._server.register_namespace(NAMESPACE)
        self._root = await self._server.nodes.objects.add_object(self._index, "SoftSensor")
        await self._server.start()
        self._tasks = [asyncio.create_task(self._drain()), asyncio.create_task(self._watch())]
        log.info("OPC UA server on %s (namespace %s = %d)", self.endpoint, NAMESPACE, self._index)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.stop()

    def publish(self, rows: Iterable[PublishedRow]) -> None:
        """Hand over answered rows; the latest of a stream wins. Never blocks: when the
        queue is full (the server cannot keep up), the row is dropped and logged."""
        for row in rows:
            try:
                self._queue.put_nowait(row)
            except asyncio.QueueFull:
                log.warning("OPC UA queue full: row of %s/%s dropped", row.model, row.stream)

    async def _drain(self) -> None:
        while True:
            row = await self._queue.get()
            try:
                await self._write(row)
            except Exception:  # a bad row must not stop the server's updates
                log.exception("OPC UA update of %s/%s failed", row.model, row.stream)

    async def _nodes(self, model: str, stream: str) -> _StreamNodes:
        key = (model, stream)
        if key in self._streams:
            return self._streams[key]
        assert self._root is not None, "start() first"
        parent = self._models.get(model)
        if parent is None:
            parent = await self._root.add_object(ua.NodeId(model, self._index), model)
            self._models[model] = parent
        obj = await parent.add_object(ua.NodeId(f"{model}.{stream}", self._index), stream)
        values = {
            name: await obj.add_variable(
                node_id(self._index, model, stream, name),
                name,
                ua.Variant(0.0, ua.VariantType.Double),
            )
            for name in VALUES
        }
        status = await obj.add_variable(
            node_id(self._index, model, stream, "Status"), "Status", "bad"
        )
        nodes = _StreamNodes(values, status, time.monotonic())
        self._streams[key] = nodes
        return nodes

    async def _write(self, row: PublishedRow) -> None:
        nodes = await self._nodes(row.model, row.stream)
        nodes.last_seen, nodes.stale = time.monotonic(), False
        code = ua.StatusCode(row.status.status_code)
        numbers = (row.estimate, row.corrected, row.low, row.high)
        for name, value in zip(VALUES, numbers, strict=True):
            await nodes.values[name].write_value(
                ua.DataValue(
                    ua.Variant(float(value), ua.VariantType.Double),
                    StatusCode=code,
                    SourceTimestamp=row.time,
                    ServerTimestamp=datetime.now(UTC),
                )
            )
        await nodes.status.write_value(
            ua.DataValue(
                ua.Variant(row.status.word, ua.VariantType.String), SourceTimestamp=row.time
            )
        )

    async def _watch(self) -> None:
        """Streams silent for ``stale_after_s`` go BadNoCommunication (once, until a row)."""
        period = max(0.2, self.stale_after_s / 10)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for nodes in self._streams.values():
                if nodes.stale or now - nodes.last_seen < self.stale_after_s:
                    continue
                nodes.stale = True
                bad = ua.StatusCode(BAD_NO_COMMUNICATION)
                for node in nodes.values.values():
                    await node.write_value(
                        ua.DataValue(StatusCode=bad, ServerTimestamp=datetime.now(UTC))
                    )
                await nodes.status.write_value(
                    ua.DataValue(ua.Variant("bad", ua.VariantType.String))
                )
