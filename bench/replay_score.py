"""Scoring a plant replay against the truth: the scorecard of ``bench.replay``.

Rows are one minute of one unit. A row of unit A is *faulty* inside a fault's window,
*settling* for ``SETTLE_MINUTES`` after it (alarms clear, the bias and the slow drift
baseline recover), and *clean* otherwise; every row of unit B is clean. Alarms are counted
as onsets (off to on) in clean rows, per week of clean unit-time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.replay import SETTLE_MINUTES, UNITS, Scenario, replay_config
from service.contracts.arrays import FloatArray
from service.contracts.card import ModelCard
from service.contracts.features import FeaturePlan
from service.monitoring.alarms import ALARMS
from training.data import load_dataset
from training.faults import FEED_RAMP_MINUTES, Fault
from training.spec import load_spec

Mask = NDArray[np.bool_]
MINUTES_PER_WEEK = 7 * 1440
THERMOCOUPLE_NOISE_SD = replay_config().sensors.temperature.noise_sd


def _rmse(a: FloatArray, b: FloatArray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2))) if ok.any() else math.nan


def _table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-row columns of one unit's answers (NaN where a request failed)."""

    def col(key: str) -> FloatArray:
        return np.array([r.get(key, math.nan) for r in rows], dtype=np.float64)

    return {
        "estimate": col("estimate"),
        "corrected": col("corrected"),
        "low": col("low"),
        "high": col("high"),
        "bias": col("bias"),
        "status": np.array([r.get("status", "error") for r in rows]),
        "reasons": [r.get("reasons", []) for r in rows],
        "alarms": {a: np.array([a in r.get("alarms", ()) for r in rows]) for a in ALARMS},
        "errors": sum("error" in r for r in rows),
    }


def _masks(scenario: Scenario, n: int) -> tuple[dict[Fault, Mask], Mask, Mask]:
    """Unit A's rows per fault, its settling rows, and its clean rows."""
    start = scenario.start_min
    minute = np.arange(n) + start
    windows = {f: (minute >= f.start_min) & (minute < f.end_min) for f in scenario.faults}
    settling = np.zeros(n, dtype=bool)
    for f in scenario.faults:
        settling |= (minute >= f.end_min) & (minute < f.end_min + SETTLE_MINUTES)
    faulty = np.any(list(windows.values()), axis=0)
    return windows, settling & ~faulty, ~faulty & ~settling


def _ridge(scenario: Scenario, data: Path, card: ModelCard) -> dict[str, FloatArray]:
    """Ridge on the model's full feature set, alpha by validation, on each unit's replay."""
    from sklearn.linear_model import Ridge

    spec = load_spec(data.with_suffix(".yaml"))
    ds = load_dataset(spec, data)
    best = None
    for alpha in np.logspace(-4, 3, 15):
        model = Ridge(alpha=alpha).fit(ds.train.x, ds.train.y)
        err = _rmse(model.predict(ds.validation.x), ds.validation.y)
        if best is None or err < best[0]:
            best = (err, model)
    assert best is not None
    features = spec.lag_features()
    signals = tuple(dict.fromkeys(f.signal for f in features))
    plan = FeaturePlan(signals, tuple(spec.derived_signals()), tuple(features))
    out = {}
    start = round(scenario.start_min)
    for unit, frame in scenario.frames.items():
        x = plan.assemble(frame[list(signals)].to_numpy(dtype=np.float64))
        estimate = np.full(len(frame), np.nan)
        estimate[plan.history :] = best[1].predict(x)
        out[unit] = estimate[start:]
    return out


def _offline_bias(
    estimate: FloatArray, analyzer: FloatArray, delay: int, gain: float = 0.3
) -> FloatArray:
    """The service's bias filter, replayed offline on another estimator (ridge)."""
    bias, out = 0.0, np.empty_like(estimate)
    for k in range(len(estimate)):
        j = k - delay
        if j >= 0 and np.isfinite(analyzer[k]) and np.isfinite(estimate[j]):
            bias = (1 - gain) * bias + gain * (analyzer[k] - estimate[j])
        out[k] = estimate[k] + bias
    return out


def _onsets(on: Mask, where: Mask) -> int:
    rises = on & ~np.r_[False, on[:-1]]
    return int(np.sum(rises & where))


