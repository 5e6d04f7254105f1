"""The plant loop end to end, every part real: a plant-side asyncua server whose input nodes
change every second (rows of the tiny model's CSV), `softsensor serve --opcua` and
`softsensor connect` as processes, and an asyncua client reading the service's estimate node.

What it proves:
- the estimate node's value, corrected value, interval and status code are what
  ``/v1/predict`` answers for the same rows (checked while the plant holds its inputs, so that
  "the same rows" are known: three rows of the held values, on a stream of their own), and the
  bridge wrote the same estimate back to the plant's output node;
- a Bad input node makes the estimate Uncertain or Bad;
- stopping the plant server turns the estimate Bad within ``BAD_WITHIN_S`` (the bridge sees
  the closed connection at once and sends a row of BadNoCommunication inputs), nothing
  crashes, and once the plant server is back the bridge reconnects and the estimate is Good
  again.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asyncua import Client, Server, ua

from service.plant.opcua_server import NAMESPACE
from tests.service.conftest import REPO, Published, ServerProcess, free_port, tiny_records

PLANT_NS = "urn:test:plant"
SIGNALS = ("a", "b", "q")
OUTPUTS = {"estimate": "XB_EST", "interval_low": "XB_LO", "interval_high": "XB_HI"}
BAD_WITHIN_S = 10.0  # plant server stopped -> estimate Bad (measured ~1-2 s; slack for load)
PERIOD_S, RESEND_S = 0.5, 1.0  # the bridge's options in this test
GOOD, UNCERTAIN, BAD = 0, 1, 2


def severity(dv: ua.DataValue) -> int:
    """OPC UA Part 4, 7.39: bits 31-30 of the status code (00 good, 01 uncertain, 1x bad)."""
    code = 0 if dv.StatusCode is None else int(dv.StatusCode.value)
    return min(code >> 30, BAD)


class Plant:
    """The plant's OPC UA server: input nodes TI_a, TI_b, TI_q written every second from the
    CSV (unless held), and output nodes the bridge writes the estimates to."""

    def __init__(self, endpoint: str, records: list[dict[str, Any]]) -> None:
        self.endpoint = endpoint
        self.records = records
        self.row = 10  # the first rows have no lag history in the CSV; start inside it
        self.held = False
        self.bad: set[str] = set()
        self.index = 0
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.index = await server.register_namespace(PLANT_NS)
        unit = await server.nodes.objects.add_object(ua.NodeId("Unit1", self.index), "Unit1")
        for s in SIGNALS:
            name = f"TI_{s}"
            node = ua.NodeId(name, self.index)
            self.inputs[s] = await unit.add_variable(
                node, name, ua.Variant(0.0, ua.VariantType.Double)
            )
        for name in OUTPUTS.values():
            node = ua.NodeId(name, self.index)
            var = await unit.add_variable(node, name, ua.Variant(0.0, ua.VariantType.Double))
            await var.set_writable()
            self.outputs[name] = var
        await server.start()
        self._server = server
        await self.write()
        self._ticker = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
            self._server = None

    def values(self) -> dict[str, float]:
        return dict(self.records[self.row % len(self.records)]["values"])

    async def write(self) -> None:
        """The current row onto the input nodes, a bad node with BadSensorFailure."""
        now = datetime.now(UTC)
        for s, value in self.values().items():
            code = ua.StatusCodes.BadSensorFailure if s in self.bad else ua.StatusCodes.Good
            await self.inputs[s].write_value(
                ua.DataValue(
                    ua.Variant(value, ua.VariantType.Double),
                    StatusCode=ua.StatusCode(code),
                    SourceTimestamp=now,
                    ServerTimestamp=now,
                )
            )

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if not self.held:
                self.row += 1
                await self.write()

    def tag_map(self, path: Path) -> Path:
        lines = ["model: tiny", "stream: unit-1", "inputs:"]
        lines += [f"  - {{signal: {s}, node_id: 'ns={self.index};s=TI_{s}'}}" for s in SIGNALS]
        lines.append("outputs:")
        lines += [
            f"  - {{value: {v}, node_id: 'ns={self.index};s={n}'}}" for v, n in OUTPUTS.items()
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A child process of the command line, its output in ``log``."""
    env = {"PYTHONPATH": str(REPO), "SOFTSENSOR_WATCH_INTERVAL_S": "0"}
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


