"""Large batches take bulk paths (simdjson columns, slice-copy assembly, vectorized change
tracking, block EWMAs); these tests hold each bulk path to the plain path's answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.api.columnar import BULK_BYTES, read_predict
from service.api.schemas import PredictRequest
from service.contracts.features import BULK_VALUES, FeaturePlan, LagFeature
from service.monitoring.alarms import ewma_rows
from service.monitoring.changes import ChangeTracker
from tests.service.conftest import Published, tiny_records

ROWS = 4000  # enough for a body above BULK_BYTES


def _columnar(published: Published, rows: int = ROWS) -> dict[str, Any]:
    """``rows`` samples of the tiny data, repeated, one minute apart, as POSIX seconds."""
    base = tiny_records(published.data)
    records = [base[i % len(base)] for i in range(rows)]
    return {
        "model": "tiny",
        "timestamp": (1.77e9 + 60.0 * np.arange(rows)).tolist(),
        "columns": {k: [r["values"][k] for r in records] for k in ("a", "b", "q")},
    }


def test_bulk_reader_gives_the_schema_values(published: Published) -> None:
    payload = _columnar(published)
    body = orjson.dumps(payload)
    assert len(body) >= BULK_BYTES
    bulk, plain = read_predict(body), PredictRequest.model_validate_json(body)
    assert isinstance(bulk.columns, dict) and isinstance(bulk.columns["a"], np.ndarray)
    assert plain.columns is not None and plain.timestamp is not None
    for name, values in plain.columns.items():
        assert np.array_equal(bulk.columns[name], np.asarray(values, dtype=np.float64))
    assert np.array_equal(np.asarray(bulk.timestamp), np.asarray(plain.timestamp))
    assert (bulk.model, bulk.stream, bulk.records) == (plain.model, plain.stream, None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["columns"]["a"].__setitem__(7, True), "columns.a.7"),
        (lambda p: p["columns"]["b"].__setitem__(3, {"v": 12.5}), "columns.b.3"),
        (lambda p: p.__setitem__("model", "Bad Name!"), "model"),
        (lambda p: p.__setitem__("colour", "red"), "colour"),
        (lambda p: p["columns"]["q"].pop(), "equal lengths"),
        (lambda p: p.__setitem__("records", []), "either 'records' or 'columns'"),
    ],
)
def test_bulk_reader_leaves_every_refusal_to_the_schema(
    published: Published, change: Any, field: str
) -> None:
    payload = _columnar(published)
    change(payload)
    body = orjson.dumps(payload)
    with pytest.raises(ValidationError) as bulk:
        read_predict(body)
    with pytest.raises(ValidationError) as plain:
        PredictRequest.model_validate_json(body)
    assert str(bulk.value) == str(plain.value)
    assert field in str(bulk.value)


def test_bulk_reader_takes_nulls_and_dates_through_the_schema(published: Published) -> None:
    payload = _columnar(published)
    payload["columns"]["b"][5] = None
    payload["timestamp"] = [f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z" for i in range(ROWS)]
    parsed = read_predict(orjson.dumps(payload))
    assert parsed.columns is not None and parsed.columns["b"][5] is None
    assert parsed.timestamp is not None and parsed.timestamp[1].second == 1  # type: ignore[union-attr]


def test_big_columnar_batch_answers_as_records_do(client: TestClient, published: Published) -> None:
    payload = _columnar(published)
    body = orjson.dumps(payload)
    assert len(body) >= BULK_BYTES
    by_col = client.post("/v1/predict", content=body)
    assert by_col.status_code == 200, by_col.text
    got = by_col.json()
    records = [
        {"timestamp": t, "values": {k: payload["columns"][k][i] for k in ("a", "b", "q")}}
        for i, t in enumerate(payload["timestamp"][:300])
    ]
    by_rec = client.post("/v1/predict", json={"model": "tiny", "records": records}).json()
    assert got["estimate"][:300] == pytest.approx([r["estimate"] for r in by_rec["rows"]])
    assert got["timestamp"] == payload["timestamp"]
    missing = [f["row"] for f in got["flags"] if f["missing_history"]]
    assert missing == [0, 1]  # only the rows before any lag history
    assert len(got["interval_low"]) == ROWS


def test_bulk_assembly_equals_the_gather() -> None:
    rng = np.random.default_rng(3)
    plan = FeaturePlan(
        ("u", "v"), (), tuple(LagFeature(s, lag) for s in ("u", "v") for lag in (0, 1, 3))
    )
    small = rng.normal(size=(40, 2))
    big = rng.normal(size=(BULK_VALUES, 2))

    def expected(v: np.ndarray) -> np.ndarray:
        return np.column_stack([v[3 - lag : len(v) - lag, c] for c in (0, 1) for lag in (0, 1, 3)])

    assert np.array_equal(plan.assemble(small), expected(small))  # few values: one gather
    assert np.array_equal(plan.assemble(big), expected(big))  # many: slice copies


@pytest.mark.parametrize("frozen_from", [0, 10, 320, 2557])
def test_change_tracking_in_one_batch_equals_row_by_row(frozen_from: int) -> None:
    """Column 0 lives, column 1 freezes at ``frozen_from``, column 2 never moves, column 3
    has gaps (NaN): one bulk call gives the per-row answers of one call per row."""
    rng = np.random.default_rng(frozen_from)
    n = 2560
    x = rng.normal(size=(n, 4))
    x[frozen_from:, 1] = x[frozen_from, 1]
    x[:, 2] = 1.5
    x[rng.random(n) < 0.2, 3] = np.nan
    t = 1000.0 + 60.0 * np.arange(n, dtype=np.float64)
    bulk, stepwise = ChangeTracker(4), ChangeTracker(4)
    whole = bulk.observe(x, t)
    rows = np.vstack([stepwise.observe(x[i : i + 1], t[i : i + 1]) for i in range(n)])
    np.testing.assert_array_equal(whole, rows)
    np.testing.assert_array_equal(bulk.last_change, stepwise.last_change)
    assert bulk.last_change[1] == t[frozen_from] and bulk.last_change[2] == t[0]
    assert whole[-1, 1] == t[-1] - t[frozen_from] and whole[-1, 2] == t[-1] - t[0]


@pytest.mark.parametrize("samples", [15.0, 360.0])
def test_block_ewma_equals_the_recursion(samples: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 3))
    start = rng.normal(size=3)
    block, last = ewma_rows(x, start, samples)
    a, level, loop = 1 - np.exp(-1 / samples), start.copy(), []
    for row in x:
        level = level + a * (row - level)
        loop.append(level)
    np.testing.assert_allclose(block, np.array(loop), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(last, loop[-1], rtol=1e-9)
