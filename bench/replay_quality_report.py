"""The input-quality section of ``docs/replay.md``: the status rows by input quality
(``bench.replay_quality_score``), rendered for ``bench.replay_report``."""

from __future__ import annotations

from typing import Any

QUALITY_GROUPS = {
    "all_good": "all good (clean rows, both units)",
    "any_uncertain": "any uncertain",
    "any_bad": "any bad",
    "many_bad": "many bad",
}
QUALITY_SENT = {
    "bad": "digital state `I/O Timeout`, then the number with `BadNoCommunication`",
    "uncertain": "the number with `Questionable`, then with `Uncertain_SensorNotAccurate`",
    "many_bad": "digital state `I/O Timeout`",
}


def quality_section(result: dict[str, Any]) -> list[str]:
    """The status rows by input quality (``bench.replay_quality_score``)."""
    if "qualities" not in result:  # a result stored before input qualities were replayed
        return []
    q = result["qualities"]
    periods = [
        f"| {p['kind']} | {', '.join(p['signals'])} | {p['start_min'] / 1440:.2f} "
        f"| {p['minutes']:.0f} min | {QUALITY_SENT[p['kind']]} |"
        for p in q["periods"]
    ]
    rows = []
    for group, label in QUALITY_GROUPS.items():
        g = q["by_input"].get(group)
        if g is None:
            continue
        st = g["status"]
        named = "" if "named" not in g else _pct(g["named"])
        rows.append(
            f"| {label} | {g['rows']} | {_pct(st['good'])} / {_pct(st['uncertain'])} / "
            f"{_pct(st['bad'])} | {named} | {g['rmse_estimate']:.4f} / "
            f"{g['rmse_corrected']:.4f} |"
        )
    return [
        "## Input quality (unit A)",
        "",
        "The historian side sends qualities the way a plant's does, in three periods after the",
        "last fault has settled (`bench/replay_quality.py`); every other value goes without a",
        "quality (good). A bad value is treated as missing and carried forward; the row is",
        "`uncertain` naming the input (`quality_bad:<signal>`), or `bad` with more than",
        f"{q['bad_limit']} of the signals bad; an uncertain input makes the row `uncertain`",
        "(`quality_uncertain:<signal>`). Rows of a period and the hour after it are not clean.",
        "",
        "| period | signals | start (day) | lasts | sent as |",
        "|---|---|---|---|---|",
        *periods,
        "",
        "| inputs | rows | rows good / uncertain / bad | reasons name the input "
        "| RMSE estimate / corrected (mol %) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        *_quality_reading(q),
    ]


def _quality_reading(q: dict[str, Any]) -> list[str]:
    """What carrying bad values forward cost the estimate, against the clean rows."""
    by = q["by_input"]
    if not {"all_good", "any_bad", "many_bad"} <= by.keys():
        return []
    bad = next(p for p in q["periods"] if p["group"] == "any_bad")
    many = next(p for p in q["periods"] if p["group"] == "many_bad")
    return [
        f"With {', '.join(bad['signals'])} carried forward for {bad['minutes']:.0f} min the "
        f"bias-corrected estimate's RMSE is {by['any_bad']['rmse_corrected']:.4f} mol %, with "
        f"{len(many['signals'])} inputs carried forward for {many['minutes']:.0f} min "
        f"{by['many_bad']['rmse_corrected']:.4f}, against {by['all_good']['rmse_corrected']:.4f} "
        "on the clean rows (a period's rows are few: its figure moves with the process of that "
        "hour).",
        "",
    ]


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"
