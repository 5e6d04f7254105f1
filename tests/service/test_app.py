"""The HTTP service through TestClient: predictions, lab results, metrics, errors, reloads."""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.contracts.registry import Registry
from tests.service.conftest import (
    Published,
    copy_version,
    expected_estimates,
    make_settings,
    tiny_records,
)


def _metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_batch_estimates_equal_the_rows_training_assembled(
    client: TestClient, published: Published
) -> None:
    """Contract: rows the service assembles from records are the rows training used."""
    records = tiny_records(published.data)
    r = client.post("/v1/predict", json={"records": records})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny" and body["model_version"] == published.version
    expected = expected_estimates(published)
    rows = body["rows"]
    assert [row["flags"]["missing_history"] for row in rows[:3]] == [True, True, False]
    for t, value in expected.items():
        assert rows[t]["estimate"] == pytest.approx(value, abs=1e-6)
    first = rows[5]
    assert first["estimate_corrected"] == pytest.approx(first["estimate"] + body["bias"])
    lo, hi = first["interval"]
    assert lo < first["estimate_corrected"] < hi


def test_stateful_stream_gives_the_same_estimates_row_by_row(
    client: TestClient, published: Published
) -> None:
    """One record at a time under a stream id equals the batch: history is remembered, and
    a reading not sent (null) is carried forward from the stream's last one."""
    records = tiny_records(published.data, 0, 12)
    records[4]["values"]["b"] = None
    records[7]["values"]["a"] = records[8]["values"]["a"] = None
    batch = client.post("/v1/predict", json={"records": records}).json()["rows"]
    single = []
    for rec in records:
        r = client.post("/v1/predict", json={"stream": "unit-1", "records": [rec]})
        assert r.status_code == 200, r.text
        single.append(r.json()["rows"][0])
    for a, b in zip(batch, single, strict=True):
        assert a["estimate"] == pytest.approx(b["estimate"], abs=1e-9)
        assert a["flags"] == b["flags"]
    assert single[8]["flags"]["imputed"] == ["a"]
    back = client.post("/v1/predict", json={"stream": "unit-1", "records": [records[3]]})
    assert back.status_code == 409 and "stream 'unit-1'" in back.json()["detail"]


def test_columnar_layout_and_imputation(client: TestClient, published: Published) -> None:
    records = tiny_records(published.data, 0, 6)
    columns = {k: [r["values"][k] for r in records] for k in ("a", "b", "q")}
    stamps = [r["timestamp"] for r in records]
    by_rec = client.post("/v1/predict", json={"records": records}).json()["rows"]
    by_col = client.post("/v1/predict", json={"timestamp": stamps, "columns": columns})
    assert by_col.status_code == 200, by_col.text
    assert by_col.json()["estimate"] == pytest.approx([r["estimate"] for r in by_rec])
    sent = [datetime.fromisoformat(str(t)) for t in stamps]
    assert [datetime.fromisoformat(t) for t in by_col.json()["timestamp"]] == sent
    columns["b"][4] = None
    body = client.post("/v1/predict", json={"timestamp": stamps, "columns": columns}).json()
    flagged = {f["row"]: f for f in body["flags"]}
    assert flagged[4]["imputed"] == ["b"] and not flagged[4]["missing_history"]
    assert set(flagged) == {0, 1, 4}  # rows 0 and 1 lack lag history


def test_out_of_range_is_flagged_not_refused(client: TestClient, published: Published) -> None:
    rec = tiny_records(published.data, 0, 1)[0]
    rec["values"]["a"] = 500.0
    r = client.post("/v1/predict", json={"records": [rec]})
    assert r.status_code == 200
    assert r.json()["rows"][0]["flags"]["out_of_range"] == ["a"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"records": [{"values": {"a": 1.0, "b": 2.0, "q": 1.0, "zz": 1.0}}]}, 422, "zz"),
        ({"records": [{"values": {"a": 1.0, "q": 1.0}}]}, 422, "missing signals ['b']"),
        # (a text value is a digital state, a bad value answered with its status: see
        # tests/service/test_input_quality.py; a list or an object is no value at all)
        ({"records": [{"values": {"a": [1.0], "b": 2.0, "q": 1.0}}]}, 422, "records.0.values.a"),
        ({"records": [{"values": {"a": True, "b": 2.0, "q": 1.0}}]}, 422, "records.0.values.a"),
        ({"records": []}, 422, "no rows"),
        ({"records": [{"values": {}}], "columns": {}}, 422, "either 'records' or 'columns'"),
        ({"model": "nope", "records": [{"values": {"a": 1.0}}]}, 404, "nope"),
        (
            {
                "timestamp": [1.0, 1.0],
                "columns": {"a": [1.0, 1.0], "b": [1.0, 1.0], "q": [1.0, 1.0]},
            },
            422,
            "timestamp[1]: duplicated",
        ),
        (
            {
                "timestamp": [2.0, 1.0],
                "columns": {"a": [1.0, 1.0], "b": [1.0, 1.0], "q": [1.0, 1.0]},
            },
            422,
            "earlier than the row before",
        ),
        ({"columns": {"a": [1.0, 2.0], "b": [1.0], "q": [1.0]}}, 422, "equal lengths"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    client: TestClient, body: dict[str, object], status: int, fragment: str
) -> None:
    r = client.post("/v1/predict", json=body)
    assert r.status_code == status, r.text
    assert fragment in json.dumps(r.json())
    assert r.json()["error"]


