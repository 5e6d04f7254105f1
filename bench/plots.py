"""The suite's figures as PNG files.

Built on matplotlib's ``Figure`` directly (no pyplot): it renders with the Agg canvas, needs
no display and keeps no global figure state between plots.

Each function draws one figure from the run rows or records and returns the path it wrote, or
None when the runs it needs are not there (a dataset skipped or left out with --only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.connectivity import plot_connectivity
from bench.plot_style import figure, save
from bench.report import ORDER, TITLE
from bench.suite import DEFAULT_VARIANT

COLORS = {
    "ca": "#d62728",
    "dense": "#1f77b4",
    "small-dense": "#17becf",
    "gmp": "#2ca02c",
    "magnitude": "#ff7f0e",
    "random": "#7f7f7f",
    "ridge": "#9467bd",
    "ridge_transformed": "#e377c2",
    "persistence": "#8c564b",
}
TABLES = ("debutanizer", "debutanizer_lags", "column_a")


def _main(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["variant"] == DEFAULT_VARIANT]


def plot_error_vs_rate(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Test RMSE against pruning rate, one point per run, a panel per dataset and noise."""
    rows = _main(rows)
    panels = [
        (d, n) for d in TABLES for n in sorted({r["noise"] for r in rows if r["dataset"] == d})
    ]
    if not panels:
        return None
    cols = max(sum(1 for d2, _ in panels if d2 == d) for d in TABLES)
    used = [d for d in TABLES if any(p[0] == d for p in panels)]
    fig, axes = figure(len(used), cols, figsize=(3.6 * cols, 3.2 * len(used)), squeeze=False)
    for i, dataset in enumerate(used):
        noises = [n for d, n in panels if d == dataset]
        for j in range(cols):
            ax = axes[i][j]
            if j >= len(noises):
                ax.set_visible(False)
                continue
            cell = [r for r in rows if r["dataset"] == dataset and r["noise"] == noises[j]]
            for method in ORDER:
                pts = [r for r in cell if r["method"] == method]
                if not pts:
                    continue
                if method in ("ridge", "ridge_transformed", "persistence"):
                    y = float(np.mean([r["test_rmse"] for r in pts]))
                    ax.axhline(y, color=COLORS[method], ls="--", lw=1, label=method)
                    continue
                ax.scatter(
                    [100 * (r.get("effective_rate") or 0.0) for r in pts],
                    [r["test_rmse"] for r in pts],
                    s=18,
                    color=COLORS[method],
                    label=method,
                    alpha=0.8,
                )
            ax.set_title(f"{TITLE[dataset]}, noise {noises[j]:g}", fontsize=9)
            ax.set_xlabel("pruning rate %")
            ax.set_ylabel("test RMSE")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def _mean_curve(
    histories: Sequence[list[dict[str, float]]], key: str, *, hold_last: bool
) -> tuple[Any, Any]:
    """Mean over seeds per epoch. Runs stop early at different epochs: a quantity that stays
    put once a run stops (its sparsity) is held at its last value; any other curve ends where
    the first run stopped, so the mean never silently changes which seeds it averages."""
    length = max(len(h) for h in histories) if hold_last else min(len(h) for h in histories)
    grid = np.empty((len(histories), length))
    for i, h in enumerate(histories):
        values = [e[key] for e in h][:length]
        grid[i] = values + [values[-1]] * (length - len(values))
    return np.arange(1, length + 1), grid.mean(axis=0)


