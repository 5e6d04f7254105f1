"""The plant bridge: `softsensor connect --opcua ENDPOINT --tags TAGMAP`.

It subscribes to the input nodes the tag map names on the plant's OPC UA server, and when any
of them changes, sends one row (every input's latest value with its OPC UA status code) to
the service's ``/v1/predict`` for the tag map's stream, at most once per ``period_s``; with
no change for ``resend_s`` it sends the latest values again (OPC UA reports changes only, and
a steady plant must not look like a silent one to the service's stale timer). The answer's
estimate, corrected estimate and interval bounds are written back to the tag map's output
nodes, with the row's status as their status code and the row's time as source timestamp.

When the plant server goes away (a closed connection is seen at once; a silent one by the
client's watchdog within ``watchdog_s`` plus its probe), the bridge goes on sending rows every
``period_s`` with every input ``BadNoCommunication``, so the estimate the service publishes
turns bad rather than freezing at its last good value, and reconnects with a growing pause
(1 s to 10 s); once back, it subscribes again and carries on. Nothing ends the loop but ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from asyncua import Client, ua

from service.plant.tagmap import TagMap, TagMapError

log = logging.getLogger("softsensor.bridge")
BAD_NO_COMMUNICATION = 0x80310000


def _node_id(text: str) -> str:
    """The NodeId in the spelling asyncua gives back; one it cannot read is the map's error."""
    try:
        return str(ua.NodeId.from_string(text).to_string())
    except (ua.UaStringParsingError, ValueError) as exc:
        raise TagMapError(f"tag map: {text!r} is not an OPC UA NodeId (like ns=2;s=TI103)") from exc


@dataclass
class Reading:
    value: float | None
    status_code: int