def test_nan_malformed_and_oversized_bodies(published: Published, tmp_path: Path) -> None:
    settings = make_settings(published.root, tmp_path, max_body_bytes=2048, max_batch_rows=3)
    with TestClient(create_app(settings)) as c:
        nan = '{"records": [{"values": {"a": NaN, "b": 1.0, "q": 1.0}}]}'
        r = c.post("/v1/predict", content=nan, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "records.0.values.a" in r.text
        r = c.post("/v1/predict", content="{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        r = c.post("/v1/predict", content="x" * 5000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        rows = tiny_records(published.data, 0, 4)
        r = c.post("/v1/predict", json={"records": rows})
        assert r.status_code == 413 and "limit of 3" in r.text


def test_lab_results_are_stored_matched_and_idempotent(
    client: TestClient, published: Published, tmp_path: Path
) -> None:
    records = tiny_records(published.data, 0, 30)
    est = client.post("/v1/predict", json={"records": records}).json()["rows"]
    t = records[20]["timestamp"]
    lab = {"results": [{"sample_time": t, "value": est[20]["estimate"] + 0.05}]}
    r = client.post("/v1/lab-results", json=lab)
    assert r.status_code == 200, r.text
    outcome = r.json()["outcomes"][0]
    assert outcome["stored"] and outcome["accepted"], outcome
    assert outcome["residual"] == pytest.approx(0.05, abs=1e-6)
    assert 0 < outcome["bias"] <= 0.05
    again = client.post("/v1/lab-results", json=lab).json()["outcomes"][0]
    assert not again["stored"] and again["bias"] == outcome["bias"]
    conflict = client.post("/v1/lab-results", json={"results": [{"sample_time": t, "value": 9.0}]})
    assert conflict.status_code == 409
    stored = client.get("/v1/lab-results").json()
    assert len(stored) == 1 and stored[0]["value"] == lab["results"][0]["value"]
    db = tmp_path / "state" / "lab_results.sqlite"
    con = sqlite3.connect(db)
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert con.execute("select count(*) from lab_results").fetchone()[0] == 1
    con.close()
    after = client.post("/v1/predict", json={"records": records[:3]}).json()
    assert after["bias"] == pytest.approx(outcome["bias"])
    m = _metrics(client)
    key = (("model", "tiny"), ("stream", "default"))  # no stream named: the default one
    assert m[("softsensor_bias", key)] == pytest.approx(outcome["bias"])
    assert m[("softsensor_lab_residual", key)] == pytest.approx(0.05, abs=1e-6)
    assert m[("softsensor_lab_value", key)] == lab["results"][0]["value"]
    last = after["rows"][-1]["estimate_corrected"]
    assert m[("softsensor_estimate", key)] == pytest.approx(last)


def test_unmatched_lab_result_is_stored_but_not_used(client: TestClient) -> None:
    r = client.post("/v1/lab-results", json={"results": [{"sample_time": 0.0, "value": 1.0}]})
    outcome = r.json()["outcomes"][0]
    assert outcome["stored"] and not outcome["accepted"] and outcome["estimate"] is None


def test_metrics_follow_prometheus_and_psi_matches_numpy(
    client: TestClient, published: Published
) -> None:
    """/metrics parses with prometheus-client's parser; PSI equals a plain numpy computation."""
    records = tiny_records(published.data)
    client.post("/v1/predict", json={"stream": "unit-1", "records": records})
    m = _metrics(client)
    card = Registry(published.root).verify("tiny", published.version)
    ref = card.reference[0]
    # the first two rows lack lag history (padded): they are not fed to the drift monitor
    values = np.array([r["values"]["a"] for r in records[2:]])
    edges = np.asarray(ref.bin_edges)
    window = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0]
    p_ref = np.maximum(np.asarray(ref.counts) / sum(ref.counts), 1e-4)
    p_win = np.maximum(window / window.sum(), 1e-4)
    expected = float(np.sum((p_win - p_ref) * np.log(p_win / p_ref)))
    labels = (("feature", card.features[0].name), ("model", "tiny"), ("stream", "unit-1"))
    assert card.features[0].name == "a"
    assert m[("softsensor_feature_psi", labels)] == pytest.approx(expected, rel=1e-9)
    assert m[("softsensor_predicted_rows_total", (("model", "tiny"),))] == len(records)
    # on the stream's own clock: 'a' changed at the last record, 'b' too
    assert m[("softsensor_feature_unchanged_seconds", labels)] == 0.0
    last = datetime.fromisoformat(str(records[-1]["timestamp"])).timestamp()
    clock = ("softsensor_stream_data_time_seconds", (("model", "tiny"), ("stream", "unit-1")))
    assert m[clock] == last
    alarms = {k[1][0][1]: v for k, v in m.items() if k[0] == "softsensor_alarm"}
    assert alarms == {"frozen": 0.0, "drift": 0.0, "residual": 0.0, "analyzer_silent": 0.0}
    key = (
        "softsensor_model_info",
        (("model", "tiny"), ("sha256", card.onnx_sha256), ("version", published.version)),
    )
    assert m[key] == 1.0
    ok = (
        "softsensor_http_requests_total",
        (("endpoint", "/v1/predict"), ("method", "POST"), ("status", "200")),
    )
    assert m[ok] >= 1


def test_open_inference_protocol_v2(client: TestClient, published: Published) -> None:
    """Health, metadata and infer follow the v2 shapes; infer equals /v1/predict."""
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2/models/tiny").json()
    assert meta["name"] == "tiny" and meta["versions"] == [published.version]
    (inp,) = meta["inputs"]
    assert inp["datatype"] == "FP32" and inp["shape"][0] == -1
    ds = published.dataset
    card = Registry(published.root).verify("tiny", published.version)
    cols = [ds.feature_names.index(f.name) for f in card.features]
    x = ds.test.x[:4, cols]
    body = {
        "id": "42",
        "inputs": [
            {
                "name": inp["name"],
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ],
    }
    r = client.post("/v2/models/tiny/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "tiny" and out["id"] == "42"
    (tensor,) = out["outputs"]
    assert tensor["shape"] == [4, 1] and tensor["datatype"] == "FP32"
    expected = expected_estimates(published)
    assert tensor["data"] == pytest.approx([expected[int(t)] for t in ds.test.index[:4]], abs=1e-6)
    bad = dict(body, inputs=[dict(body["inputs"][0], shape=[4, 99])])  # type: ignore[arg-type]
    r = client.post("/v2/models/tiny/infer", json=bad)
    assert r.status_code == 400 and "shape" in r.json()["error"] + str(r.json()["detail"])
    assert client.get("/v2/models/nope").status_code == 404


def test_not_ready_without_a_champion(tmp_path: Path) -> None:
    """An empty registry: live, not ready, and predict answers 503."""
    settings = make_settings(tmp_path / "empty", tmp_path)
    with TestClient(create_app(settings)) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").status_code == 503
        r = c.post("/v1/predict", json={"records": [{"values": {"a": 1.0}}]})
        assert r.status_code == 503


def test_admin_endpoints_need_the_token(published: Published, tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(published.root, tmp_path))) as c:
        assert c.post("/v1/models/tiny/reload").status_code == 403
    empty = make_settings(published.root, tmp_path, admin_token="  ")
    assert empty.admin_token is None  # an empty token disables, it does not open
    with TestClient(create_app(empty)) as c:
        r = c.post("/v1/models/tiny/reload", headers={"authorization": "Bearer "})
        assert r.status_code == 403
    settings = make_settings(published.root, tmp_path, admin_token="s3cret")
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/models/tiny/reload").status_code == 401
        bad = {"authorization": "Bearer wrong"}
        assert c.post("/v1/models/tiny/reload", headers=bad).status_code == 401
        good = {"authorization": "Bearer s3cret"}
        r = c.post("/v1/models/tiny/reload", headers=good)
        assert r.status_code == 200 and r.json()["version"] == published.version
        assert "s3cret" not in c.get("/metrics").text


def test_hot_reload_swaps_good_versions_and_refuses_broken_ones(
    registry_copy: Path, published: Published, tmp_path: Path
) -> None:
    v1 = published.version
    registry = copy_version(registry_copy, v1, "v2")
    card = json.loads((registry.version_dir("tiny", v1) / "card.json").read_text())
    settings = make_settings(registry_copy, tmp_path, admin_token="t")
    auth = {"authorization": "Bearer t"}
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/models/tiny/promote", json={"version": "v2"}, headers=auth)
        assert r.status_code == 200 and r.json()["version"] == "v2"
        assert (
            c.post("/v1/predict", json={"records": tiny_records(published.data, 0, 3)}).json()[
                "model_version"
            ]
            == "v2"
        )
        # a broken version: copied, then its model bytes corrupted on disk
        broken = registry_copy / "tiny" / "v3"
        shutil.copytree(registry.version_dir("tiny", v1), broken)
        card["version"] = "v3"
        (broken / "card.json").chmod(0o644)
        (broken / "card.json").write_text(json.dumps(card))
        (broken / "model.onnx").chmod(0o644)
        (broken / "model.onnx").write_bytes(b"not a model")
        (registry_copy / "tiny" / "champion").write_text('{"version": "v3", "previous": []}')
        r = c.post("/v1/models/tiny/reload", headers=auth)
        assert r.status_code >= 400 and "v3" in r.text
        after = c.post("/v1/predict", json={"records": tiny_records(published.data, 0, 3)})
        assert after.status_code == 200 and after.json()["model_version"] == "v2"
        m = _metrics(c)
        assert m[("softsensor_model_reload_refusals_total", (("model", "tiny"),))] == 1


def test_lone_sample_equals_a_window_of_its_copies(
    client: TestClient, published: Published
) -> None:
    """The one-row shortcut gives what a window repeating that row gives."""
    rec = tiny_records(published.data, 10, 11)[0]
    lone = client.post("/v1/predict", json={"records": [{"values": rec["values"]}]}).json()
    copies = [{"timestamp": float(i), "values": rec["values"]} for i in range(3)]
    window = client.post("/v1/predict", json={"records": copies}).json()
    assert lone["rows"][0]["estimate"] == pytest.approx(window["rows"][2]["estimate"], abs=1e-9)
    assert lone["rows"][0]["flags"]["missing_history"]


def test_lab_results_listing_filters_by_time(client: TestClient) -> None:
    for t in (100.0, 200.0, 300.0):
        client.post("/v1/lab-results", json={"results": [{"sample_time": t, "value": 1.0}]})
    assert len(client.get("/v1/lab-results", params={"since": "200"}).json()) == 2
    iso = "1970-01-01T00:04:10Z"
    assert [r["value"] for r in client.get("/v1/lab-results", params={"since": iso}).json()] == [
        1.0
    ]
    bad = client.get("/v1/lab-results", params={"since": "yesterday"})
    assert bad.status_code == 422 and "since" in str(bad.json()["detail"])


def test_openapi_schema_has_no_dangling_references(client: TestClient) -> None:
    """Every $ref in /openapi.json resolves, including the hand-read predict bodies."""
    import re

    spec = client.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    refs = set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", json.dumps(spec)))
    assert {"PredictRequest", "PredictResponse", "ColumnarPredictResponse", "Record"} <= refs
    assert sorted(r for r in refs if r not in components) == []
    examples = components["PredictRequest"]["examples"]
    assert examples and "records" in examples[0]


def test_the_startup_heap_is_out_of_the_collectors_reach_while_serving(
    published: Published, tmp_path: Path
) -> None:
    """A full collection must not scan the app and its models on every run: at 16 busy
    connections that took 50-70 ms about once a second, every request in flight stalled."""
    app = create_app(make_settings(published.root, tmp_path))
    with TestClient(app) as client:
        assert (
            client.post(
                "/v1/predict", json={"records": tiny_records(published.data, 0, 1)}
            ).status_code
            == 200
        )
        assert gc.get_freeze_count() > 0
        assert not any(o is app.state.service for o in gc.get_objects())  # frozen: not scanned
    assert gc.get_freeze_count() == 0  # thawed when the app stops
    assert any(o is app.state.service for o in gc.get_objects())