def _first(flags: Mask, window: Mask) -> int | None:
    hit = np.flatnonzero(flags & window)
    return None if hit.size == 0 else int(hit[0] - np.flatnonzero(window)[0])


def _shares(status: NDArray[np.str_], where: Mask) -> dict[str, float]:
    n = max(int(where.sum()), 1)
    return {s: float(np.sum((status == s) & where) / n) for s in ("good", "uncertain", "bad")}


def _has(reasons: list[list[str]], prefix: str) -> Mask:
    return np.array([any(r.startswith(prefix) for r in why) for why in reasons])


def scorecard(
    scenario: Scenario, served: dict[str, Any], data: Path, card_path: Path
) -> dict[str, Any]:
    card = ModelCard.model_validate_json(card_path.read_text())
    start = round(scenario.start_min)
    delay = card.target.analyzer_delay_samples
    tables = {u: _table(served["answers"][u]) for u in UNITS}
    truth = {u: f["true_xB"].to_numpy()[start:] for u, f in scenario.frames.items()}
    analyzer = {u: f["analyzer_xB"].to_numpy()[start:] for u, f in scenario.frames.items()}
    n = len(truth[UNITS[0]])
    from bench.replay_quality_score import quality_card, quality_rows

    windows, _settling, clean_a = _masks(scenario, n)
    clean_a = clean_a & ~quality_rows(scenario, n)  # rows sent with qualities are not clean
    clean = {UNITS[0]: clean_a, UNITS[1]: np.ones(n, dtype=bool)}
    ridge = _ridge(scenario, data, card)
    clean_card = _clean_scores(tables, truth, analyzer, ridge, clean, delay)
    unit_a = tables[UNITS[0]]
    faults = [_fault(f, windows[f], unit_a, truth[UNITS[0]], card) for f in scenario.faults]
    labs = {u: _lab_counts(served["labs"][u]) for u in UNITS}
    summary = _summary(clean_card, faults, labs, tables)
    qualities = quality_card(scenario, tables, truth, clean, card)
    summary["status_by_input_quality"] = {g: f["status"] for g, f in qualities["by_input"].items()}
    return {
        "days": scenario.days,
        "train_days": scenario.train_days,
        "model_version": card.version,
        "calibration": card.calibration.model_dump() if card.calibration else None,
        "clean": clean_card,
        "faults": faults,
        "labs": labs,
        "qualities": qualities,
        "errors": {u: tables[u]["errors"] for u in UNITS},
        "summary": summary,
        "series": _series(scenario, tables, truth, analyzer, ridge, windows),
    }


def _clean_scores(
    tables: dict[str, dict[str, Any]],
    truth: dict[str, FloatArray],
    analyzer: dict[str, FloatArray],
    ridge: dict[str, FloatArray],
    clean: dict[str, Mask],
    delay: int,
) -> dict[str, Any]:
    """Both units' clean rows pooled: errors, interval coverage and width, status shares,
    flagged rows and alarm onsets."""

    def pooled(fn: Any) -> NDArray[Any]:
        return np.concatenate([fn(u) for u in UNITS])

    clean_all = pooled(lambda u: clean[u])
    t_all = pooled(lambda u: truth[u])
    est_all = pooled(lambda u: tables[u]["estimate"])
    cor_all = pooled(lambda u: tables[u]["corrected"])
    lo_all, hi_all = pooled(lambda u: tables[u]["low"]), pooled(lambda u: tables[u]["high"])
    ridge_all = pooled(lambda u: ridge[u])
    ridge_cor = pooled(lambda u: _offline_bias(ridge[u], analyzer[u], delay))
    status_all = np.concatenate([tables[u]["status"] for u in UNITS])
    reasons_all = [r for u in UNITS for r in tables[u]["reasons"]]
    inside = (t_all >= lo_all) & (t_all <= hi_all)
    clean_minutes = float(clean_all.sum())
    frozen_rows = _has(reasons_all, "frozen:")
    range_rows = _has(reasons_all, "out_of_range:") | _has(reasons_all, "outside_training:")
    drift_rows = _has(reasons_all, "drift:")
    return {
        "minutes": clean_minutes,
        "rmse_estimate": _rmse(est_all[clean_all], t_all[clean_all]),
        "rmse_corrected": _rmse(cor_all[clean_all], t_all[clean_all]),
        "rmse_ridge": _rmse(ridge_all[clean_all], t_all[clean_all]),
        "rmse_ridge_corrected": _rmse(ridge_cor[clean_all], t_all[clean_all]),
        "coverage": float(np.mean(inside[clean_all])),
        "width": float(np.mean((hi_all - lo_all)[clean_all])),
        "status": _shares(status_all, clean_all),
        "frozen_rows": float(np.mean(frozen_rows[clean_all])),
        "range_rows": float(np.mean(range_rows[clean_all])),
        "drift_rows": float(np.mean(drift_rows[clean_all])),
        "drift_onsets_by_signal": _drift_onsets_by_signal(reasons_all, clean_all),
        "alarms": _alarm_onsets(tables, clean, clean_all),
        "coverage_per_unit": {
            u: float(
                np.mean(
                    ((truth[u] >= tables[u]["low"]) & (truth[u] <= tables[u]["high"]))[clean[u]]
                )
            )
            for u in UNITS
        },
    }