class Bridge:
    """Plant OPC UA server -> service -> plant OPC UA server, for one stream of one model."""

    def __init__(
        self,
        endpoint: str,
        tags: TagMap,
        service_url: str,
        *,
        model: str | None = None,
        period_s: float = 1.0,
        resend_s: float = 5.0,
        watchdog_s: float = 2.0,
        token: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.tags = tags
        self.service_url = service_url.rstrip("/")
        self.model = model or tags.model
        self.period_s = period_s
        self.resend_s = max(resend_s, period_s)
        self.watchdog_s = watchdog_s
        self.token = token
        # NodeIds as the server spells them back (``ns=2;s=TI103``), whatever the map's spelling
        self.signals = {_node_id(t.node_id): t.signal for t in tags.inputs if t.node_id}
        for out in tags.outputs:
            if out.node_id is not None:
                _node_id(out.node_id)
        self.latest: dict[str, Reading] = {}
        self.changed = asyncio.Event()
        self.stopping = asyncio.Event()
        self.connected = False
        self.sent = 0  # rows sent, for tests and logs
        self.last_answer: dict[str, Any] | None = None

    # asyncua calls this for every data change of a subscribed node
    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        signal = self.signals.get(node.nodeid.to_string())
        if signal is None:
            return
        status = data.monitored_item.Value.StatusCode
        code = 0 if status is None else int(status.value)
        number = float(value) if isinstance(value, int | float) and code >> 31 == 0 else None
        self.latest[signal] = Reading(number, code)
        self.changed.set()

    def status_change_notification(self, status: Any) -> None:
        """The server ended the subscription (it shuts down): the session loop reconnects."""
        log.warning("plant subscription status changed: %s", status)

    def _row(self) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        values, quality = {}, {}
        for tag in self.tags.inputs:
            reading = self.latest.get(tag.signal)
            if reading is None or not self.connected:
                reading = Reading(None, BAD_NO_COMMUNICATION)
            values[tag.signal] = reading.value
            quality[tag.signal] = reading.status_code
        body: dict[str, Any] = {
            "quality_encoding": "opcua",
            "records": [{"timestamp": now, "values": values, "quality": quality}],
        }
        if self.model:
            body["model"] = self.model
        if self.tags.stream:
            body["stream"] = self.tags.stream
        return body

    async def _send(self, http: httpx.AsyncClient, client: Client | None) -> None:
        headers = {} if self.token is None else {"authorization": f"Bearer {self.token}"}
        try:
            r = await http.post(self.service_url + "/v1/predict", json=self._row(), headers=headers)
        except httpx.HTTPError as exc:
            log.warning("service unreachable: %s", exc)
            return
        self.sent += 1
        if r.status_code != 200:
            log.warning("service answered %d: %s", r.status_code, r.text[:300])
            return
        self.last_answer = r.json()
        if client is not None and self.connected:
            await self._write_back(client, self.last_answer["rows"][-1])

    async def _write_back(self, client: Client, row: dict[str, Any]) -> None:
        code = ua.StatusCode(int(row["status_code"]))
        when = datetime.fromisoformat(str(row["timestamp"]).replace("Z", "+00:00"))
        values = {
            "estimate": row["estimate"],
            "estimate_corrected": row["estimate_corrected"],
            "interval_low": row["interval"][0],
            "interval_high": row["interval"][1],
        }
        for tag in self.tags.outputs:
            if tag.node_id is None:
                continue
            dv = ua.DataValue(
                ua.Variant(float(values[tag.value]), ua.VariantType.Double),
                StatusCode=code,
                SourceTimestamp=when,
            )
            try:
                await client.get_node(tag.node_id).write_value(dv)
            except ua.UaStatusCodeError as exc:  # this node refused it; the others still get theirs
                log.warning("writing %s to %s refused: %s", tag.value, tag.node_id, exc)

    def stop(self) -> None:
        """End ``run`` within a period, the plant session closed properly (cancelling it
        instead would cut the session's close request short)."""
        self.stopping.set()

    async def run(self) -> None:
        """Until ``stop``: connect, subscribe, forward changes; on a lost connection, send
        bad rows and reconnect."""
        pause = 1.0
        async with httpx.AsyncClient(timeout=10) as http:
            while not self.stopping.is_set():
                try:
                    await self._session(http)
                    continue  # returns only once stopping
                except (OSError, TimeoutError, ua.UaError, ConnectionError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                except Exception as exc:  # logged with its traceback; the bridge carries on
                    log.exception("bridge session failed")
                    problem = repr(exc)
                if self.connected:  # a session that worked: the next pause starts short
                    pause = 1.0
                log.warning(
                    "plant server %s: %s; retrying in %.0f s", self.endpoint, problem, pause
                )
                self.connected = False
                self.latest.clear()
                await self._wait_disconnected(http, pause)
                pause = min(10.0, pause * 2)

    async def _wait_disconnected(self, http: httpx.AsyncClient, pause: float) -> None:
        """While the plant is away: a bad row each period, for ``pause`` seconds."""
        loop = asyncio.get_running_loop()
        until = loop.time() + pause
        while loop.time() < until and not self.stopping.is_set():
            await self._send(http, None)
            await asyncio.sleep(min(self.period_s, max(0.0, until - loop.time())))

    async def _session(self, http: httpx.AsyncClient) -> None:
        client = Client(self.endpoint, timeout=5, watchdog_intervall=self.watchdog_s)
        async with client:
            nodes = [client.get_node(t.node_id) for t in self.tags.inputs if t.node_id]
            subscription = await client.create_subscription(self.period_s * 500, self)
            await subscription.subscribe_data_change(nodes)
            self.connected = True
            log.info("bridge connected to %s: %d input nodes", self.endpoint, len(nodes))
            await self._forward(client, http)

    async def _forward(self, client: Client, http: httpx.AsyncClient) -> None:
        """A row on every change (at most one per period) or every ``resend_s``, until
        stopped; raises once the connection is lost (looked at every period)."""
        loop = asyncio.get_running_loop()
        last = -math.inf
        while not self.stopping.is_set():
            due = last + self.resend_s - loop.time()
            if due > 0 and not self.changed.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), timeout=min(due, self.period_s))
            await client.check_connection()  # raises once the server is gone
            if self.changed.is_set() or loop.time() - last >= self.resend_s:
                self.changed.clear()
                await self._send(http, client)
                last = loop.time()
                await asyncio.sleep(self.period_s)
