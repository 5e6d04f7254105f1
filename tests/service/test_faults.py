"""Faults the service must ride out: broken model versions, a champion that is not there, and
sensors or an analyzer that misbehave. Real registry on disk, real onnxruntime, metrics read
the way Prometheus reads them."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.contracts.registry import Registry
from tests.service.conftest import Published, copy_version, make_settings, tiny_records

AUTH = {"authorization": "Bearer t0ken"}
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _metrics(client: TestClient) -> Metrics:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _nan_graph(width: int) -> bytes:
    """A well-formed ONNX graph of the right shape whose every estimate is NaN."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    w = helper.make_tensor("w", TensorProto.FLOAT, [width, 1], [float("nan")] * width)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "nan", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def _sqrt_graph(width: int, floor: float) -> bytes:
    """sqrt(x[:, 0] - floor): finite at the reference means (above ``floor``), NaN for
    plausible inputs below it, as a model with a numerical fault would be."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    w = helper.make_tensor("w", TensorProto.FLOAT, [width, 1], [1.0] + [0.0] * (width - 1))
    c = helper.make_tensor("c", TensorProto.FLOAT, [], [floor])
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["first"]),
        helper.make_node("Sub", ["first", "c"], ["shifted"]),
        helper.make_node("Sqrt", ["shifted"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "sqrt", [x], [y], [w, c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def write_broken_version(root: Path, source: str, version: str, fault: str) -> None:
    """Write ``version`` by hand (the registry's writer would refuse most of these) with one
    fault, and make it the champion."""
    src = Registry(root).version_dir("tiny", source)
    model = (src / "model.onnx").read_bytes()
    card = json.loads((src / "card.json").read_text(encoding="utf-8"))
    card["version"] = version
    if fault == "corrupt":  # bytes overwritten in the middle: not a protobuf onnxruntime reads
        third = len(model) // 3
        model = model[:third] + b"\xff" * third + model[2 * third :]
    elif fault == "truncated":
        model = model[: len(model) // 2]
    elif fault == "nan_output":
        model = _nan_graph(len(card["features"]))
    elif fault == "nan_below_mean":
        model = _sqrt_graph(len(card["features"]), card["reference"][0]["mean"] - 1.0)
    elif fault == "invalid_card":
        card["features"] = "every sensor there is"
    if fault != "wrong_sha256":
        card["onnx_sha256"] = hashlib.sha256(model).hexdigest()  # the card vouches for it
    else:
        card["onnx_sha256"] = "0" * 64
    directory = root / "tiny" / version
    directory.mkdir()
    (directory / "model.onnx").write_bytes(model)
    (directory / "card.json").write_text(json.dumps(card), encoding="utf-8")
    pointer = {"version": version, "previous": [source]}
    (root / "tiny" / "champion").write_text(json.dumps(pointer), encoding="utf-8")


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("corrupt", "onnxruntime cannot load"),
        ("truncated", "onnxruntime cannot load"),
        ("wrong_sha256", "sha256"),
        ("invalid_card", "not a valid model card"),
        ("nan_output", "not finite"),
    ],
)
def test_broken_new_version_is_refused_logged_counted_and_old_keeps_serving(
    registry_copy: Path,
    published: Published,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    reason: str,
) -> None:
    """Reload (explicit and by the watcher) refuses the version; v1 answers throughout."""
    settings = make_settings(registry_copy, tmp_path, admin_token="t0ken")
    records = tiny_records(published.data, 0, 3)
    app = create_app(settings)
    with TestClient(app) as c:
        write_broken_version(registry_copy, published.version, "v2", fault)
        with caplog.at_level(logging.ERROR, logger="softsensor"):
            r = c.post("/v1/models/tiny/reload", headers=AUTH)
            app.state.service.watch_once()  # the watcher sees the same champion: no recount
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "model_load_failed" and "v2" in r.json()["detail"]
        refusals = [
            rec.getMessage() for rec in caplog.records if "refused version v2" in rec.message
        ]
        assert len(refusals) == 1 and reason in refusals[0], refusals
        after = c.post("/v1/predict", json={"records": records})
        assert after.status_code == 200 and after.json()["model_version"] == published.version
        assert np.isfinite(after.json()["rows"][-1]["estimate"])
        m = _metrics(c)
        assert m[("softsensor_model_reload_refusals_total", (("model", "tiny"),))] == 1
        assert m[("softsensor_model_ready", (("model", "tiny"),))] == 1
        info = ("model", "tiny"), ("sha256", published_sha(published)), ("version", "v1")
        assert m[("softsensor_model_info", info)] == 1


def published_sha(published: Published) -> str:
    return Registry(published.root).verify("tiny", published.version).onnx_sha256


def test_missing_champion_at_start_up_is_not_ready_until_it_appears(
    registry_copy: Path, published: Published, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The pointer names v9, not in the registry: live, not ready, one clear log line; the
    watcher keeps looking and serves v9 as soon as it is written."""
    pointer = registry_copy / "tiny" / "champion"
    pointer.write_text(json.dumps({"version": "v9", "previous": ["v1"]}), encoding="utf-8")
    settings = make_settings(registry_copy, tmp_path, watch_interval_s=0.1)
    with caplog.at_level(logging.INFO, logger="softsensor"), TestClient(create_app(settings)) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").status_code == 503
        assert (
            c.post("/v1/predict", json={"records": tiny_records(published.data, 0, 3)}).status_code
            == 503
        )
        assert _metrics(c)[("softsensor_model_ready", (("model", "tiny"),))] == 0
        time.sleep(0.5)  # a few watcher passes: still one log line
        lines = [r.getMessage() for r in caplog.records if "not in registry" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "champion pointer names version v9" in lines[0] and "NOT READY" in lines[0]
        copy_version(registry_copy, published.version, "v9")
        deadline = time.monotonic() + 10
        while c.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "v9 was not picked up"
            time.sleep(0.05)
        r = c.post("/v1/predict", json={"records": tiny_records(published.data, 0, 3)})
        assert r.status_code == 200 and r.json()["model_version"] == "v9"
        assert _metrics(c)[("softsensor_model_ready", (("model", "tiny"),))] == 1


def test_frozen_out_of_range_and_silent_analyzer_are_flagged_and_measured(
    published: Published, tmp_path: Path
) -> None:
    """A stuck sensor, a wild value and an analyzer that stops: every row still gets a finite
    estimate, with flags saying what is wrong, and /metrics says it too."""
    settings = make_settings(published.root, tmp_path, frozen_after_s=120)
    t0 = time.time() - 600  # near now, so the wall-clock metrics mean something
    rows = []
    with TestClient(create_app(settings)) as c:
        for i in range(11):
            values = {
                "a": 10.0,  # stuck
                "b": 500.0 if i == 7 else float(i % 4),  # one wild value, valid range -100..100
                "q": 1.0 + 0.01 * i if i < 5 else None,  # the analyzer stops after 5 samples
            }
            record = {"timestamp": t0 + 60 * i, "values": values}
            r = c.post("/v1/predict", json={"stream": "unit-1", "records": [record]})
            assert r.status_code == 200, r.text
            rows.append(r.json()["rows"][0])
        assert all(np.isfinite(row["estimate_corrected"]) for row in rows)
        assert rows[-1]["flags"]["frozen"] == ["a"]
        assert rows[1]["flags"]["frozen"] == []  # unchanged for 60 s only
        assert [row["flags"]["imputed"] for row in rows] == [[]] * 5 + [["q"]] * 6
        assert rows[7]["flags"]["out_of_range"] == ["b"]
        assert all(row["flags"]["out_of_range"] == [] for i, row in enumerate(rows) if i != 7)
        lab = {"results": [{"sample_time": t0 + 240, "value": 1.05, "stream": "unit-1"}]}
        assert c.post("/v1/lab-results", json=lab).status_code == 200
        m = _metrics(c)

    def feature(name: str, key: str) -> float:
        return m[(name, (("feature", key), ("model", "tiny"), ("stream", "unit-1")))]

    # On the stream's own clock (its last row at t0 + 600): 'a' never moved after its first.
    assert feature("softsensor_feature_unchanged_seconds", "a") == 600
    assert feature("softsensor_feature_unchanged_seconds", "b") == 0  # moved at the last row
    assert feature("softsensor_feature_out_of_range_total", "ab") == 1  # (a + b) / 2 = 255
    assert m[("softsensor_imputed_values_total", (("model", "tiny"), ("signal", "q")))] == 6
    stream = (("model", "tiny"), ("stream", "unit-1"))
    assert m[("softsensor_lab_result_age_seconds", stream)] == 360  # sampled at t0 + 240
    assert m[("softsensor_alarm", (("alarm", "frozen"), *stream))] == 1


def test_analyzer_age_survives_a_restart(published: Published, tmp_path: Path) -> None:
    """The outage alarm watches the age of the last lab result: a restart must not blank it
    (it is read back from the store), or an outage spanning a restart would go unseen."""
    settings = make_settings(published.root, tmp_path)
    t0 = time.time() - 600
    with TestClient(create_app(settings)) as c:
        for i in range(4):
            record = {"timestamp": t0 + 60 * i, "values": {"a": 1.0 + i, "b": 2.0, "q": 1.0}}
            assert c.post("/v1/predict", json={"records": [record]}).status_code == 200
        lab = {"results": [{"sample_time": t0 + 120, "value": 1.25}]}
        assert c.post("/v1/lab-results", json=lab).status_code == 200
    time.sleep(0.2)
    with TestClient(create_app(settings)) as c:
        m = _metrics(c)
    stream = (("model", "tiny"), ("stream", "default"))
    assert m[("softsensor_lab_value", stream)] == 1.25
    # data time: the stream's newest prediction (t0 + 180) after the newest sample (t0 + 120)
    assert m[("softsensor_lab_result_age_seconds", stream)] == 60


def test_a_model_fault_is_the_same_500_on_v1_and_v2(
    registry_copy: Path, published: Published, tmp_path: Path
) -> None:
    """A model that loads (finite at the reference means) but gives NaN for plausible inputs
    is the server's fault on both protocols: the same status and error code, not a 503 that
    tells the client to retry, and not a 422 that blames the client's values."""
    write_broken_version(registry_copy, published.version, "v2", "nan_below_mean")
    with TestClient(create_app(make_settings(registry_copy, tmp_path))) as c:
        card = c.get("/v1/models").json()[0]["card"]
        assert card["version"] == "v2"
        low = card["reference"][0]["mean"] - 5.0  # inside a's valid range, below the floor
        records = tiny_records(published.data, 0, 3)
        for rec in records:
            rec["values"]["a"] = low
        v1 = c.post("/v1/predict", json={"records": records})
        row = [low, *[ref["mean"] for ref in card["reference"][1:]]]
        v2 = c.post(
            "/v2/models/tiny/infer",
            json={
                "inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}]
            },
        )
    assert v1.status_code == v2.status_code == 500, (v1.text, v2.text)
    assert v1.json()["error"] == v2.json()["error"] == "model_fault"
    assert "non-finite" in v1.json()["detail"] and "non-finite" in v2.json()["detail"]


def _write_unloadable(root: Path, source: str, version: str) -> None:
    """A registered ``version`` whose card vouches for bytes onnxruntime cannot load."""
    src = Registry(root).version_dir("tiny", source)
    model = (src / "model.onnx").read_bytes()
    third = len(model) // 3
    model = model[:third] + b"\xff" * third + model[2 * third :]
    card = json.loads((src / "card.json").read_text(encoding="utf-8"))
    card["version"] = version
    card["onnx_sha256"] = hashlib.sha256(model).hexdigest()
    files = {"model.onnx": model, "card.json": json.dumps(card).encode()}
    Registry(root).write_version("tiny", version, files)


def test_promote_to_a_version_that_cannot_load_leaves_the_champion(
    registry_copy: Path, published: Published, tmp_path: Path
) -> None:
    """Promote (API) loads the version and runs a test inference before the pointer moves:
    refused with 409 naming the reason, the old champion keeps serving, and a restart is
    still ready. Before, the pointer moved and the restarted service was not ready."""
    _write_unloadable(registry_copy, published.version, "v2")
    settings = make_settings(registry_copy, tmp_path, admin_token="t0ken")
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/models/tiny/promote", json={"version": "v2"}, headers=AUTH)
        assert r.status_code == 409, r.text
        assert "v2" in r.json()["detail"] and "onnxruntime cannot load" in r.json()["detail"]
        assert (
            c.post("/v1/predict", json={"records": tiny_records(published.data, 0, 3)}).json()[
                "model_version"
            ]
            == published.version
        )
    assert Registry(registry_copy).champion("tiny") == published.version
    with TestClient(create_app(settings)) as c:
        assert c.get("/v2/health/ready").status_code == 200


def test_cli_promote_to_a_version_that_cannot_load_is_refused(
    registry_copy: Path, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli.main import main

    _write_unloadable(registry_copy, published.version, "v2")
    argv = ["models", "promote", "--registry", str(registry_copy), "tiny", "v2"]
    assert main(argv) == 1
    assert "not promoted" in capsys.readouterr().err
    assert Registry(registry_copy).champion("tiny") == published.version


def test_rollback_skips_a_previous_version_that_cannot_load(
    registry_copy: Path, published: Published, tmp_path: Path
) -> None:
    """v1 -> v2 (unloadable, pointer written by hand as an older release would have) -> v3:
    rollback from v3 passes over v2 to v1, the newest previous version that loads."""
    _write_unloadable(registry_copy, published.version, "v2")
    copy_version(registry_copy, published.version, "v3")
    pointer = {"version": "v3", "previous": ["v2", published.version]}
    (registry_copy / "tiny" / "champion").write_text(json.dumps(pointer), encoding="utf-8")
    settings = make_settings(registry_copy, tmp_path, admin_token="t0ken")
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/models/tiny/rollback", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == published.version
    assert Registry(registry_copy).champion("tiny") == published.version
