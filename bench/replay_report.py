"""``docs/replay.md`` and its plots from a plant-replay scorecard (``bench.replay``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from bench.protocol import REPO
from bench.replay_quality_report import quality_section

DOC = REPO / "docs" / "replay.md"
IMAGES = REPO / "docs" / "img" / "replay"
STATUS_COLOURS = {"good": "#d9f0d3", "uncertain": "#fee391", "bad": "#fc9272", "error": "#999999"}
CRITERIA = {
    "stuck": "frozen within the window (10 min) + 5 min",
    "drift": "flagged before the drift exceeds 3 noise sd",
    "pressure_step": "residual alarm; bias correction lowers the RMSE",
    "analyzer_outage": "analyzer_silent alarm",
    "feed_move": "rows uncertain or bad",
}


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["series"]
    day = np.array(s["minute"]) / 1440.0
    fig, (top, strip) = plt.subplots(
        2, 1, figsize=(15, 7.5), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    top.fill_between(
        day, s["low"], s["high"], color="#9ecae1", alpha=0.6, lw=0, label="95 % interval"
    )
    top.plot(day, s["truth"], color="black", lw=0.9, label="true composition")
    top.plot(day, s["estimate"], color="#e6550d", lw=0.6, alpha=0.8, label="estimate")
    top.plot(day, s["corrected"], color="#3182bd", lw=0.8, label="bias-corrected estimate")
    lab = np.array([np.nan if v is None else v for v in s["analyzer"]])
    top.plot(day, lab, ".", color="#31a354", ms=2, label="analyzer (at report time)")
    for kind, start, end in s["faults"]:
        top.axvspan(start / 1440, end / 1440, color="#bdbdbd", alpha=0.35, lw=0)
        top.text(start / 1440, top.get_ylim()[1], kind.replace("_", " "), fontsize=8, va="top")
    for kind, start, end in s.get("qualities", []):  # input qualities sent (bench.replay_quality)
        top.axvspan(start / 1440, end / 1440, color="#fdae6b", alpha=0.45, lw=0)
        label = f"quality {kind.replace('_', ' ')}"
        top.text(start / 1440, top.get_ylim()[0], label, fontsize=7, va="bottom", rotation=90)
    top.set_ylabel("light component in the bottoms, mol %")
    top.legend(loc="upper left", fontsize=8, ncol=3)
    top.set_title("Plant replay, unit A: what the service served, against the truth")
    status = np.array(s["status"])
    for name, colour in STATUS_COLOURS.items():
        hit = status == name
        strip.fill_between(
            day, 0, 1, where=hit, color=colour, step="mid", lw=0, label=f"row {name}"
        )
    for k, (alarm, flags) in enumerate(s["alarms"].items()):
        on = np.array(flags, dtype=bool)
        strip.fill_between(
            day, 1.2 + k * 0.35, 1.45 + k * 0.35, where=on, color="#756bb1", step="mid", lw=0
        )
        strip.text(day[0], 1.22 + k * 0.35, alarm, fontsize=7)
    strip.set_yticks([])
    strip.set_xlabel("simulated day")
    strip.legend(loc="lower right", fontsize=7, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}"


def _reading(result: dict[str, Any]) -> list[str]:
    """What the figures say, including what they do not meet."""
    c = result["clean"]
    by_kind = {f["kind"]: f for f in result["faults"]}
    drift, outage = by_kind["drift"], by_kind["analyzer_outage"]
    lines = ["## Reading the figures", ""]
    if c["rmse_corrected"] > c["rmse_ridge_corrected"]:
        lines += [
            f"- The network does not beat ridge: {c['rmse_estimate']:.3f} against "
            f"{c['rmse_ridge']:.3f} mol % raw, {c['rmse_corrected']:.3f} against "
            f"{c['rmse_ridge_corrected']:.3f} with the same bias correction. The served "
            "number's promises (interval, flags, alarms) hold; its accuracy is the "
            "estimator's, which is not this scorecard's to fix.",
        ]
    if "noise_sds_at_detection" in drift:
        lines += _drift_reading(result, drift)
    lines += [
        f"- During the analyzer outage the corrected estimate keeps its last bias while the "
        f"process moves: RMSE {outage['rmse_corrected']:.3f} against {outage['rmse_estimate']:.3f} "
        f"raw, interval coverage {_pct(outage['coverage'])}; rows say `bias_stale` (uncertain) "
        "once the analyzer_silent alarm is on.",
        "",
    ]
    return lines


def _drift_reading(result: dict[str, Any], drift: dict[str, Any]) -> list[str]:
    """The drift target, met or not, and what the redundancy test costs on clean rows."""
    sds = drift["noise_sds_at_detection"]
    met = "met" if sds <= 3 else "not met"
    onsets = result["clean"]["alarms"]["drift"]["onsets"]
    others = ", ".join(f"{k} after {v} min" for k, v in drift.get("also_flagged", {}).items())
    red = (result["calibration"] or {}).get("redundancy")
    lines = [
        f"- The drifting thermocouple is flagged after {drift['delay_min']} min, at "
        f"{drift['drift_at_detection']:.2f} K: {sds:.1f} times its noise standard deviation "
        f"(0.05 K); the target of 3 is {met}."
    ]
    if red is not None and "redundancy_sds_at_detection" in drift:
        j = red["signals"].index(drift["signal"])
        floor = red["residual_sd"][j] * red["scale"][j] / 0.05
        lines[0] += (
            " The redundancy test (each sensor against what the others say it reads, "
            "`training/redundancy.py`) rings at "
            f"{drift['redundancy_sds_at_detection']:.1f} of its residual spreads: its limits "
            f"are {red['margin']:g} times the highest value held-out normal operation "
            "reached, because the few validation days do not show every move of normal "
            "operation (the tail extrapolated to the design rate of "
            f"{red['false_alarms_per_week']:g} false alarms per week alone sits lower and rings "
            "on clean rows). What keeps it from 3 noise sd: the residual is the sensor's own "
            f"noise plus the others' ({floor:.1f} noise sd per row), and during fast moves "
            "of the column (a feed step) the others predict a sensor less well than in steady "
            "operation. A signal is flagged once its statistic has stayed over the limit for "
            f"{red.get('on_delay_samples', 1)} rows in a row (an alarm on-delay: without it "
            "the feed steps' transients rang on clean rows, with it the detection comes later "
            "by about as much). `python -m bench.drift_sweep --docs` weighs the on-delay and "
            "the margin over several simulated months (`docs/drift_sweep.md`): shorter or "
            "lower, the test rings on clean rows of some months, and the delay varies more "
            "from month to month than between settings."
        )
    if others:
        lines[0] += f" Other sensors flagged during the drift: {others}."
    by_signal = result["clean"].get("drift_onsets_by_signal", {})
    named = ", ".join(f"{k} {v}" for k, v in by_signal.items() if v)
    lines[0] += f" Drift alarm onsets on clean rows: {onsets}" + (f" ({named})." if named else ".")
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _fault_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    for f in result["faults"]:
        delay = "not flagged" if f["delay_min"] is None else f"{f['delay_min']} min"
        extra = ""
        if f["kind"] == "drift" and "drift_at_detection" in f:
            extra = (
                f"; {f['drift_at_detection']:.2f} K at detection = "
                f"{f['noise_sds_at_detection']:.1f} noise sd, "
                f"{f['residual_sds_at_detection']:.1f} PCA residual sd"
            )
            if "redundancy_sds_at_detection" in f:
                extra += f", {f['redundancy_sds_at_detection']:.1f} redundancy residual sd"
        if f["kind"] == "feed_move":
            held = f["status_at_new_rate"]
            extra = (
                f"; at the new rate {_pct(held['uncertain'])} uncertain, {_pct(held['bad'])} bad"
            )
        st = f["status"]
        what = f["signal"] or ""
        size = f" {f['size']:g}" if f["size"] else ""
        rows.append(
            f"| {f['kind']} {what}{size} | {f['start_min'] / 1440:.2f} | {f['minutes'] / 60:.1f} h "
            f"| {delay}{extra} | {CRITERIA[f['kind']]} | {_pct(st['good'])} / "
            f"{_pct(st['uncertain'])} / {_pct(st['bad'])} | {f['rmse_estimate']:.3f} / "
            f"{f['rmse_corrected']:.3f} | {_pct(f['coverage'])} |"
        )
    return rows


def _clean_rows(c: dict[str, Any]) -> list[str]:
    per_unit = c["coverage_per_unit"]
    st = c["status"]
    figures = [
        (
            "RMSE against the truth: estimate / bias-corrected",
            f"{c['rmse_estimate']:.4f} / {c['rmse_corrected']:.4f} mol %",
        ),
        (
            "RMSE of ridge (same features, alpha by validation): raw / with the same bias filter",
            f"{c['rmse_ridge']:.4f} / {c['rmse_ridge_corrected']:.4f} mol %",
        ),
        (
            "95 % interval: coverage of the truth (target 93-97 %)",
            f"{_pct(c['coverage'])} (unit A {_pct(per_unit['unit-a'])}, "
            f"unit B {_pct(per_unit['unit-b'])})",
        ),
        ("interval width, mean", f"{c['width']:.3f} mol %"),
        (
            "rows good / uncertain / bad",
            f"{_pct(st['good'])} / {_pct(st['uncertain'])} / {_pct(st['bad'])}",
        ),
        ("rows flagged frozen (target < 1 %)", _pct(c["frozen_rows"])),
        ("rows out of range or outside the training range (target < 1 %)", _pct(c["range_rows"])),
        ("rows flagged drift:<signal>", _pct(c.get("drift_rows", 0.0))),
    ]
    return [f"| {name} | {value} |" for name, value in figures]


def render(result: dict[str, Any], command: str) -> str:
    """docs/replay.md from a replay's result."""
    lines = [
        *_introduction(result, command),
        *_clean_section(result["clean"]),
        *_fault_section(result),
        *quality_section(result),
        *_reading(result),
        *_lab_section(result),
        *_calibration_section(result),
    ]
    return "\n".join(lines)


