"""The lab workflow as a DCS lab entry runs it, over HTTP on a real SQLite file: a result's
delay (result time - sample time) checked against the analyzer's declared window, a wrong
value voided by a named admin with a reason (kept in the audit trail, the bias recomputed, the
same after a restart of a real server process), promote and rollback recorded with who and
why, and the CSV export read back by the retraining job as it reads the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.contracts.registry import Registry
from tests.service.conftest import (
    Published,
    copy_version,
    make_settings,
    start_server,
    tiny_records,
)
from tests.service.feeding import feed
from training.data import load_dataset
from training.retrain import read_lab_results
from training.spec import load_spec

ALICE, BOB, OLD = "tok-alice-8f2d61c0a9", "tok-bob-3c7e90b15d", "tok-old-single-5a1e"
TOKENS = [{"name": "alice", "token": ALICE}, {"name": "bob", "token": BOB}]
HOUR = 3600.0


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _labs(records: list[dict[str, Any]], estimates: list[float], rows: range) -> list[Any]:
    """Lab results 0.2 above the estimate, each known an hour after its sample."""
    out = []
    for i in rows:
        t = pd.Timestamp(records[i]["timestamp"])
        result_time = (t + pd.Timedelta(hours=1)).isoformat()
        out.append(
            {
                "sample_time": records[i]["timestamp"],
                "value": estimates[i] + 0.2 + 0.01 * i,
                "stream": "unit-1",
                "result_time": result_time,
            }
        )
    return out


def _bias(client: Any, record: dict[str, Any]) -> float:
    r = client.post("/v1/predict", json={"stream": "unit-1", "records": [record]})
    assert r.status_code == 200, r.text
    bias: float = r.json()["bias"]
    return bias


def test_a_delay_outside_the_analyzers_window_is_refused_by_field(
    published: Published, registry_copy: Path, tmp_path: Path
) -> None:
    """Result before sample, or later than the declared maximum: 422 naming the field and the
    reason, nothing stored; a card may declare its analyzer's own window."""
    records = tiny_records(published.data, 0, 10)
    with TestClient(create_app(make_settings(registry_copy, tmp_path))) as c:
        est = feed(c, "unit-1", records)
        lab = _labs(records, est, range(5, 6))[0]
        early = lab | {"result_time": "2026-01-01T00:04:00Z"}  # before the 00:05 sample
        r = c.post("/v1/lab-results", json={"results": [early]})
        assert r.status_code == 422, r.text
        assert "results[0].result_time" in r.text and "before" in r.text
        late = lab | {"result_time": "2026-01-03T00:05:00Z"}  # two days: above 86400 s
        r = c.post("/v1/lab-results", json={"results": [late]})
        assert r.status_code == 422 and "86400" in r.text, r.text
        assert c.get("/v1/lab-results").json() == []
        r = c.post("/v1/lab-results", json={"results": [lab]})
        assert r.status_code == 200 and r.json()["outcomes"][0]["accepted"], r.text
        (stored,) = c.get("/v1/lab-results").json()
        assert stored["result_time"] == "2026-01-01T01:05:00Z"
    # a version whose card declares the lab's turnaround: 30 min .. 4 h
    registry = copy_version(registry_copy, "v1", "v2")
    card_path = registry.version_dir("tiny", "v2") / "card.json"
    card = json.loads(card_path.read_text())
    card["target"]["lab_delay"] = {"min_s": 1800.0, "max_s": 4 * HOUR}
    card_path.chmod(0o644)
    card_path.write_text(json.dumps(card))
    registry.promote("tiny", "v2")
    with TestClient(create_app(make_settings(registry_copy, tmp_path / "v2"))) as c:
        est = feed(c, "unit-1", records)
        lab = _labs(records, est, range(6, 7))[0]
        quick = lab | {"result_time": "2026-01-01T00:16:00Z"}  # 10 min: below 30 min
        r = c.post("/v1/lab-results", json={"results": [quick]})
        assert r.status_code == 422 and "1800" in r.text and "result_time" in r.text, r.text
        slow = lab | {"result_time": "2026-01-01T05:06:00Z"}  # 5 h: above 4 h
        assert c.post("/v1/lab-results", json={"results": [slow]}).status_code == 422
        assert c.post("/v1/lab-results", json={"results": [lab]}).status_code == 200


