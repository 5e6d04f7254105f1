"""A scored request's JSON-ready answer: records in, records out; columns in, columns out.

The per-row ``flags`` object (``out_of_range``, ``outside_training``, ``frozen``, ``imputed``,
``missing_history``, ``clamped``) is read from the row's ``reasons``, so the two never
disagree; the status rules themselves are in ``service.scoring.status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from service.contracts.arrays import FloatArray
from service.plant.quality import STATUS_CODES, Quality
from service.plant.tagmap import OutputValue
from service.scoring.status import STATUS_NAMES, Statuses

# Each status as the OPC UA status code of its severity (Part 4, 7.39), in STATUS_NAMES order,
# so a historian stores the estimate with a quality it knows.
OPCUA_CODES = tuple(STATUS_CODES[q] for q in (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD))
_LISTS = ("out_of_range", "outside_training", "frozen", "imputed", "drift")
QUIET: dict[str, Any] = {
    "out_of_range": [],
    "outside_training": [],
    "frozen": [],
    "imputed": [],
    "drift": [],
    "missing_history": False,
    "clamped": False,
}


def flags_of(reasons: list[str]) -> dict[str, Any]:
    """The flags object of a row with these reasons."""
    flags: dict[str, Any] = {k: [] for k in _LISTS}
    flags["missing_history"] = "missing_history" in reasons
    flags["clamped"] = "clamped" in reasons
    for reason in reasons:
        kind, _, signal = reason.partition(":")
        if signal and kind in flags:
            flags[kind].append(signal)
    return flags


@dataclass(slots=True)  # not frozen: built for every request, and frozen init costs
class Scored:
    """One request's numbers, ready to be written out."""

    estimate: FloatArray  # clamped to the target's physical range
    corrected: FloatArray
    low: FloatArray
    high: FloatArray
    statuses: Statuses
    t2: FloatArray | None
    spe: FloatArray | None


def records_answer(head: dict[str, Any], stamps: Any, version: str, s: Scored) -> dict[str, Any]:
    """``rows``: one object per record. Built in Python floats: a dictionary per row is made
    anyway, and the lists are cheaper than per-value numpy scalars."""
    reasons = s.statuses.reasons
    codes = s.statuses.codes.tolist()
    t2 = s.t2.tolist() if s.t2 is not None else [None] * len(codes)
    spe = s.spe.tolist() if s.spe is not None else [None] * len(codes)
    rows = []
    columns = (s.estimate.tolist(), s.corrected.tolist(), s.low.tolist(), s.high.tolist())
    for i, (e, c, lo, hi) in enumerate(zip(*columns, strict=True)):
        why = reasons.get(i, [])
        rows.append(
            {
                "timestamp": stamps[i],
                "estimate": e,
                "estimate_corrected": c,
                "interval": (lo, hi),
                "model_version": version,
                "status": STATUS_NAMES[codes[i]],
                "status_code": OPCUA_CODES[codes[i]],
                "reasons": why,
                "t2": t2[i],
                "spe": spe[i],
                "flags": flags_of(why) if why else QUIET,
            }
        )
    return head | {"rows": rows}


def columns_answer(
    head: dict[str, Any], stamps: Any, frozen: list[str], s: Scored
) -> dict[str, Any]:
    """One list per field; ``flags`` only for the rows that are not good. Arrays stay arrays
    (orjson writes them without a Python float per value)."""
    names = np.array(STATUS_NAMES)
    flags = [
        {"row": i, "status": s.statuses.name(i), "reasons": why} | flags_of(why)
        for i, why in s.statuses.reasons.items()
    ]
    return head | {
        "timestamp": stamps,
        "estimate": s.estimate,
        "estimate_corrected": s.corrected,
        "interval_low": s.low,
        "interval_high": s.high,
        "status": names[s.statuses.codes].tolist(),
        "status_code": np.array(OPCUA_CODES)[s.statuses.codes].tolist(),
        "t2": s.t2,
        "spe": s.spe,
        "frozen": frozen,
        "flags": flags,
    }


SERVED: tuple[OutputValue, ...] = get_args(OutputValue)  # the numbers written back


def served_columns(answer: dict[str, Any], start: int = 0) -> dict[str, list[Any]]:
    """What a historian or DCS writes back, from an answer of either shape, as columns
    (``timestamp``, the ``SERVED`` numbers, ``status``), from row ``start`` on (``-1``: the
    latest row only); a columns answer without timestamps gives ``None`` for each row."""
    rows = answer.get("rows")
    if rows is not None:
        part = rows[start:]
        return {
            "timestamp": [r["timestamp"] for r in part],
            "estimate": [r["estimate"] for r in part],
            "estimate_corrected": [r["estimate_corrected"] for r in part],
            "interval_low": [r["interval"][0] for r in part],
            "interval_high": [r["interval"][1] for r in part],
            "status": [r["status"] for r in part],
        }
    n = len(answer["estimate"])
    stamps = answer.get("timestamp")
    first = 0 if n == 0 else range(n)[start]
    return {
        "timestamp": [None] * (n - first) if stamps is None else list(stamps[first:]),
        **{f: list(answer[f][first:]) for f in (*SERVED, "status")},
    }
