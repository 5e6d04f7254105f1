"""The sensor-redundancy drift test in the running service: rows name the drifting sensor,
the drift alarm and the per-sensor gauges follow, the state travels in a snapshot, and a card
without the block goes without the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.contracts.registry import Registry
from service.scoring.runtime import load_model
from service.state.snapshot import load, save
from service.state.streams import StreamState, new_monitors
from tests.service.conftest import Published, make_settings, tiny_records


def _block() -> dict[str, Any]:
    """A hand-made block on the tiny model's signals: no redundancy at all (zero weights),
    unit spreads, so a value's departure from its 60-row baseline is the test."""
    return {
        "signals": ["a", "b"],
        "mean": [0.0, 0.0],
        "scale": [1.0, 1.0],
        "weights": [[0.0, 0.0]] * 4,
        "smooth_samples": 10.0,
        "baseline_samples": 60.0,
        "fast_samples": 1.0,
        "clip_sd": 8.0,
        "residual_sd": [1.0, 1.0],
        "limit": [3.0, 3.0],
        "release": 0.5,
        "margin": 2.0,
        "false_alarms_per_week": 0.1,
        "validation_samples": 0,
        "validation_onsets": 0,
    }


def _with_block(registry_copy: Path, version: str) -> Path:
    card_path = Registry(registry_copy).version_dir("tiny", version) / "card.json"
    card = json.loads(card_path.read_text())
    assert card["calibration"] is not None and card["calibration"].get("redundancy") is None
    card["calibration"]["redundancy"] = _block()
    card_path.write_text(json.dumps(card))
    return registry_copy


def _metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _ramped(published: Published) -> list[dict[str, Any]]:
    """The tiny rows with 'a' held at 0 and then ramped by 0.5 per row from row 40."""
    records = tiny_records(published.data)[:70]
    for k, r in enumerate(records):
        r["values"]["a"] = 0.5 * max(k - 40, 0)
        r["values"]["b"] = 0.0 if k % 2 else 0.1  # moving, so never frozen
    return records


def test_a_drifting_sensor_is_named_and_alarmed(
    registry_copy: Path, published: Published, tmp_path: Path
) -> None:
    root = _with_block(registry_copy, published.version)
    with TestClient(create_app(make_settings(root, tmp_path))) as client:
        answers = []
        for record in _ramped(published):
            r = client.post("/v1/predict", json={"stream": "unit-1", "records": [record]})
            assert r.status_code == 200, r.text
            answers.append(r.json())
        reasons = [a["rows"][0]["reasons"] for a in answers]
        flagged = [k for k, why in enumerate(reasons) if "drift:a" in why]
        assert flagged and flagged[0] > 40 and flagged[0] <= 40 + 10, flagged
        assert not any("drift:b" in why for why in reasons)
        last = answers[-1]
        assert last["rows"][0]["status"] != "good" and "drift" in last["alarms"]
        assert last["rows"][0]["flags"]["drift"] == ["a"]
        m = _metrics(client)
    key = (("feature", "a"), ("model", "tiny"), ("stream", "unit-1"))
    assert m[("softsensor_sensor_drifting", key)] == 1.0
    assert m[("softsensor_sensor_redundancy_ratio", key)] > 1.0
    other = (("feature", "b"), ("model", "tiny"), ("stream", "unit-1"))
    assert m[("softsensor_sensor_drifting", other)] == 0.0


def test_a_card_without_the_block_goes_without_the_test(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"stream": "unit-1", "records": [_row(0.0)]})
    assert r.status_code == 200
    names = {name for name, _ in _metrics(client)}
    assert "softsensor_sensor_redundancy_ratio" not in names


def _row(a: float) -> dict[str, Any]:
    return {"timestamp": "2026-01-01T00:00:00Z", "values": {"a": a, "b": 0.0, "q": 1.0}}


def test_the_test_state_travels_in_a_snapshot(registry_copy: Path, published: Published) -> None:
    """Another replica carries on from the saved baseline, average and flags."""
    root = _with_block(registry_copy, published.version)
    model = load_model(Registry(root), "tiny", published.version)

    def state() -> StreamState:
        from service.lab.bias import BiasConfig, BiasFilter

        return StreamState(
            "tiny", "u", BiasFilter(BiasConfig(1.0, 1.0)), new_monitors(model, 600, 64)
        )

    one, two = state(), state()
    assert one.monitors.redundancy is not None and two.monitors.redundancy is not None
    values = np.column_stack([np.r_[np.zeros(30), np.arange(20.0)], np.zeros(50)])
    raw = np.zeros((50, len(model.raw_signals)))
    raw[:, [model.raw_signals.index("a"), model.raw_signals.index("b")]] = values
    one.monitors.redundancy.observe(raw)
    load(two, save(one), same_version=True)
    saved, restored = one.monitors.redundancy.state(), two.monitors.redundancy.state()
    assert saved is not None and restored is not None and np.array_equal(saved, restored)
    assert two.monitors.redundancy.flagged[0] and not two.monitors.redundancy.flagged[1]