def test_void_by_a_named_admin_recomputes_the_bias_and_is_audited(
    published: Published, registry_copy: Path, tmp_path: Path
) -> None:
    records = tiny_records(published.data, 0, 30)
    settings = make_settings(registry_copy, tmp_path / "a", admin_tokens=TOKENS)
    with TestClient(create_app(settings)) as c:
        est = feed(c, "unit-1", records[:20])
        labs = _labs(records, est, range(5, 15))
        assert c.post("/v1/lab-results", json={"results": labs}).status_code == 200
        wrong = labs[4]
        body = {"stream": "unit-1", "sample_time": wrong["sample_time"], "reason": "swapped"}
        assert c.post("/v1/lab-results/void", json=body).status_code in (401, 403)
        assert c.post("/v1/lab-results/void", json=body, headers=_auth("x")).status_code == 401
        no_reason = {k: v for k, v in body.items() if k != "reason"}
        r = c.post("/v1/lab-results/void", json=no_reason, headers=_auth(BOB))
        assert r.status_code == 422 and "reason" in r.text
        r = c.post("/v1/lab-results/void", json=body, headers=_auth(BOB))
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["voided_by"] == "bob" and answer["reason"] == "swapped"
        assert answer["value"] == wrong["value"]
        again = c.post("/v1/lab-results/void", json=body, headers=_auth(BOB))
        assert again.status_code == 404, again.text
        bias_after = _bias(c, records[20])
        assert answer["bias"] == pytest.approx(bias_after)
        listed = c.get("/v1/lab-results", params={"limit": 100}).json()
        assert wrong["sample_time"].replace("Z", "") not in [s["sample_time"][:19] for s in listed]
        assert len(listed) == 9
        assert c.get("/v1/audit").status_code in (401, 403)
        audit = c.get("/v1/audit", headers=_auth(ALICE)).json()
        (event,) = [e for e in audit if e["action"] == "void"]
        assert (event["action"], event["actor"], event["reason"]) == ("void", "bob", "swapped")
        assert event["stream"] == "unit-1" and event["value"] == wrong["value"]
    # a service that never had the voided value
    with TestClient(create_app(make_settings(registry_copy, tmp_path / "b"))) as c:
        est_b = feed(c, "unit-1", records[:20])
        assert est_b == est
        kept = [lab for lab in labs if lab is not wrong]
        assert c.post("/v1/lab-results", json={"results": kept}).status_code == 200
        assert _bias(c, records[20]) == bias_after


def test_promote_and_rollback_record_who_and_why(registry_copy: Path, tmp_path: Path) -> None:
    """Named tokens and the single old one (named ``admin``): each change in the registry's
    history with its actor and reason, listed in the audit trail."""
    copy_version(registry_copy, "v1", "v2")
    settings = make_settings(registry_copy, tmp_path, admin_tokens=TOKENS, admin_token=OLD)
    with TestClient(create_app(settings)) as c:
        r = c.post(
            "/v1/models/tiny/promote",
            json={"version": "v2", "reason": "retrained on March data"},
            headers=_auth(ALICE),
        )
        assert r.status_code == 200, r.text
        r = c.post(
            "/v1/models/tiny/rollback", json={"reason": "operators saw a step"}, headers=_auth(OLD)
        )
        assert r.status_code == 200, r.text
        assert c.post("/v1/models/tiny/rollback", headers=_auth(BOB)).status_code == 409
        audit = c.get("/v1/audit", params={"model": "tiny"}, headers=_auth(BOB)).json()
    history = Registry(registry_copy).history("tiny")
    assert [(h.action, h.version, h.previous, h.by, h.reason) for h in history] == [
        ("promote", "v1", None, "softsensor train", "the first version"),
        ("promote", "v2", "v1", "alice", "retrained on March data"),
        ("rollback", "v1", "v2", "admin", "operators saw a step"),
    ]
    assert [(e["action"], e["actor"], e["version"]) for e in audit] == [
        ("rollback", "admin", "v1"),
        ("promote", "alice", "v2"),
        ("promote", "softsensor train", "v1"),
    ]


