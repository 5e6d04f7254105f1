"""A historian's outage on a stream, against a real `softsensor serve` process: the rows
before the gap are not the lags the model was trained on, so the stream starts its history
afresh, and its rows say so (``missing_history``, uncertain) until the lags are full again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.service.conftest import (
    LONG_SPEC,
    Published,
    ServerProcess,
    publish_tiny,
    serving,
    tiny_records,
)

HISTORY = 6  # the long tiny model's lags reach 6 rows back
# the same model with its sample interval declared (the tiny CSV has one row a minute)
TIMED_SPEC = LONG_SPEC.replace(
    "source: {format: csv, timestamp: time}",
    "source: {format: csv, timestamp: time, sample_interval_s: 60}",
)


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Published:
    return publish_tiny(tmp_path_factory.mktemp("timed"), TIMED_SPEC)


@pytest.fixture(scope="module")
def server(timed: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(timed.root, tmp_path_factory.mktemp("timed-server")) as proc:
        yield proc


def _shifted(record: dict[str, Any], by: timedelta) -> dict[str, Any]:
    t = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")) + by
    return {**record, "timestamp": t.astimezone(UTC).isoformat()}


def _one(server: ServerProcess, stream: str, record: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(server.url + "/v1/predict", json={"stream": stream, "records": [record]})
    assert r.status_code == 200, r.text
    row: dict[str, Any] = r.json()["rows"][0]
    return row


@pytest.mark.parametrize(("missed", "gap"), [(0, False), (1, True), (120, True)])
def test_a_stream_starts_its_lags_afresh_after_a_gap_in_time(
    server: ServerProcess, timed: Published, missed: int, gap: bool
) -> None:
    """Rows 0..19 one a minute, then rows 20..39 after ``missed`` minutes without data:
    after a gap (one missed poll already is one: 2 minutes > 1.5 intervals) the first rows
    are scored as a new stream scores them, flagged until their lags are full again."""
    records = tiny_records(timed.data, 0, 40)
    stream = f"unit-{missed}"
    for rec in records[:20]:
        _one(server, stream, rec)
    later = [_shifted(r, timedelta(minutes=missed)) for r in records[20:]]
    after = [_one(server, stream, r) for r in later]
    flags = [row["flags"]["missing_history"] for row in after]
    if not gap:
        assert flags == [False] * 20
        return
    assert flags == [True] * HISTORY + [False] * (20 - HISTORY)
    assert all(row["status"] == "uncertain" for row in after[:HISTORY])
    fresh = [_one(server, f"fresh-{missed}", r) for r in later]
    assert [row["estimate"] for row in after] == pytest.approx(
        [row["estimate"] for row in fresh], abs=1e-12
    )


@pytest.mark.parametrize("missed", [1, 120])
def test_a_window_with_a_gap_answers_as_its_rows_one_by_one(
    server: ServerProcess, timed: Published, missed: int
) -> None:
    """A window sent in one request (a historian's read over its own outage) is scored as
    the same rows sent one by one to a stream: after the gap the lags start afresh, and
    the rows say so until they are full again."""
    records = tiny_records(timed.data, 0, 40)
    rows = records[:20] + [_shifted(r, timedelta(minutes=missed)) for r in records[20:]]
    r = httpx.post(server.url + "/v1/predict", json={"records": rows})
    assert r.status_code == 200, r.text
    window = r.json()["rows"]
    single = [_one(server, f"window-{missed}", rec) for rec in rows]
    flags = [row["flags"]["missing_history"] for row in window]
    expected = [True] * HISTORY + [False] * (20 - HISTORY)
    assert flags == expected + expected
    assert [row["flags"]["missing_history"] for row in single] == flags
    assert [row["estimate"] for row in single] == pytest.approx(
        [row["estimate"] for row in window], abs=1e-12
    )
    stream = [_one(server, f"stream-{missed}", rec) for rec in records[:5]]
    assert len(stream) == 5
    r = httpx.post(  # a stream's request holding a gap: what follows it starts afresh too
        server.url + "/v1/predict", json={"stream": f"stream-{missed}", "records": rows[5:25]}
    )
    assert r.status_code == 200, r.text
    held = r.json()["rows"]  # before the gap its lags read the stream's history
    assert [row["estimate"] for row in held] == pytest.approx(
        [row["estimate"] for row in single[5:25]], abs=1e-12
    )
    assert [row["flags"]["missing_history"] for row in held] == flags[5:25]
    after = _one(server, f"stream-{missed}", rows[25])
    assert after["flags"]["missing_history"] and after["estimate"] == pytest.approx(
        single[25]["estimate"], abs=1e-12
    )