def _introduction(result: dict[str, Any], command: str) -> list[str]:
    return [
        "# Plant replay: the served numbers against the truth",
        "",
        "What the running service serves, judged the way an operator meets it. Two units of",
        "Skogestad's Column A are simulated for a month; faults are injected into unit A at",
        "known times; the project's default recipe (`softsensor train`) is trained on the first",
        f"{result['train_days']:g} days of unit A; then the real service (`softsensor serve`) is",
        "fed over HTTP the way a historian feeds it: one row per minute per unit, each its own",
        "request, both units on one model, each analyzer result posted when it is reported",
        "(10 minutes after its sample). Every answer is scored against the true composition.",
        "",
        f"    {command}",
        "",
        f"Run on {_machine()}, {result['seconds']:.0f} s in all; results in "
        "`bench/results/replay/results.json`.",
        "",
        "Normal operation is the default simulator with two changes, so that *clean* means",
        "operation the training data represents: no unprompted stuck periods (the stuck sensor",
        "is the injected fault), and the operator holds the internal flows at their set point",
        "(a new operating point is the injected feed move). A row of unit A is *faulty* inside a",
        "fault's window and *settling* for 12 h after it; all other rows, and every row of",
        "unit B, are *clean*. Alarms are counted as onsets (off to on) on clean rows.",
        "",
        "![replay](img/replay/replay.png)",
        "",
    ]