async def until(
    check: Callable[[], Awaitable[Any]], what: str, seconds: float, logs: list[Path]
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``, with the logs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
    raise AssertionError(f"{what}: not within {seconds} s\n{tails}")


def check_rows(service_url: str, values: dict[str, float], stream: str) -> dict[str, Any]:
    """What /v1/predict answers for three rows of ``values`` (lags reach two rows back) on a
    stream of its own: the rows the service's own stream holds once the plant is held."""
    now = datetime.now(UTC)
    records = [
        {"timestamp": (now - timedelta(seconds=2 - i)).isoformat(), "values": values}
        for i in range(3)
    ]
    body = {"model": "tiny", "stream": stream, "records": records}
    r = httpx.post(service_url + "/v1/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    row: dict[str, Any] = r.json()["rows"][-1]
    return row


@pytest.mark.slow
def test_plant_bridge_service_and_client_end_to_end(published: Published, tmp_path: Path) -> None:
    plant = Plant(f"opc.tcp://127.0.0.1:{free_port()}/plant/", tiny_records(published.data))
    opcua = f"opc.tcp://127.0.0.1:{free_port()}/softsensor/"
    port = free_port()
    service_log, bridge_log = tmp_path / "service.log", tmp_path / "bridge.log"
    logs = [service_log, bridge_log]
    cli = [sys.executable, "-m", "service.cli"]
    serve = [*cli, "serve", "--registry", str(published.root), "--state-dir", str(tmp_path)]
    serve += ["--port", str(port), "--opcua", opcua, "--opcua-stale-after", "20"]
    service = ServerProcess(start(serve, service_log), f"http://127.0.0.1:{port}", service_log)
    bridge: subprocess.Popen[bytes] | None = None
    figures: dict[str, float] = {}

    async def run() -> None:
        nonlocal bridge, plant
        await plant.start()
        tags = plant.tag_map(tmp_path / "tags.yaml")
        await asyncio.to_thread(service.wait_until, "/v2/health/ready", 200, 120)
        connect = [*cli, "connect", "--opcua", plant.endpoint, "--tags", str(tags)]
        connect += ["--service", service.url, "--period", str(PERIOD_S), "--resend", str(RESEND_S)]
        bridge = start(connect, bridge_log)
        async with Client(opcua, timeout=10) as client:
            ns = await client.get_namespace_index(NAMESPACE)

            async def read(name: str) -> ua.DataValue | None:
                node = client.get_node(ua.NodeId(f"tiny.unit-1.{name}", ns))
                try:
                    dv: ua.DataValue = await node.read_data_value(raise_on_bad_status=False)
                except ua.UaStatusCodeError:  # the stream's nodes appear with its first row
                    return None
                return dv

            async def status_after(since: datetime, wanted: set[int]) -> ua.DataValue | None:
                dv = await read("Estimate")
                if dv is None or dv.SourceTimestamp is None or dv.SourceTimestamp <= since:
                    return None
                return dv if severity(dv) in wanted else None

            started = datetime.now(UTC)
            await until(lambda: status_after(started, {GOOD}), "a Good estimate", 60, logs)

            # -- the value is /v1/predict's for the same rows: hold the plant, wait for three
            # rows of the held values, and ask /v1/predict for three such rows on another stream
            plant.held = True
            held_at = datetime.now(UTC) + timedelta(seconds=3 * RESEND_S + 3)  # slack: load
            held = await until(
                lambda: status_after(held_at, {GOOD, UNCERTAIN, BAD}), "held rows", 30, logs
            )
            expected = await asyncio.to_thread(check_rows, service.url, plant.values(), "check")
            names = {
                "Estimate": expected["estimate"],
                "EstimateCorrected": expected["estimate_corrected"],
                "IntervalLow": expected["interval"][0],
                "IntervalHigh": expected["interval"][1],
            }
            for name, value in names.items():
                dv = await read(name)
                assert dv is not None and dv.Value is not None
                assert dv.Value.Value == pytest.approx(value, abs=1e-12), name
                assert int(dv.StatusCode.value) == expected["status_code"], name
            assert held.SourceTimestamp is not None
            status = await read("Status")
            assert status is not None and status.Value.Value == expected["status"]

            async def written_back() -> bool:
                dv = await plant.outputs["XB_EST"].read_data_value(raise_on_bad_status=False)
                return bool(dv.Value.Value == pytest.approx(expected["estimate"], abs=1e-12))

            await until(written_back, "the estimate written back to the plant", 10, logs)
            out = await plant.outputs["XB_HI"].read_data_value(raise_on_bad_status=False)
            assert out.Value.Value == pytest.approx(expected["interval"][1], abs=1e-12)
            assert int(out.StatusCode.value) == expected["status_code"]

            # -- a Bad input node: the estimate turns Uncertain or Bad (tiny: one bad input
            # of three is carried forward, Uncertain)
            plant.bad = {"b"}
            marked = datetime.now(UTC)
            await plant.write()
            dv = await until(
                lambda: status_after(marked, {UNCERTAIN, BAD}), "Uncertain/Bad estimate", 20, logs
            )
            word = await read("Status")
            assert word is not None and word.Value.Value in ("uncertain", "bad")
            figures["bad_input_status"] = float(severity(dv))
            plant.bad, plant.held = set(), False
            restored = datetime.now(UTC)
            await plant.write()
            await until(lambda: status_after(restored, {GOOD}), "Good again", 30, logs)

            # -- the plant server stops: Bad within BAD_WITHIN_S, nothing crashes
            await plant.stop()
            stopped, t0 = datetime.now(UTC), time.monotonic()
            await until(lambda: status_after(stopped, {BAD}), "Bad estimate", BAD_WITHIN_S, logs)
            figures["bad_after_stop_s"] = time.monotonic() - t0
            await asyncio.sleep(2 * RESEND_S)
            assert service.proc.poll() is None and bridge.poll() is None
            live = await asyncio.to_thread(httpx.get, service.url + "/v2/health/live", timeout=10)
            assert live.status_code == 200

            # -- the plant server comes back: the bridge reconnects, the estimate is Good
            records, row = plant.records, plant.row
            plant = Plant(plant.endpoint, records)
            plant.row = row
            await plant.start()
            back, t1 = datetime.now(UTC), time.monotonic()
            await until(lambda: status_after(back, {GOOD}), "Good after reconnect", 40, logs)
            figures["good_after_restart_s"] = time.monotonic() - t1

            async def written_again() -> bool:
                dv = await plant.outputs["XB_EST"].read_data_value(raise_on_bad_status=False)
                return dv.SourceTimestamp is not None and dv.SourceTimestamp > back

            await until(written_again, "write-back after reconnect", 20, logs)
        await plant.stop()

    try:
        asyncio.run(run())
    finally:
        for proc in (bridge, service.proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        codes = [p.wait(timeout=30) for p in (bridge, service.proc) if p is not None]
    print(f"figures: {figures}")
    # the bridge ends cleanly on SIGTERM; uvicorn, after its clean shutdown, re-raises it
    assert codes[0] == 0 and codes[-1] in (0, -15), (codes, bridge_log.read_text()[-2000:])
    assert "bridge session failed" not in bridge_log.read_text()  # no unexpected exception
    assert "Traceback" not in service_log.read_text(), service_log.read_text()[-3000:]
