"""The plant replay, shortened, as a test: the served numbers meet their promises.

The same code as ``python -m bench.replay`` (docs/replay.md): two simulated units, faults at
known times in unit A, the default recipe trained on 21 days of unit A, the real service
fed over HTTP row by row; here 4 days are replayed instead of 9, the faults shortened alike.
About 100 s.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.replay import run
from tests.conftest import REPO

SIGNALS = ("T03", "T08", "T13", "T21", "T28", "T34", "T39", "F", "L", "V", "D", "B")


def _readme_request() -> dict[str, Any]:
    """The example request of the README's serving section, as a newcomer would send it."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = re.search(r"-d '(\{.*?\})'", text, re.S)
    assert body, "the README has no example predict request"
    return dict(json.loads(body.group(1)))


@pytest.fixture(scope="module")
def scorecard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("replay")
    readme: dict[str, Any] = {}

    def ask_readme(url: str) -> None:
        r = httpx.post(url + "/v1/predict", json=_readme_request(), timeout=30)
        readme["status"], readme["body"] = r.status_code, r.json()

    result = run(25, 21, out, after=ask_readme)
    result["readme"] = readme
    return result


@pytest.mark.slow
def test_clean_periods_keep_their_promises(scorecard: dict[str, Any]) -> None:
    """Clean rows: 95 % interval covers the truth 93-97 % of the time; fewer than 1 % of rows
    frozen or out of range; no drift or residual alarm; no request failed."""
    clean = scorecard["clean"]
    assert 0.93 <= clean["coverage"] <= 0.97, clean["coverage"]
    assert clean["frozen_rows"] < 0.01 and clean["range_rows"] < 0.01
    assert clean["alarms"]["drift"]["onsets"] == 0 and clean["alarms"]["residual"]["onsets"] == 0
    assert scorecard["errors"] == {"unit-a": 0, "unit-b": 0}


@pytest.mark.slow
def test_every_fault_is_flagged_in_time(scorecard: dict[str, Any]) -> None:
    """Each injected fault is flagged: the stuck sensor frozen within the window (600 s) plus
    5 minutes, the drifting sensor by its drift detector, the pressure step by the residual
    alarm, the outage by analyzer_silent, the feed move with uncertain or bad rows."""
    delays = {f["kind"]: f["delay_min"] for f in scorecard["faults"]}
    assert all(d is not None for d in delays.values()), delays
    assert delays["stuck"] <= 10 + 5
    move = next(f for f in scorecard["faults"] if f["kind"] == "feed_move")
    assert move["status_at_new_rate"]["good"] < 0.05
    drift = next(f for f in scorecard["faults"] if f["kind"] == "drift")
    # the drifting sensor is the one named first (it enters the others' predictions too)
    assert all(v >= drift["delay_min"] for v in drift["also_flagged"].values()), drift


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="target not met (docs/replay.md): flagged at about 8 noise sd in the month's "
    "replay and later here, where the drift is twice as fast; the redundancy test's limits "
    "and on-delay must stay above what normal operation's fast moves give",
)
def test_the_drifting_sensor_is_flagged_before_three_noise_sds(
    scorecard: dict[str, Any],
) -> None:
    drift = next(f for f in scorecard["faults"] if f["kind"] == "drift")
    assert drift["noise_sds_at_detection"] < 3.0, drift


@pytest.mark.slow
def test_bias_correction_lowers_the_error_after_the_step(scorecard: dict[str, Any]) -> None:
    step = next(f for f in scorecard["faults"] if f["kind"] == "pressure_step")
    assert step["rmse_corrected"] < 0.5 * step["rmse_estimate"], step


@pytest.mark.slow
def test_two_units_keep_their_own_bias(scorecard: dict[str, Any]) -> None:
    """Every analyzer result of each unit matched that unit's estimate (none unmatched but
    the first, which came before any estimate), and the biases differ."""
    for unit, counts in scorecard["labs"].items():
        assert counts["errors"] == 0 and counts["unmatched"] <= 1, (unit, counts)
        assert counts["accepted"] >= 0.95 * counts["posted"], (unit, counts)
    bias = scorecard["summary"]["final_bias"]
    assert bias["unit-a"] != bias["unit-b"]


@pytest.mark.slow
def test_the_readme_request_is_answered_without_frozen_flags(scorecard: dict[str, Any]) -> None:
    readme = scorecard["readme"]
    assert readme["status"] == 200, readme
    (row,) = readme["body"]["rows"]
    assert row["flags"]["frozen"] == [] and "frozen" not in readme["body"]["alarms"]