def _clean_section(c: dict[str, Any]) -> list[str]:
    alarms = " ".join(
        f"| {name} | {a['onsets']} | {a['per_week']:.2f} | {_pct(a['rows_on'])} |" + "\n"
        for name, a in c["alarms"].items()
    )
    return [
        "## Clean periods",
        "",
        f"{c['minutes'] / 1440:.1f} unit-days of clean rows.",
        "",
        "| figure | value |",
        "|---|---|",
        *_clean_rows(c),
        "",
        "| alarm | onsets on clean rows | per week | share of clean rows on |",
        "|---|---|---|---|",
        alarms.rstrip("\n"),
        "",
    ]


def _fault_section(result: dict[str, Any]) -> list[str]:
    steps = next(f for f in result["faults"] if f["kind"] == "pressure_step")
    return [
        "## Injected faults (unit A)",
        "",
        "| fault | start (day) | lasts | detected after | criterion "
        "| rows good / uncertain / bad | RMSE estimate / corrected | coverage |",
        "|---|---|---|---|---|---|---|---|",
        *_fault_rows(result),
        "",
        f"Bias correction after the pressure step (a model offset only the analyzer sees): RMSE "
        f"against the truth {steps['rmse_estimate']:.3f} mol % for the raw estimate and "
        f"{steps['rmse_corrected']:.3f} for the corrected one over the step's "
        f"{steps['minutes'] / 60:.0f} h; over as long before it, "
        f"{steps['rmse_before_step']['estimate']:.3f} and "
        f"{steps['rmse_before_step']['corrected']:.3f}.",
        "",
    ]


