"""The report a training run prints: the network beside the simple alternatives, in the
target's unit, and what the pruned model still reads. Built from ``metrics.json`` alone, so
the same text can be rebuilt from any finished run."""

from __future__ import annotations

from typing import Any

BASELINE_LABELS = {
    "ridge": "ridge regression",
    "ridge_transformed": "ridge on the transformed target",
    "persistence": "persistence",
}


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g} {unit}".rstrip()


def kept_inputs_line(metrics: dict[str, Any]) -> str:
    """'T03 at lags 0, 5; u1 at lag 0 (12 of 33 candidate inputs)' from the kept names."""
    names: list[str] = metrics["feature_names"]
    kept = set(metrics["inputs_kept"])
    by_signal: dict[str, list[int]] = {}
    for name in names:
        signal, _, lag = name.rpartition("_lag")
        if not signal or not lag.isdigit():
            signal, lag = name, "0"
        if name in kept:
            by_signal.setdefault(signal, []).append(int(lag))
    parts = [
        f"{signal} at lag{'s' if len(lags) > 1 else ''} {', '.join(map(str, lags))}"
        for signal, lags in by_signal.items()
    ]
    return f"{'; '.join(parts) or 'none'} ({len(kept)} of {len(names)} candidate inputs)"


Row = tuple[str, str, str, str, str]


def summary_lines(m: dict[str, Any]) -> list[str]:
    """The run's report, one line per entry."""
    unit = m.get("unit", "")
    members = int(m.get("members", 1))
    what = f"{m['method']} network" + (f", ensemble of {members}" if members > 1 else "")
    transform = m.get("target_transform", "none")
    fitted = "" if transform == "none" else f", fitted to {transform}(target)"
    lines = [
        f"{m['dataset']}: {what} (seed {m['seed']}, input noise {m['noise']:g}); errors in "
        f"{unit or 'the target unit'}{fitted}",
        "",
    ]
    rows = _table_rows(m, unit)
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    lines += _against_ridge(m, members)
    lines.append(f"Inputs kept: {kept_inputs_line(m)}.")
    if m["inputs_removed"]:
        lines.append(f"No longer needed: {', '.join(m['inputs_removed'])}.")
    ended = int(m.get("ended_linear", 0))
    if 0 < ended < members:  # all of them is said above, with the comparison
        lines.append(
            f"{ended} of {members} network{'s' if members > 1 else ''} ended at the linear model"
            " (nothing reached after pruning beat the starting ridge solution on validation)."
        )
    lines += _pruning_and_training(m, members)
    lines += [f"Warning: {w}." for w in m.get("data_checks", {}).get("warnings", [])]
    return lines


def _table_rows(m: dict[str, Any], unit: str) -> list[Row]:
    """The network and each baseline: test RMSE, MAE, R2 and validation RMSE (and against
    the true value, where the data has it)."""
    rows: list[Row] = [
        ("", "test RMSE", "test MAE", "test R2", "validation RMSE"),
        (
            "network",
            _num(m["test_rmse"], unit),
            _num(m["test_mae"], unit),
            f"{m['test_r2']:.3f}",
            _num(m["val_rmse"], unit),
        ),
    ]
    if "test_truth_rmse" in m:
        rows.append(
            (
                "  against the true value",
                _num(m["test_truth_rmse"], unit),
                "",
                f"{m['test_truth_r2']:.3f}",
                _num(m.get("val_truth_rmse"), unit),
            )
        )
    for name, b in m.get("baseline", {}).items():
        rows += _baseline_rows(name, b, unit)
    return rows


def _baseline_rows(name: str, b: dict[str, Any], unit: str) -> list[Row]:
    test, val = b["test"]["analyzer"], b["validation"]["analyzer"]
    label = BASELINE_LABELS.get(name, name)
    if "feature" in b:
        label += f" ({b['feature']})"
    rows: list[Row] = [
        (
            label,
            _num(test["rmse"], unit),
            _num(test["mae"], unit),
            f"{test['r2']:.3f}",
            _num(val["rmse"], unit),
        )
    ]
    if "truth" in b["test"]:
        truth = b["test"]["truth"]
        rows.append(
            (
                "  against the true value",
                _num(truth["rmse"], unit),
                "",
                f"{truth['r2']:.3f}",
                _num(b["validation"].get("truth", {}).get("rmse"), unit),
            )
        )
    return rows


def _against_ridge(m: dict[str, Any], members: int) -> list[str]:
    """One sentence on the network against ridge regression, when the run fitted ridge."""
    ridge = m.get("baseline", {}).get("ridge")
    if ridge is None:
        return []
    if int(m.get("ended_linear", 0)) == members and m["network"].get("linear_path"):
        return [
            "The network is the linear model: no network beat its starting ridge solution on "
            "validation, so every one ended there"
            + (
                " (ridge refitted on train + validation)."
                if m.get("refit")
                else " (test RMSE equal to ridge's)."
            )
        ]
    r = ridge["test"]["analyzer"]["rmse"]
    change = (m["test_rmse"] - r) / r
    return [
        f"The network's test RMSE is {abs(change):.1%} {'below' if change < 0 else 'above'} "
        "ridge regression's"
        + (
            "; on validation it is not better, so do not prefer it to ridge."
            if m["val_rmse"] >= ridge["validation"]["analyzer"]["rmse"]
            else "."
        )
    ]


def _pruning_and_training(m: dict[str, Any], members: int) -> list[str]:
    return [
        f"Pruning: {m['pruning_rate']:.1%} of connections removed (per layer "
        f"{', '.join(f'{r:.0%}' for r in m['pruning_rate_per_layer'])}); neurons removed per "
        f"hidden layer {', '.join(str(n) for n in m['neurons_removed'])}; parameters "
        f"{m['params_before']} -> {m['params_after']}.",
        f"Training: {m['train_seconds']:.1f} s; best epoch {m['best_epoch']} of {m['epochs']}"
        + (" (first network)" if members > 1 else "")
        + (
            f"; epochs to the learning-speed target {m['epochs_to_target']}"
            if m.get("epochs_to_target")
            else ""
        )
        + ".",
    ]
