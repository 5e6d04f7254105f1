"""Row status: the rules table (DeltaV's neural block as the reference), and the service
applying it to what it serves: clamped estimates, inputs outside the training range."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.contracts.registry import Registry
from service.scoring.status import (
    BAD,
    GOOD,
    UNCERTAIN,
    RowEvidence,
    SignalEvidence,
    bad_outside_limit,
    decide,
)
from tests.service.conftest import Published, copy_version, make_settings, tiny_records

SIGNALS = ("T03", "T08", "T13", "F")


def _one_row(**flags: Any) -> tuple[str, list[str]]:
    """The status of one row of a 4-signal model with the given evidence."""

    def per(name: str) -> np.ndarray:
        return np.array([[s in flags.get(name, ()) for s in SIGNALS]])

    signals = [
        SignalEvidence("out_of_range", SIGNALS, per("out_of_range"), BAD),
        SignalEvidence("imputed", SIGNALS, per("imputed")),
        SignalEvidence("frozen", SIGNALS, per("frozen")),
        SignalEvidence("outside_training", SIGNALS, per("outside"), bad_above=bad_outside_limit(4)),
    ]
    rows = [
        RowEvidence(r, np.array([r in flags.get("rows", ())])) for r in ("t2", "spe", "clamped")
    ]
    statuses = decide(1, signals, rows)
    return statuses.name(0), statuses.reasons.get(0, [])


@pytest.mark.parametrize(
    ("evidence", "status", "reasons"),
    [
        ({}, "good", []),
        ({"outside": ("T03",)}, "uncertain", ["outside_training:T03"]),
        ({"outside": ("T03", "T08")}, "bad", ["outside_training:T03", "outside_training:T08"]),
        ({"out_of_range": ("F",)}, "bad", ["out_of_range:F"]),
        ({"imputed": ("T13",)}, "uncertain", ["imputed:T13"]),
        ({"frozen": ("T08",)}, "uncertain", ["frozen:T08"]),
        ({"rows": ("t2",)}, "uncertain", ["t2"]),
        ({"rows": ("spe", "clamped")}, "uncertain", ["spe", "clamped"]),
        ({"frozen": ("T08",), "out_of_range": ("T03",)}, "bad", ["out_of_range:T03", "frozen:T08"]),
    ],
)
def test_status_rules(evidence: dict[str, Any], status: str, reasons: list[str]) -> None:
    """Each piece of evidence gives its level; the worst wins; reasons name the signal."""
    assert _one_row(**evidence) == (status, reasons)


def test_bad_outside_limit_is_deltav_share() -> None:
    """DeltaV: bad with more than five of its twenty inputs outside (a quarter); the same
    share for smaller models, never fewer than one."""
    assert [bad_outside_limit(n) for n in (1, 2, 3, 4, 12, 20, 40)] == [1, 1, 1, 1, 3, 5, 10]
    assert (GOOD, UNCERTAIN, BAD) == (0, 1, 2)


def test_rows_are_vectorized_and_reasons_only_for_rows_not_good() -> None:
    n = 1000
    rng = np.random.default_rng(0)
    flags = rng.random((n, 4)) < 0.01
    t2 = rng.random(n) < 0.01
    statuses = decide(n, [SignalEvidence("imputed", SIGNALS, flags)], [RowEvidence("t2", t2)])
    flagged = flags.any(axis=1) | t2
    assert np.array_equal(statuses.codes > 0, flagged)
    assert sorted(statuses.reasons) == np.flatnonzero(flagged).tolist()


def test_an_impossible_estimate_is_clamped_and_flagged(
    published: Published, tmp_path: Path
) -> None:
    """A version whose target range is narrow: estimates beyond it are clamped to it, the
    interval stays inside, and the row says so (uncertain, ``clamped``)."""
    root = tmp_path / "models"
    import shutil

    shutil.copytree(published.root, root)
    registry = copy_version(root, "v1", "v2")
    card_path = registry.version_dir("tiny", "v2") / "card.json"
    card = json.loads(card_path.read_text())
    card["target"]["valid_range"] = {"low": -0.25, "high": 0.25}
    card_path.write_text(json.dumps(card))
    registry.promote("tiny", "v2")
    records = tiny_records(published.data, 0, 40)
    with TestClient(create_app(make_settings(root, tmp_path))) as client:
        rows = client.post("/v1/predict", json={"records": records}).json()["rows"]
    clamped = [r for r in rows if r["flags"]["clamped"]]
    assert clamped and len(clamped) < len(rows)
    for r in rows:
        assert -0.25 <= r["estimate"] <= 0.25 and -0.25 <= r["estimate_corrected"] <= 0.25
        assert -0.25 <= r["interval"][0] <= r["interval"][1] <= 0.25
    assert all(r["status"] != "good" and "clamped" in r["reasons"] for r in clamped)
    assert Registry(root).champion("tiny") == "v2"


def test_inputs_outside_the_training_range_are_uncertain_and_clamped_on_request(
    published: Published, tmp_path: Path
) -> None:
    """The analyzer input q just above what training saw (inside its valid range -100..100):
    uncertain, naming q; with SOFTSENSOR_CLAMP_INPUTS the model sees q at its training
    maximum instead (the estimate is that of the clipped row). A far above takes the derived
    (a + b) / 2 out too: two of the model's three input signals, bad."""
    card = Registry(published.root).verify("tiny", published.version)
    assert card.calibration is not None
    high = dict(
        zip([f.name for f in card.features], card.calibration.training_range.high, strict=True)
    )
    rec = tiny_records(published.data, 10, 11)[0]
    wild = rec | {"values": rec["values"] | {"q": high["q_lag2"] + 0.3}}
    edge = rec | {"values": rec["values"] | {"q": high["q_lag2"]}}
    far = rec | {"values": rec["values"] | {"a": 60.0}}
    answers, bad = {}, None
    for clamp in (False, True):
        settings = make_settings(published.root, tmp_path / str(clamp), clamp_inputs=clamp)
        with TestClient(create_app(settings)) as client:
            answers[clamp] = [
                client.post("/v1/predict", json={"records": [r]}).json()["rows"][0]
                for r in (wild, edge)
            ]
            bad = client.post("/v1/predict", json={"records": [far]}).json()["rows"][0]
    row = answers[False][0]
    assert row["status"] == "uncertain" and "outside_training:q" in row["reasons"]
    assert row["flags"]["outside_training"] == ["q"] and row["flags"]["out_of_range"] == []
    assert answers[True][0]["estimate"] == pytest.approx(answers[True][1]["estimate"], abs=1e-6)
    assert answers[True][0]["estimate"] != pytest.approx(row["estimate"], abs=1e-6)
    assert bad is not None and bad["status"] == "bad"
    assert {"outside_training:a", "outside_training:ab"} <= set(bad["reasons"])