def _lab_section(result: dict[str, Any]) -> list[str]:
    labs = result["labs"]
    return [
        "## Lab results",
        "",
        "| unit | posted | accepted | unmatched | other |",
        "|---|---|---|---|---|",
        *(
            f"| {u} | {n['posted']} | {n['accepted']} | {n['unmatched']} | "
            + ", ".join(
                f"{k} {v}"
                for k, v in n.items()
                if k.startswith("rejected") or (k == "errors" and v)
            )
            + " |"
            for u, n in labs.items()
        ),
        "",
        "Each unit's results match only its own estimates and move only its own bias (final",
        f"biases: unit A {result['summary']['final_bias']['unit-a']:+.3f}, unit B "
        f"{result['summary']['final_bias']['unit-b']:+.3f} mol %).",
        "",
    ]


def _calibration_section(result: dict[str, Any]) -> list[str]:
    cal = result["calibration"] or {}
    interval = cal.get("interval", {})
    return [
        "## What the card calibrated",
        "",
        f"Interval: split conformal over {interval.get('results')} validation results of the "
        "bias-corrected estimate, width scaled by max(|estimate|, "
        f"{interval.get('scale_floor', 0):.3f})^{interval.get('scale_power', 0):.2f}; quantiles "
        f"{interval.get('low', 0):.4f} / {interval.get('high', 0):.4f}. Alarm thresholds are "
        "twice the largest value each statistic reached on the validation split (held-out normal "
        "operation); see `training/calibration.py`.",
        "",
        *_redundancy_lines(cal.get("redundancy")),
    ]


def _redundancy_lines(red: dict[str, Any] | None) -> list[str]:
    if red is None:
        return []
    spread = [sd * scale for sd, scale in zip(red["residual_sd"], red["scale"], strict=True)]
    per_signal = ", ".join(
        f"{name} {sd:.3g} ({limit:.1f})"
        for name, sd, limit in zip(red["signals"], spread, red["limit"], strict=True)
    )
    return [
        f"Sensor redundancy: {len(red['signals'])} signals, each predicted from the others' "
        f"readings and their {red['smooth_samples']:g}-row EWMA; departure from a "
        f"{red['baseline_samples']:g}-row baseline, clipped at {red['clip_sd']:g} spreads, "
        f"averaged over {red['fast_samples']:g} rows. Residual spread in the signal's unit "
        f"(limit in spreads): {per_signal}. Design rate {red['false_alarms_per_week']:g} "
        f"false alarms per week per stream; {red['validation_onsets']} alarms over the "
        f"{red['validation_samples']} validation rows.",
        "",
    ]


def write_docs(
    result: dict[str, Any], out: Path, command: str = "python -m bench.replay --docs"
) -> None:
    _plot(result, IMAGES / "replay.png")
    DOC.write_text(render(result, command), encoding="utf-8")
