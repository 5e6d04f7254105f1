"""`serve --opcua` inside the app: the OPC UA server starts in the lifespan, every predict
answer (records or columns) puts its latest row on the stream's nodes, read by a real asyncua
client; and the command line refuses what cannot work, naming it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.cli.main import main
from service.plant.opcua_server import NAMESPACE
from service.plant.published import latest_row
from service.plant.quality import Quality
from tests.service.conftest import Published, free_port, make_settings, tiny_records


async def _nodes(endpoint: str, stream: str) -> dict[str, ua.DataValue]:
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NAMESPACE)
        out = {}
        for name in ("Estimate", "EstimateCorrected", "IntervalLow", "IntervalHigh", "Status"):
            node = client.get_node(ua.NodeId(f"tiny.{stream}.{name}", ns))
            out[name] = await node.read_data_value(raise_on_bad_status=False)
        return out


def _read_until(endpoint: str, stream: str, when: datetime) -> dict[str, ua.DataValue]:
    """The stream's nodes once they carry the row of ``when`` (the server's queue drains on
    its own task, a moment after the answer)."""

    async def poll() -> dict[str, ua.DataValue]:
        for _ in range(200):
            try:
                got = await _nodes(endpoint, stream)
            except ua.UaStatusCodeError:  # the stream's nodes are not made yet
                got = {}
            if got and all(dv.SourceTimestamp == when for dv in got.values()):
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"nodes of {stream} never carried the row of {when}")

    return asyncio.run(poll())


def _check(nodes: dict[str, ua.DataValue], row: dict[str, Any]) -> None:
    expected = {
        "Estimate": row["estimate"],
        "EstimateCorrected": row["estimate_corrected"],
        "IntervalLow": row["interval_low"],
        "IntervalHigh": row["interval_high"],
    }
    for name, value in expected.items():
        assert nodes[name].Value.Value == pytest.approx(value, abs=1e-12), name
        assert nodes[name].StatusCode.value == row["status_code"], name
    assert nodes["Status"].Value.Value == row["status"]


@pytest.mark.slow
def test_each_answer_puts_its_latest_row_on_the_streams_nodes(
    published: Published, tmp_path: Path
) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/softsensor/"
    settings = make_settings(published.root, tmp_path, opcua_endpoint=endpoint)
    records = tiny_records(published.data, 10, 16)
    with TestClient(create_app(settings)) as client:
        body = client.post("/v1/predict", json={"stream": "rec", "records": records}).json()
        last = body["rows"][-1]
        flat = last | {"interval_low": last["interval"][0], "interval_high": last["interval"][1]}
        _check(_read_until(endpoint, "rec", datetime.fromisoformat(records[-1]["timestamp"])), flat)

        stamps = [r["timestamp"] for r in records]
        columns = {s: [r["values"][s] for r in records] for s in ("a", "b", "q")}
        columns["b"][-1] = None  # a gap: the row is uncertain, and so are its nodes
        cols = {"stream": "col", "timestamp": stamps, "columns": columns}
        answer = client.post("/v1/predict", json=cols).json()
        row = {k: answer[k][-1] for k in ("estimate", "estimate_corrected", "status")}
        row |= {
            "interval_low": answer["interval_low"][-1],
            "interval_high": answer["interval_high"][-1],
            "status_code": answer["status_code"][-1],
        }
        assert row["status"] == "uncertain"
        _check(_read_until(endpoint, "col", datetime.fromisoformat(stamps[-1])), row)


def test_an_answer_without_rows_publishes_nothing_and_a_columns_one_its_last() -> None:
    head = {"model": "tiny", "stream": "s"}
    assert latest_row(head | {"rows": []}) is None
    cols = {
        "timestamp": [1_767_225_600.0, 1_767_225_660.0],
        "estimate": [0.1, 0.2],
        "estimate_corrected": [0.15, 0.25],
        "interval_low": [0.0, 0.1],
        "interval_high": [0.2, 0.3],
        "status": ["good", "bad"],
    }
    row = latest_row(head | cols)
    assert row is not None and row.status is Quality.BAD and row.corrected == 0.25
    assert row.time.isoformat() == "2026-01-01T00:01:00+00:00"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--opcua", "http://x:1"], "opcua_endpoint"),
        (["serve", "--opcua", "opc.tcp://127.0.0.1:4840", "--workers", "2"], "workers = 1"),
    ],
)
def test_serve_refuses_an_opcua_setting_it_cannot_serve(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    # serve passes its options on through the environment (for its workers): set and
    # delete each here, so that monkeypatch restores their absence after the test
    for key in ("OPCUA_ENDPOINT", "WORKERS", "OPCUA_STALE_AFTER_S"):
        monkeypatch.setenv(f"SOFTSENSOR_{key}", "")
        monkeypatch.delenv(f"SOFTSENSOR_{key}")
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_connect_refuses_a_tag_map_with_a_node_id_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tags = tmp_path / "tags.yaml"
    tags.write_text("inputs:\n  - {signal: a, node_id: 'TI-101'}\n", encoding="utf-8")
    code = main(["connect", "--opcua", "opc.tcp://127.0.0.1:1", "--tags", str(tags)])
    assert code == 1
    assert "'TI-101' is not an OPC UA NodeId" in capsys.readouterr().err
