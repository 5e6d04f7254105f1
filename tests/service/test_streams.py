"""Streams fed one row per request, the way a historian feeds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.rows import Series
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
