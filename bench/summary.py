"""From run records to the published numbers: one flat row per run, mean and std per group,
CA's paired differences to every baseline, and the markdown tables of docs/benchmarks.md.

Learning speed is computed here, after the fact, against the dense run of the same dataset,
noise and seed (epochs until validation loss first reaches 1.1x dense's best), so no run has to
wait for its dense run to finish.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable
from typing import Any

from bench.suite import DEFAULT_VARIANT

GROUP = ("dataset", "noise", "variant", "method")
FIELDS = (
    "dataset",
    "noise",
    "variant",
    "method",
    "seed",
    "test_rmse",
    "test_mae",
    "test_r2",
    "val_rmse",
    "train_rmse",
    "gap",
    "test_truth_rmse",
    "test_truth_r2",
    "test_error",
    "val_error",
    "train_error",
    "pruning_rate",
    "effective_rate",
    "params_before",
    "params_after",
    "hidden",
    "neurons_removed",
    "inputs_removed",
    "epochs",
    "best_epoch",
    "best_val_loss",
    "val_loss_auc",
    "epochs_to_target",
    "train_seconds",
    "seconds_per_epoch",
)
NUMERIC = tuple(f for f in FIELDS if f not in (*GROUP, "hidden", "seed"))


def outputs_of(dataset: str) -> int:
    return 10 if dataset == "mnist" else 1


def flatten(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run with the derived figures (gap, effective rate, epochs to target)."""
    records = list(records)
    dense: dict[tuple[str, float, int], dict[str, Any]] = {}
    for rec in records:
        m = rec["metrics"]
        if m["method"] == "dense":
            dense[(m["dataset"], float(m["noise"]), int(m["seed"]))] = rec
    rows = []
    for rec in records:
        m = rec["metrics"]
        row: dict[str, Any] = {k: m.get(k) for k in FIELDS}
        row["variant"] = rec.get("variant", DEFAULT_VARIANT)
        row["noise"] = float(m["noise"])
        if m.get("test_error") is not None:
            row["gap"] = m["test_error"] - m["train_error"]
        elif m.get("train_rmse") is not None:
            row["gap"] = m["test_rmse"] - m["train_rmse"]
        if isinstance(m.get("neurons_removed"), list):
            row["neurons_removed"] = sum(m["neurons_removed"])
        if isinstance(m.get("inputs_removed"), list):
            row["inputs_removed"] = len(m["inputs_removed"])
        if m.get("hidden") is not None:
            row["hidden"] = "x".join(str(h) for h in m["hidden"])
        ref = dense.get((m["dataset"], row["noise"], int(m["seed"])))
        if ref is not None and "history" in rec:
            target = 1.1 * ref["metrics"]["best_val_loss"]
            hits = [h["epoch"] for h in rec["history"] if h["val_loss"] <= target]
            row["epochs_to_target"] = hits[0] if hits else None
            row["effective_rate"] = effective_rate(m, ref["metrics"])
        rows.append(row)
    rows.sort(key=lambda r: (r["dataset"], r["noise"], r["variant"], r["method"], r["seed"]))
    return rows


def effective_rate(metrics: dict[str, Any], dense: dict[str, Any]) -> float:
    """Share of the full network's weights a run does without: its pruning rate, or for the
    small dense network 1 - its weights / the full network's weights."""
    if metrics["method"] != "small-dense":
        return float(metrics["pruning_rate"])
    n_out = outputs_of(metrics["dataset"])
    small: int = metrics["params_before"] - sum(metrics["hidden"]) - n_out
    full: int = dense["params_before"] - sum(dense["hidden"]) - n_out
    return 1.0 - small / full


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in FIELDS})
    return buf.getvalue()


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, std and count of every numeric figure per (dataset, noise, variant, method)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP), []).append(row)
    out = []
    for key, members in groups.items():
        entry: dict[str, Any] = dict(zip(GROUP, key, strict=True))
        entry["seeds"] = len(members)
        for name in NUMERIC:
            values = [float(r[name]) for r in members if r.get(name) is not None]
            if values:
                entry[name] = _stats(values)
        out.append(entry)
    return out


def main_metric(dataset: str) -> str:
    return "test_error" if dataset == "mnist" else "test_rmse"


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CA (default variant) against every other method and CA variant, paired by seed.

    ``diff`` is other - CA on the main error measure: positive means CA is better. The
    difference "exceeds the seed spread" when its mean is larger than the larger of the two
    methods' std over seeds; ``wins`` counts the seeds where CA is better.
    """
    index = {
        (r["dataset"], r["noise"], r["variant"], r["method"], r["seed"]): r
        for r in rows
        if r.get(main_metric(r["dataset"])) is not None
    }
    cells = sorted({(r["dataset"], r["noise"]) for r in rows})
    out = []
    for dataset, noise in cells:
        metric = main_metric(dataset)
        others = sorted(
            {
                (r["variant"], r["method"])
                for r in rows
                if (r["dataset"], r["noise"]) == (dataset, noise)
            }
            - {(DEFAULT_VARIANT, "ca")}
        )
        for variant, method in others:
            pairs = [
                (index[(dataset, noise, DEFAULT_VARIANT, "ca", s)][metric], r[metric])
                for (d, n, v, m, s), r in index.items()
                if (d, n, v, m) == (dataset, noise, variant, method)
                and (dataset, noise, DEFAULT_VARIANT, "ca", s) in index
            ]
            if not pairs:
                continue
            diffs = [o - c for c, o in pairs]
            spread = max(_stats([c for c, _ in pairs])["std"], _stats([o for _, o in pairs])["std"])
            mean = statistics.fmean(diffs)
            out.append(
                {
                    "dataset": dataset,
                    "noise": noise,
                    "variant": variant,
                    "method": method,
                    "metric": metric,
                    "diff_mean": mean,
                    "diff_std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
                    "seed_spread": spread,
                    # one seed has no spread to compare with
                    "exceeds_spread": abs(mean) > spread if len(diffs) > 1 else None,
                    "wins": sum(d > 0 for d in diffs),
                    "n": len(diffs),
                }
            )
    return out