def _drift_onsets_by_signal(reasons: list[list[str]], where: Mask) -> dict[str, int]:
    """Per sensor, how often a ``drift:<signal>`` flag starts on the rows ``where``."""
    names = sorted({r[6:] for why in reasons for r in why if r.startswith("drift:")})
    return {n: _onsets(_has(reasons, f"drift:{n}"), where) for n in names if n}


def _alarm_onsets(
    tables: dict[str, dict[str, Any]], clean: dict[str, Mask], clean_all: Mask
) -> dict[str, dict[str, float]]:
    """Per alarm: onsets (off to on) on clean rows, per week of clean operation, share on."""
    clean_minutes = float(clean_all.sum())
    alarms = {}
    for a in ALARMS:
        onsets = sum(_onsets(tables[u]["alarms"][a], clean[u]) for u in UNITS)
        alarms[a] = {
            "onsets": onsets,
            "per_week": onsets / (clean_minutes / MINUTES_PER_WEEK),
            "rows_on": float(
                np.mean(np.concatenate([tables[u]["alarms"][a] for u in UNITS])[clean_all])
            ),
        }
    return alarms


def _fault(
    f: Fault, window: Mask, t: dict[str, Any], truth: FloatArray, card: ModelCard
) -> dict[str, Any]:
    """Detection and status figures of one fault on unit A."""
    out: dict[str, Any] = {
        "kind": f.kind,
        "signal": f.signal,
        "size": f.size,
        "start_min": f.start_min,
        "minutes": f.end_min - f.start_min,
    }
    reasons = t["reasons"]
    out["status"] = _shares(t["status"], window)
    out["rmse_estimate"] = _rmse(t["estimate"][window], truth[window])
    out["rmse_corrected"] = _rmse(t["corrected"][window], truth[window])
    out["coverage"] = float(np.mean(((truth >= t["low"]) & (truth <= t["high"]))[window]))
    if f.kind == "stuck":
        out["delay_min"] = _first(_has(reasons, f"frozen:{f.signal}"), window)
    elif f.kind == "drift":
        flagged = _has(reasons, f"drift:{f.signal}") | t["alarms"]["drift"]
        delay = _first(flagged, window)
        out["delay_min"] = delay
        if delay is not None and card.calibration is not None:
            kelvin = f.size * delay / 60
            pca = card.calibration.inputs
            sd = pca.residual_sd[pca.signals.index(str(f.signal))]
            out["drift_at_detection"] = kelvin
            out["noise_sds_at_detection"] = kelvin / THERMOCOUPLE_NOISE_SD
            out["residual_sds_at_detection"] = kelvin / sd
            red = card.calibration.redundancy
            if red is not None and f.signal in red.signals:
                j = red.signals.index(str(f.signal))
                out["redundancy_sds_at_detection"] = kelvin / (red.residual_sd[j] * red.scale[j])
        out["also_flagged"] = _others_flagged(reasons, window, str(f.signal))
    elif f.kind == "pressure_step":
        out["delay_min"] = _first(t["alarms"]["residual"], window)
        step = np.flatnonzero(window)
        before = np.arange(step[0] - len(step), step[0])
        out["rmse_before_step"] = {
            "estimate": _rmse(t["estimate"][before], truth[before]),
            "corrected": _rmse(t["corrected"][before], truth[before]),
        }
    elif f.kind == "analyzer_outage":
        out["delay_min"] = _first(t["alarms"]["analyzer_silent"], window)
    elif f.kind == "feed_move":
        flagged = (t["status"] != "good") & (
            _has(reasons, "outside_training:") | _has(reasons, "t2")
        )
        out["delay_min"] = _first(flagged, window)
        held = window.copy()
        held[np.flatnonzero(window)[: round(FEED_RAMP_MINUTES)]] = False
        out["status_at_new_rate"] = _shares(t["status"], held)
    return out


