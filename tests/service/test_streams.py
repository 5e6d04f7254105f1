"""Streams fed one row per request, the way a historian feeds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.monitoring.alarms import RESIDUAL_CLEAR, RESIDUAL_ON_RESULTS, ResidualAlarm
from service.scoring.rows import Series
from tests.service.conftest import Published, make_settings, tiny_records


@pytest.mark.parametrize(("rows", "n"), [(3, 5), (15, 20), (11, 20), (20, 20), (25, 20), (4, 0)])
def test_tail_keeps_the_newest_rows_or_all_when_fewer(rows: int, n: int) -> None:
    """``tail(n)`` is the newest ``min(n, len)`` rows, never fewer (no negative slicing)."""
    series = Series(np.arange(float(rows)), np.arange(float(rows))[:, None])
    tail = series.tail(n)
    assert tail.times.tolist() == list(range(rows))[rows - min(n, rows) :]
    assert tail.values.shape == (min(n, rows), 1)


def test_one_row_per_request_equals_one_window(published_long: Published, tmp_path: Path) -> None:
    """A stream fed one row per request gets exactly the answers of the same rows sent as one
    window, and no ``missing_history`` once its history is full."""
    records = tiny_records(published_long.data, 0, 40)
    settings = make_settings(published_long.root, tmp_path)
    with TestClient(create_app(settings)) as client:
        window = client.post("/v1/predict", json={"records": records})
        assert window.status_code == 200, window.text
        whole = window.json()["rows"]
        single = []
        for rec in records:
            r = client.post("/v1/predict", json={"stream": "unit-1", "records": [rec]})
            assert r.status_code == 200, r.text
            single.append(r.json()["rows"][0])
    history = 6
    assert [row["estimate"] for row in single] == pytest.approx(
        [row["estimate"] for row in whole], abs=1e-9
    )
    assert [row["flags"]["missing_history"] for row in single] == [True] * history + [False] * (
        len(records) - history
    )


def test_an_absurd_timestamp_cannot_hijack_a_stream(
    client: TestClient, published: Published
) -> None:
    """A row dated 9999 is refused with a 422 naming its field; the stream's clock does not
    move, so its next real row is served (before, every later row got 409)."""
    records = tiny_records(published.data, 0, 3)
    assert (
        client.post("/v1/predict", json={"stream": "u", "records": records[:1]}).status_code == 200
    )
    absurd = records[1] | {"timestamp": "9999-12-31T00:00:00Z"}
    r = client.post("/v1/predict", json={"stream": "u", "records": [absurd]})
    assert r.status_code == 422 and "records[0].timestamp" in r.text and "future" in r.text
    columns = {"timestamp": [4e11], "columns": {k: [1.0] for k in ("a", "b", "q")}}
    r = client.post("/v1/predict", json=columns)
    assert r.status_code == 422 and "timestamp[0]" in r.text
    assert (
        client.post("/v1/predict", json={"stream": "u", "records": records[1:2]}).status_code == 200
    )


@pytest.mark.parametrize(("scale", "unit"), [(1e3, "milliseconds"), (1e9, "nanoseconds")])
def test_an_epoch_in_another_unit_is_refused_with_the_unit_named(
    client: TestClient, scale: float, unit: str
) -> None:
    """IP.21 and Kepware send epoch milliseconds, InfluxDB nanoseconds: the refusal says what
    the number looks like, not only that it lies in the future."""
    import time

    when = float(int(time.time() - 60) * scale)
    columns = {"timestamp": [when], "columns": {k: [1.0] for k in ("a", "b", "q")}}
    r = client.post("/v1/predict", json=columns)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("timestamp[0]") and f"reads as {unit} since 1970" in detail, detail


def test_a_local_time_without_its_offset_is_refused_with_the_offset_named(
    client: TestClient,
) -> None:
    """A bridge that sends a plant's local time (UTC+2 in summer in Europe) without the
    offset sends times two hours ahead: the refusal says what that looks like."""
    import time
    from datetime import UTC, datetime, timedelta

    local = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=2, minutes=-3)
    records = [{"timestamp": local.isoformat(), "values": {k: 1.0 for k in ("a", "b", "q")}}]
    r = client.post("/v1/predict", json={"records": records})
    assert r.status_code == 422, r.text
    assert "2 h ahead: a local time sent without its UTC offset?" in r.json()["detail"]
    soon = time.time() + 1800  # half an hour ahead: no offset is that
    columns = {"timestamp": [soon], "columns": {k: [1.0] for k in ("a", "b", "q")}}
    r = client.post("/v1/predict", json=columns)
    assert r.status_code == 422 and "offset" not in r.json()["detail"], r.text


def test_a_jump_far_past_the_streams_clock_is_refused_unless_live(
    published: Published, tmp_path: Path
) -> None:
    """In a backfill, a row a year after the stream's clock (a typo in the date) is refused;
    a live row after an outage of any length starts the stream again."""
    import time

    records = tiny_records(published.data, 0, 2)
    settings = make_settings(published.root, tmp_path, stream_max_jump_s=86_400.0)
    with TestClient(create_app(settings)) as client:
        assert (
            client.post("/v1/predict", json={"stream": "u", "records": records[:1]}).status_code
            == 200
        )
        typo = records[1] | {"timestamp": "2026-06-01T00:01:00Z"}  # months later, still past
        r = client.post("/v1/predict", json={"stream": "u", "records": [typo]})
        assert r.status_code == 422 and "SOFTSENSOR_STREAM_MAX_JUMP_S" in r.text
        live = records[1] | {"timestamp": time.time() - 5.0}
        r = client.post("/v1/predict", json={"stream": "u", "records": [live]})
        assert r.status_code == 200, r.text


def test_residual_alarm_has_an_on_delay_and_a_deadband() -> None:
    """One result beyond the level does not raise the residual alarm (an analyzer's scatter
    crosses it now and then); three in a row do; it holds within the deadband and clears
    below it, as alarm management asks of a noisy condition."""
    alarm = ResidualAlarm()
    for ratio in (1.2, 0.9, 1.3, 1.1):  # beyond, deadband, beyond twice: never three in a row
        alarm.observe(ratio)
        assert not alarm.on
    alarm.observe(1.05)
    assert alarm.on  # the third result in a row beyond the level
    for ratio in (0.95, 0.85, 1.4, 0.81):  # within the deadband (or beyond again): holds
        alarm.observe(ratio)
        assert alarm.on
    alarm.observe(0.79)
    assert not alarm.on
    assert RESIDUAL_ON_RESULTS == 3 and RESIDUAL_CLEAR == 0.8
