"""The estimates as OPC UA variables, read by a real asyncua client: value, status code and
source timestamp per row, and BadNoCommunication once a stream goes silent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from asyncua import Client, ua

from service.plant.opcua_server import BAD_NO_COMMUNICATION, EstimateServer, PublishedRow
from service.plant.quality import Quality
from tests.service.conftest import free_port


def _row(status: Quality, minute: int, value: float = 0.61) -> PublishedRow:
    t = datetime(2026, 1, 1, 5, minute, tzinfo=UTC)
    return PublishedRow(
        "column_a", "unit-1", t, value, value + 0.01, value - 0.1, value + 0.1, status
    )


async def _read(client: Client, ns: int, name: str) -> ua.DataValue:
    node = client.get_node(ua.NodeId(f"column_a.unit-1.{name}", ns))
    value: ua.DataValue = await node.read_data_value(raise_on_bad_status=False)
    return value


async def _until(check: object, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.slow
def test_rows_become_values_with_status_and_source_time_then_stale_goes_bad() -> None:
    async def run() -> None:
        endpoint = f"opc.tcp://127.0.0.1:{free_port()}/softsensor/"
        server = EstimateServer(endpoint, stale_after_s=1.0)
        await server.start()
        try:
            server.publish([_row(Quality.GOOD, 0)])
            async with Client(endpoint) as client:
                ns = await client.get_namespace_index("urn:softsensor:estimates")

                async def written() -> bool:
                    try:
                        got = await _read(client, ns, "Estimate")
                    except ua.UaStatusCodeError:
                        return False
                    return got.Value is not None and got.Value.Value == pytest.approx(0.61)

                await _until(written)
                est = await _read(client, ns, "Estimate")
                assert est.StatusCode is not None and est.StatusCode.value == 0
                assert est.SourceTimestamp == datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
                assert (await _read(client, ns, "IntervalHigh")).Value.Value == pytest.approx(0.71)
                assert (await _read(client, ns, "Status")).Value.Value == "good"

                server.publish([_row(Quality.UNCERTAIN, 1, 0.7)])

                async def uncertain() -> bool:
                    got = await _read(client, ns, "EstimateCorrected")
                    return got.StatusCode is not None and got.StatusCode.value == 0x40000000

                await _until(uncertain)
                assert (await _read(client, ns, "Status")).Value.Value == "uncertain"

                async def stale() -> bool:  # no row for more than a second
                    got = await _read(client, ns, "Estimate")
                    return (
                        got.StatusCode is not None and got.StatusCode.value == BAD_NO_COMMUNICATION
                    )

                await _until(stale)
                assert (await _read(client, ns, "Status")).Value.Value == "bad"
                server.publish([_row(Quality.GOOD, 2)])  # the stream is back

                async def back() -> bool:
                    got = await _read(client, ns, "Estimate")
                    return got.StatusCode is not None and got.StatusCode.value == 0

                await _until(back)
        finally:
            await server.stop()

    asyncio.run(run())