@pytest.mark.slow
def test_bad_quality_rows_are_answered_and_never_good(scorecard: dict[str, Any]) -> None:
    """Rows sent with a bad input (a digital state, or BadNoCommunication) are answered, all
    of them uncertain, or bad when more than a quarter of the signals are bad; never good,
    and every row's reasons name each bad input. Rows with an uncertain (Questionable)
    input are uncertain, naming it. Carrying the bad value forward keeps the estimate within
    twice the clean error."""
    quality = scorecard["qualities"]
    groups = quality["by_input"]
    assert {p["group"] for p in quality["periods"]} == {"any_uncertain", "any_bad", "many_bad"}
    for name in ("any_uncertain", "any_bad", "many_bad"):
        g = groups[name]
        assert g["rows"] > 0 and g["errors"] == 0, (name, g)
        assert g["status"]["good"] == 0.0 and g["named"] == 1.0, (name, g)
    assert groups["any_uncertain"]["status"]["uncertain"] == 1.0, groups["any_uncertain"]
    assert groups["any_bad"]["status"]["uncertain"] == 1.0, groups["any_bad"]
    assert groups["many_bad"]["status"]["bad"] == 1.0, groups["many_bad"]
    clean = scorecard["clean"]["rmse_corrected"]
    assert groups["any_bad"]["rmse_corrected"] < 2 * clean, (groups["any_bad"], clean)


def test_quality_periods_keep_clear_of_the_faults() -> None:
    """The quality periods, with their settling time, lie after every fault has settled,
    apart from each other and inside the replay, in the short replay as in the month."""
    from bench.replay import SETTLE_MINUTES, fault_schedule
    from bench.replay_quality import QUALITY_SETTLE_MINUTES, quality_schedule

    for days, train_days in ((25, 21), (30, 21)):
        start, length = train_days * 1440, (days - train_days) * 1440
        faults = fault_schedule(start, length)
        periods = quality_schedule(start, length)
        assert [p.kind for p in periods] == ["bad", "uncertain", "many_bad"]
        settled = max(f.end_min + SETTLE_MINUTES for f in faults)
        assert periods[0].start_min >= settled, (days, periods[0], settled)
        for a, b in itertools.pairwise(periods):
            assert b.start_min >= a.end_min + QUALITY_SETTLE_MINUTES
        assert periods[-1].end_min + QUALITY_SETTLE_MINUTES <= start + length


def test_the_readme_request_names_the_signals_of_column_a() -> None:
    from training.simulator import FLOW_COLUMNS, SimulationConfig, temperature_columns

    values = _readme_request()["records"][0]["values"]
    assert set(values) == {*temperature_columns(SimulationConfig()), *FLOW_COLUMNS}
    assert Path(REPO / "README.md").is_file()


def test_the_marked_records_are_what_a_plant_historian_sends() -> None:
    """Inside each period the records carry the qualities the service reads as bad or
    uncertain (a digital state, BadNoCommunication, Questionable, Uncertain...); outside
    them no quality at all, so the clean rows are sent as before."""
    from bench.replay_quality import DIGITAL_STATE, quality_schedule, with_qualities
    from service.api.schemas import PredictRequest
    from service.plant.quality import Quality
    from service.scoring.qualities import read_quality

    start = 21 * 1440.0
    periods = quality_schedule(start, 4 * 1440.0)
    first, last = periods[0].start_min - 5, periods[-1].end_min + 5
    n = round(last - start)
    plain = [
        {"timestamp": 60.0 * (start + k), "values": {s: 70.0 for s in SIGNALS}} for k in range(n)
    ]
    sent = list(with_qualities(iter(plain), periods, start))
    assert sent[: round(first - start)] == plain[: round(first - start)]
    assert sent[-3:] == plain[-3:]
    seen: dict[str, set[Quality]] = {p.kind: set() for p in periods}
    for k, record in enumerate(sent):
        PredictRequest.model_validate({"model": "column_a", "records": [record]})
        period = next((p for p in periods if p.covers(start + k)), None)
        if period is None:
            assert "quality" not in record and record["values"] == plain[k]["values"]
            continue
        for s in period.signals:
            q = read_quality(record.get("quality", {}).get(s), None, s)
            if record["values"][s] == DIGITAL_STATE:
                q = Quality.BAD
            seen[period.kind].add(q)
    assert seen == {
        "bad": {Quality.BAD},
        "uncertain": {Quality.UNCERTAIN},
        "many_bad": {Quality.BAD},
    }