def plot_learning(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Validation loss and sparsity per epoch (mean over seeds) for CA, dense and GMP, at
    noise 0: how fast each method learns and when CA prunes."""
    datasets = [
        d
        for d in (*TABLES, "mnist")
        if any(r["metrics"]["dataset"] == d and "history" in r for r in records)
    ]
    if not datasets:
        return None
    fig, axes = figure(2, len(datasets), figsize=(4.2 * len(datasets), 6), squeeze=False)
    for j, dataset in enumerate(datasets):
        for method in ("dense", "ca", "gmp"):
            hist = [
                r["history"]
                for r in records
                if r["metrics"]["dataset"] == dataset
                and r["metrics"]["method"] == method
                and float(r["metrics"]["noise"]) == 0.0
                and r.get("variant", DEFAULT_VARIANT) == DEFAULT_VARIANT
            ]
            if not hist:
                continue
            x, loss = _mean_curve(hist, "val_loss", hold_last=False)
            axes[0][j].plot(x, loss, color=COLORS[method], label=method)
            x, sparsity = _mean_curve(hist, "sparsity", hold_last=True)
            axes[1][j].plot(x, 100 * sparsity, color=COLORS[method], label=method)
        loss_name = "cross-entropy" if dataset == "mnist" else "MSE (standardized)"
        axes[0][j].set_title(f"{TITLE[dataset]}, noise 0", fontsize=9)
        axes[0][j].set_ylabel(f"validation {loss_name}")
        axes[1][j].set_ylabel("pruning rate %")
        axes[1][j].set_xlabel("epoch")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save(fig, path)


def plot_noise(summary: list[dict[str, Any]], path: Path) -> Path | None:
    """Test RMSE (mean +- std over seeds) against the input noise level, per method."""
    datasets = [d for d in TABLES if any(e["dataset"] == d for e in summary)]
    if not datasets:
        return None
    fig, axes = figure(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for k, method in enumerate(ORDER):
            pts = sorted(
                (
                    (e["noise"], e["test_rmse"])
                    for e in summary
                    if e["dataset"] == dataset
                    and e["method"] == method
                    and e["variant"] == DEFAULT_VARIANT
                    and "test_rmse" in e
                ),
                key=lambda p: p[0],
            )
            if not pts:
                continue
            x = np.array([p[0] for p in pts]) + (k - 3.5) * 0.0012  # small dodge
            ax.errorbar(
                x,
                [p[1]["mean"] for p in pts],
                yerr=[p[1]["std"] for p in pts],
                color=COLORS[method],
                marker="o",
                ms=3,
                capsize=2,
                lw=1,
                label=method,
            )
        ax.set_title(TITLE[dataset], fontsize=9)
        ax.set_xlabel("input noise sigma (data units)")
        ax.set_ylabel("test RMSE")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def plot_mnist(
    rows: list[dict[str, Any]], records: list[dict[str, Any]], path: Path
) -> Path | None:
    """MNIST test accuracy against pruning rate per run, and which pixels CA still reads."""
    cell = [r for r in _main(rows) if r["dataset"] == "mnist"]
    if not cell:
        return None
    kept = [
        r["metrics"]["input_connections"]
        for r in records
        if r["metrics"]["dataset"] == "mnist"
        and r["metrics"]["method"] == "ca"
        and "input_connections" in r["metrics"]
    ]
    # The pixel map needs per-pixel counts, which runs made before they were recorded lack.
    if kept:
        fig, (ax, img_ax) = figure(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    else:
        fig, ax = figure(1, 1, figsize=(6, 4))
    for method in ORDER:
        pts = [r for r in cell if r["method"] == method]
        if pts:
            ax.scatter(
                [100 * (r.get("effective_rate") or 0.0) for r in pts],
                [100 * (1 - r["test_error"]) for r in pts],
                s=20,
                color=COLORS[method],
                label=method,
                alpha=0.8,
            )
    ax.set_xlabel("pruning rate %")
    ax.set_ylabel("test accuracy %")
    ax.set_title("MNIST 784-300-100-10", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if kept:
        side = math.isqrt(len(kept[0]))
        share = np.mean(kept, axis=0).reshape(side, side)
        shown = img_ax.imshow(share, cmap="magma", vmin=0)
        fig.colorbar(shown, ax=img_ax, fraction=0.046)
        img_ax.set_title(
            f"first-layer connections CA keeps per pixel ({len(kept)} seeds)", fontsize=9
        )
        img_ax.set_xticks([])
        img_ax.set_yticks([])
    return save(fig, path)


def plot_series(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Estimate, ridge, truth and analyzer over Column A's test days (CA, noise 0, seed 0)."""
    runs = sorted(
        (r for r in records if "series" in r and r["metrics"]["dataset"] == "column_a"),
        key=lambda r: r["metrics"]["seed"],
    )
    if not runs:
        return None
    series = runs[0]["series"]
    if series["timestamp"]:
        # UTC ISO times; numpy's datetime64 has no zones, so drop it after converting
        x: Any = np.array([t[:19] for t in series["timestamp"]], dtype="datetime64[s]")
    else:
        x = np.arange(len(series["truth"]))
    truth = np.asarray(series["truth"])
    est, ridge = np.asarray(series["estimate"]), np.asarray(series["ridge"])
    unit = series.get("unit", "")
    fig, (ax, err_ax) = figure(
        2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    ax.plot(x, truth, color="black", lw=1.4, label="true composition")
    ax.scatter(x, series["analyzer"], s=9, color="#7f7f7f", label="analyzer", zorder=3)
    ax.plot(x, est, color=COLORS["ca"], lw=1.1, label="CA network (served estimate)")
    ax.plot(x, ridge, color=COLORS["ridge"], lw=1.0, ls="--", label="ridge regression")
    ax.set_ylabel(f"bottoms impurity ({unit})")

    def rmse(a: Any) -> float:
        return float(np.sqrt(np.mean((a - truth) ** 2)))

    ax.set_title(
        f"Column A test days, seed {runs[0]['metrics']['seed']}: RMSE vs truth "
        f"network {rmse(est):.4f}, ridge {rmse(ridge):.4f} {unit}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    err_ax.plot(x, est - truth, color=COLORS["ca"], lw=1.0, label="network - truth")
    err_ax.plot(x, ridge - truth, color=COLORS["ridge"], lw=1.0, ls="--", label="ridge - truth")
    err_ax.axhline(0, color="black", lw=0.6)
    err_ax.set_ylabel(f"error ({unit})")
    err_ax.legend(fontsize=7)
    err_ax.grid(alpha=0.3)
    return save(fig, path)


def plot_all(
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    records: list[dict[str, Any]],
    directory: Path,
) -> list[Path]:
    """Every figure the suite publishes; the ones without data are left out."""
    made = [
        plot_error_vs_rate(rows, directory / "rmse_vs_pruning_rate.png"),
        plot_learning(records, directory / "learning_speed.png"),
        plot_noise(summary, directory / "rmse_vs_noise.png"),
        *(plot_connectivity(records, d, directory / f"connectivity_{d}.png") for d in TABLES),
        plot_mnist(rows, records, directory / "mnist_accuracy_vs_pruning_rate.png"),
        plot_series(records, directory / "column_a_test_days.png"),
    ]
    return [p for p in made if p is not None]
