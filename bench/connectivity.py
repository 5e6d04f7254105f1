"""The paper suite's connectivity plot: what connection appraisal kept, drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.plot_style import figure, save
from bench.report import TITLE


def plot_connectivity(records: list[dict[str, Any]], dataset: str, path: Path) -> Path | None:
    """What CA kept at noise 0: the surviving network of seed 0 (left) and, over all seeds,
    how many first-layer connections each input keeps (right): which sensors matter."""
    runs = sorted(
        (
            r
            for r in records
            if "structure" in r
            and r["metrics"]["dataset"] == dataset
            and float(r["metrics"]["noise"]) == 0.0
        ),
        key=lambda r: r["metrics"]["seed"],
    )
    if not runs:
        return None
    names = runs[0]["structure"]["feature_names"]
    fig, (net_ax, bar_ax) = figure(
        1, 2, figsize=(12, max(4.0, 0.28 * len(names) + 1)), gridspec_kw={"width_ratios": [3, 2]}
    )
    first_layer = _draw_network(net_ax, runs[0], names, dataset)
    _draw_input_bars(bar_ax, runs, names, first_layer)
    return save(fig, path)


def _draw_network(net_ax: Any, run: dict[str, Any], names: list[str], dataset: str) -> int:
    """The surviving network of one run: kept connections in red, the linear path in
    purple, removed neurons hollow. Returns the first hidden layer's width."""
    masks = [
        np.array([[c == "1" for c in row] for row in layer]) for layer in run["structure"]["masks"]
    ]
    sizes = [masks[0].shape[1], *(m.shape[0] for m in masks)]

    def ys(n: int) -> Any:
        return np.linspace(0, 1, n) if n > 1 else np.array([0.5])

    linear = run["structure"].get("linear")
    direct = np.array([c == "1" for c in linear[0]]) if linear else np.zeros(sizes[0], dtype=bool)
    alive: list[Any] = [masks[0].any(axis=0) | direct]
    for i in range(len(masks) - 1):
        alive.append(masks[i].any(axis=1) & masks[i + 1].any(axis=0))
    alive.append(np.ones(sizes[-1], dtype=bool))
    for layer, mask in enumerate(masks):
        y_in, y_out = ys(sizes[layer]), ys(sizes[layer + 1])
        for o, i in zip(*np.nonzero(mask), strict=True):
            net_ax.plot(
                [layer, layer + 1], [y_in[i], y_out[o]], color="#d62728", lw=0.4, alpha=0.35
            )
    for k in np.flatnonzero(direct).tolist():  # the linear path: inputs straight to the output
        net_ax.plot([0, len(masks)], [ys(sizes[0])[k], 0.5], color="#9467bd", lw=0.8, alpha=0.55)
    for layer, n in enumerate(sizes):
        y = ys(n)
        kept = alive[layer]
        net_ax.scatter(np.full(n, layer)[kept], y[kept], s=14, color="black", zorder=3)
        net_ax.scatter(
            np.full(n, layer)[~kept],
            y[~kept],
            s=14,
            facecolors="none",
            edgecolors="#bbbbbb",
            zorder=3,
        )
    for i, name in enumerate(names):
        net_ax.text(-0.08, ys(len(names))[i], name, ha="right", va="center", fontsize=7)
    labels = ["inputs", *(f"hidden {k + 1}" for k in range(len(masks) - 1)), "output"]
    net_ax.set_xticks(range(len(sizes)), labels)
    net_ax.set_yticks([])
    net_ax.set_xlim(-0.9, len(sizes) - 0.8)
    kept_hidden = ", ".join(f"{int(a.sum())}/{a.size}" for a in alive[1:-1])
    net_ax.set_title(
        f"{TITLE[dataset]}, CA seed {run['metrics']['seed']} (first network): "
        f"{run['metrics']['pruning_rate']:.0%} pruned, hidden neurons kept {kept_hidden}; "
        f"purple: linear path ({int(direct.sum())} inputs)",
        fontsize=9,
    )
    return int(masks[0].shape[0])


def _draw_input_bars(
    bar_ax: Any, runs: list[dict[str, Any]], names: list[str], first_layer: int
) -> None:
    """Over all seeds, how many first-layer connections each input keeps, and how often
    the hidden layers and the linear path read it."""
    # connections kept from each input into the first hidden layer, one row per seed
    per_input = np.array(
        [
            [sum(row[i] == "1" for row in r["structure"]["masks"][0]) for i in range(len(names))]
            for r in runs
        ]
    )
    linear_used = np.array(
        [
            [c == "1" for c in r["structure"]["linear"][0]]
            if r["structure"].get("linear")
            else [False] * len(names)
            for r in runs
        ]
    ).mean(axis=0)
    order = np.arange(len(names))[::-1]
    bar_ax.barh(order, per_input.mean(axis=0), color="#d62728", alpha=0.6)
    for seed_counts in per_input:  # one dot per seed: the spread without a symmetric error bar
        bar_ax.scatter(seed_counts, order, s=8, color="black", zorder=3)

    bar_ax.set_yticks(
        order,
        [
            f"{n} (hidden {h:.0%}, linear {lin:.0%})"
            for n, h, lin in zip(names, (per_input > 0).mean(axis=0), linear_used, strict=True)
        ],
        fontsize=7,
    )
    bar_ax.set_xlabel(
        f"first-layer connections kept (of {first_layer}), mean over {len(runs)} seeds"
    )
    bar_ax.grid(alpha=0.3, axis="x")