def test_the_csv_export_is_what_retraining_reads(
    published: Published, registry_copy: Path, tmp_path: Path
) -> None:
    """Export -> ``retrain --lab-results`` reads the same labels as from the store itself,
    the voided result in neither, and the dataset built from each is the same."""
    records = tiny_records(published.data, 0, 30)
    settings = make_settings(registry_copy, tmp_path, admin_tokens=TOKENS)
    with TestClient(create_app(settings)) as c:
        est = feed(c, "unit-1", records[:25])
        labs = _labs(records, est, range(3, 20))
        labs.append({"sample_time": records[21]["timestamp"], "value": 500.0, "stream": "unit-1"})
        assert c.post("/v1/lab-results", json={"results": labs}).status_code == 200
        body = {"stream": "unit-1", "sample_time": labs[2]["sample_time"], "reason": "typo"}
        assert c.post("/v1/lab-results/void", json=body, headers=_auth(ALICE)).status_code == 200
        r = c.get("/v1/lab-results", params={"format": "csv", "limit": 10_000})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert c.get("/v1/lab-results", params={"format": "xml"}).status_code == 422
    exported = tmp_path / "labs.csv"
    exported.write_bytes(r.content)
    from_csv = read_lab_results(exported, "tiny")
    from_store = read_lab_results(settings.store_url, "tiny")
    assert from_csv is not None and from_store is not None
    pd.testing.assert_frame_equal(from_csv, from_store)
    assert len(from_csv) == 16  # 17 results, one voided; the out-of-range one is no label
    spec = load_spec(published.root.parent / "tiny.yaml")
    a = load_dataset(spec, published.data, lab_results=from_csv)
    b = load_dataset(spec, published.data, lab_results=from_store)
    assert a.sha256 == b.sha256
    assert (a.train.y == b.train.y).all() and (a.test.y == b.test.y).all()


@pytest.mark.slow
def test_void_then_restart_gives_the_bias_of_a_replay_without_it(
    published: Published, tmp_path: Path
) -> None:
    """A real server process on SQLite: results posted, one voided, the process stopped and
    started again: its bias is that of a service that never saw the voided value."""
    records = tiny_records(published.data, 0, 30)
    env = {"SOFTSENSOR_ADMIN_TOKENS": json.dumps(TOKENS)}
    state, log = tmp_path / "state", tmp_path / "server.log"
    server = start_server(published.root, state, log, env)
    try:
        server.wait_until("/v2/health/ready")
        with httpx.Client(base_url=server.url, timeout=10) as c:
            est = feed(c, "unit-1", records[:20])
            labs = _labs(records, est, range(5, 15))
            assert c.post("/v1/lab-results", json={"results": labs}).status_code == 200
            body = {"stream": "unit-1", "sample_time": labs[3]["sample_time"], "reason": "typo"}
            r = c.post("/v1/lab-results/void", json=body, headers=_auth(ALICE))
            assert r.status_code == 200, r.text
            voided_bias = r.json()["bias"]
    finally:
        server.stop()
    restarted = start_server(published.root, state, log, env)
    try:
        restarted.wait_until("/v2/health/ready")
        with httpx.Client(base_url=restarted.url, timeout=10) as c:
            after_restart = _bias(c, records[20])
            audit = c.get("/v1/audit", headers=_auth(BOB)).json()
    finally:
        restarted.stop()
    assert [(e["actor"], e["reason"]) for e in audit if e["action"] == "void"] == [
        ("alice", "typo")
    ]
    with TestClient(create_app(make_settings(published.root, tmp_path / "never"))) as c:
        feed(c, "unit-1", records[:20])
        kept = [lab for i, lab in enumerate(labs) if i != 3]
        assert c.post("/v1/lab-results", json={"results": kept}).status_code == 200
        never = _bias(c, records[20])
    assert after_restart == never == pytest.approx(voided_bias)


def test_models_show_prints_the_card_and_the_history(registry_copy: Path) -> None:
    """``softsensor models show``: the card as people read it (card.md) and every champion
    change with who and why, the command line's own promote included."""
    import subprocess
    import sys

    copy_version(registry_copy, "v1", "v2")
    Registry(registry_copy).promote("tiny", "v1")

    def cli(*args: str) -> str:
        cmd = [sys.executable, "-m", "service.cli", "models", *args]
        cmd += ["--registry", str(registry_copy)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("promote", "tiny", "v2", "--by", "carol", "--reason", "better on the March window")
    shown = cli("show", "tiny")
    card_md = (registry_copy / "tiny" / "v2" / "card.md").read_text(encoding="utf-8")
    assert card_md.strip().splitlines()[0] in shown
    assert "carol" in shown and "better on the March window" in shown
    assert "promote" in shown and "v2" in shown
    older = cli("show", "tiny", "--version", "v1")
    assert "v1" in older and "carol" in older  # the model's history, whichever version shown
