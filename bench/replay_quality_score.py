"""The plant replay's status rows by input quality: does the served status follow what the
historian said of its values, and does carrying a bad value forward keep the estimate close?

Unit A's rows are grouped by what their inputs were sent as (``bench.replay_quality``): all
good (the clean rows of both units, as in the clean figures), any uncertain, any bad (no
more than the service's quarter of the signals, ``service.scoring.status``), and many bad
(more than that). For each group: its rows' status shares, the share whose reasons name
every doubtful input, and the estimate's RMSE against the truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.replay import UNITS, Scenario
from bench.replay_quality import period_rows
from bench.replay_score import _rmse, _shares
from service.contracts.arrays import FloatArray
from service.contracts.card import ModelCard
from service.scoring.status import bad_outside_limit

Mask = NDArray[np.bool_]
GROUPS = ("all_good", "any_uncertain", "any_bad", "many_bad")
REASON = {"uncertain": "quality_uncertain", "bad": "quality_bad", "many_bad": "quality_bad"}


def quality_rows(scenario: Scenario, n: int) -> Mask:
    """Unit A's rows inside a quality period or its settling time: not clean."""
    rows = period_rows(scenario.qualities, scenario.start_min, n, settle=True)
    return np.any(list(rows.values()), axis=0) if rows else np.zeros(n, dtype=bool)


def _group_of(kind: str, signals: int, limit: int) -> str:
    if kind == "uncertain":
        return "any_uncertain"
    return "many_bad" if signals > limit else "any_bad"


def _named(reasons: list[list[str]], where: Mask, expected: list[str]) -> float:
    """Share of the rows in ``where`` whose reasons name every one of ``expected``."""
    rows = np.flatnonzero(where)
    if rows.size == 0:
        return float("nan")
    return float(np.mean([set(expected) <= set(reasons[i]) for i in rows]))


def _figures(
    status: NDArray[np.str_],
    estimate: FloatArray,
    corrected: FloatArray,
    truth: FloatArray,
    where: Mask,
) -> dict[str, Any]:
    return {
        "rows": int(where.sum()),
        "status": _shares(status, where),
        "errors": int(np.sum((status == "error") & where)),
        "rmse_estimate": _rmse(estimate[where], truth[where]),
        "rmse_corrected": _rmse(corrected[where], truth[where]),
    }


def quality_card(
    scenario: Scenario,
    tables: dict[str, dict[str, Any]],
    truth: dict[str, FloatArray],
    clean: dict[str, Mask],
    card: ModelCard,
) -> dict[str, Any]:
    """The status rows by input quality, and each quality period's own figures."""
    signals = [s.name for s in card.signals if s.used and s.derived_from is None]
    limit = bad_outside_limit(len(signals))
    t, u = tables[UNITS[0]], UNITS[0]
    n = len(truth[u])
    pooled = {
        k: np.concatenate([np.asarray(tables[v][k]) for v in UNITS])
        for k in ("status", "estimate", "corrected")
    }
    everywhere = np.concatenate([clean[v] for v in UNITS])
    groups: dict[str, Any] = {
        "all_good": _figures(
            pooled["status"],
            pooled["estimate"],
            pooled["corrected"],
            np.concatenate([truth[v] for v in UNITS]),
            everywhere,
        )
    }
    periods = []
    for p, rows in period_rows(scenario.qualities, scenario.start_min, n).items():
        group = _group_of(p.kind, len(p.signals), limit)
        names = [f"{REASON[p.kind]}:{s}" for s in p.signals]
        figures = _figures(t["status"], t["estimate"], t["corrected"], truth[u], rows)
        figures["named"] = _named(t["reasons"], rows, names)
        groups[group] = figures
        periods.append(
            {
                "kind": p.kind,
                "group": group,
                "signals": list(p.signals),
                "start_min": p.start_min,
                "minutes": p.end_min - p.start_min,
            }
        )
    return {"bad_limit": limit, "periods": periods, "by_input": groups}