def _others_flagged(reasons: list[list[str]], window: Mask, signal: str) -> dict[str, int]:
    """Other sensors named ``drift:<name>`` during a drift fault, with their first row (the
    drifting sensor enters the others' predictions)."""
    first: dict[str, int] = {}
    rows = np.flatnonzero(window).tolist()
    for k in rows:
        for why in reasons[k]:
            name = why.removeprefix("drift:")
            if why.startswith("drift:") and name != signal and name not in first:
                first[name] = k - rows[0]
    return first


def _lab_counts(labs: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {"posted": len(labs), "accepted": 0, "unmatched": 0, "errors": 0}
    for lab in labs:
        if "error" in lab:
            counts["errors"] += 1
        elif lab["accepted"]:
            counts["accepted"] += 1
        elif lab["estimate"] is None:
            counts["unmatched"] += 1
        else:
            key = f"rejected_{lab['reason']}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def _summary(
    clean: dict[str, Any],
    faults: list[dict[str, Any]],
    labs: dict[str, Any],
    tables: dict[str, Any],
) -> dict[str, Any]:
    by_kind = {f["kind"]: f for f in faults}
    step = by_kind["pressure_step"]
    return {
        "coverage_clean": clean["coverage"],
        "frozen_rows_clean": clean["frozen_rows"],
        "range_rows_clean": clean["range_rows"],
        "drift_or_residual_alarm_onsets_clean": clean["alarms"]["drift"]["onsets"]
        + clean["alarms"]["residual"]["onsets"],
        "rmse": {
            k: clean[k]
            for k in ("rmse_estimate", "rmse_corrected", "rmse_ridge", "rmse_ridge_corrected")
        },
        "delays_min": {f["kind"]: f["delay_min"] for f in faults},
        "drift_noise_sds_at_detection": by_kind["drift"].get("noise_sds_at_detection"),
        "feed_move_not_good": 1 - by_kind["feed_move"]["status_at_new_rate"]["good"],
        "step_rmse_estimate": step["rmse_estimate"],
        "step_rmse_corrected": step["rmse_corrected"],
        "final_bias": {u: float(tables[u]["bias"][-1]) for u in UNITS},
        "labs_accepted": {u: labs[u]["accepted"] for u in UNITS},
    }


def _series(
    scenario: Scenario,
    tables: dict[str, Any],
    truth: dict[str, FloatArray],
    analyzer: dict[str, FloatArray],
    ridge: dict[str, FloatArray],
    windows: dict[Fault, Mask],
) -> dict[str, Any]:
    """Unit A's rows for the plot (every value, minute by minute)."""
    t = tables[UNITS[0]]
    u = UNITS[0]
    return {
        "minute": (np.arange(len(truth[u])) + scenario.start_min).tolist(),
        "truth": truth[u].tolist(),
        "estimate": t["estimate"].tolist(),
        "corrected": t["corrected"].tolist(),
        "low": t["low"].tolist(),
        "high": t["high"].tolist(),
        "ridge": ridge[u].tolist(),
        "analyzer": [None if not np.isfinite(v) else float(v) for v in analyzer[u]],
        "status": t["status"].tolist(),
        "alarms": {a: t["alarms"][a].astype(int).tolist() for a in ALARMS},
        "faults": [[f.kind, f.start_min, f.end_min] for f in windows],
        "qualities": [[q.kind, q.start_min, q.end_min] for q in scenario.qualities],
    }
