"""Markdown tables of the paper suite, written from the summary so docs and JSON agree.

The conclusions in docs/benchmarks.md are written by a person reading these tables; the tables
themselves are generated (``<out>/tables.md``) and pasted, never typed.
"""

from __future__ import annotations

from typing import Any

from bench.suite import ABLATIONS, DEFAULT_VARIANT

ORDER = (
    "ca",
    "dense",
    "small-dense",
    "gmp",
    "magnitude",
    "random",
    "ridge",
    "ridge_transformed",
    "persistence",
)
LABEL = {
    "ca": "**CA**",
    "dense": "dense",
    "small-dense": "small dense (CA's parameter count)",
    "gmp": "GMP at CA's sparsity",
    "magnitude": "magnitude one-shot at CA's sparsity",
    "random": "random at CA's sparsity",
    "ridge": "ridge (alpha by validation)",
    "ridge_transformed": "ridge on the transformed target (alpha by validation)",
    "persistence": "persistence (latest analyzer value)",
}
TITLE = {
    "debutanizer": "Debutanizer",
    "debutanizer_lags": "Debutanizer, second track (candidate lags)",
    "column_a": "Simulated Column A",
    "mnist": "MNIST",
}


def _cell(entry: dict[str, Any] | None, name: str, scale: float = 1.0, digits: int = 4) -> str:
    if entry is None or name not in entry:
        return "-"
    s = entry[name]
    return f"{s['mean'] * scale:.{digits}f} +- {s['std'] * scale:.{digits}f}"


def _lookup(summary: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(e["dataset"], e["noise"], e["variant"], e["method"]): e for e in summary}


def _methods(summary: list[dict[str, Any]], dataset: str) -> list[str]:
    present = {e["method"] for e in summary if e["dataset"] == dataset}
    return [m for m in ORDER if m in present]


def _noises(summary: list[dict[str, Any]], dataset: str) -> list[float]:
    return sorted({e["noise"] for e in summary if e["dataset"] == dataset})


def _by_noise_table(
    summary: list[dict[str, Any]],
    dataset: str,
    name: str,
    scale: float,
    digits: int,
    networks: bool,
) -> list[str]:
    at = _lookup(summary)
    noises = _noises(summary, dataset)
    lines = [
        "| method | " + " | ".join(f"noise {n:g}" for n in noises) + " |",
        "|---|" + "---|" * len(noises),
    ]
    for method in _methods(summary, dataset):
        cells = [
            _cell(at.get((dataset, n, DEFAULT_VARIANT, method)), name, scale, digits)
            for n in noises
        ]
        if networks and all(c == "-" for c in cells):
            continue
        lines.append(f"| {LABEL[method]} | " + " | ".join(cells) + " |")
    return lines


def _detail_table(summary: list[dict[str, Any]], dataset: str) -> list[str]:
    at = _lookup(summary)
    error = "test error %" if dataset == "mnist" else "test RMSE"
    train = "train error %" if dataset == "mnist" else "train RMSE"
    scale, digits = (100.0, 2) if dataset == "mnist" else (1.0, 4)
    lines = [
        f"| noise | method | {train} | {error} | gap (test - train) | pruned % | parameters "
        "| epochs to 1.1x dense best | mean val loss (AUC) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for noise in _noises(summary, dataset):
        for method in _methods(summary, dataset):
            e = at.get((dataset, noise, DEFAULT_VARIANT, method))
            if e is None or "epochs" not in e:
                continue
            err = "test_error" if dataset == "mnist" else "test_rmse"
            tr = "train_error" if dataset == "mnist" else "train_rmse"
            lines.append(
                f"| {noise:g} | {LABEL[method]} | {_cell(e, tr, scale, digits)} | "
                f"{_cell(e, err, scale, digits)} | {_cell(e, 'gap', scale, digits)} | "
                f"{_cell(e, 'effective_rate', 100, 1)} | {_cell(e, 'params_after', 1, 0)} | "
                f"{_cell(e, 'epochs_to_target', 1, 1)} | {_cell(e, 'val_loss_auc', 1, 3)} |"
            )
    return lines


def _comparison_table(comparisons: list[dict[str, Any]], dataset: str) -> list[str]:
    rows = [c for c in comparisons if c["dataset"] == dataset and c["variant"] == DEFAULT_VARIANT]
    if not rows:
        return []
    methods = [m for m in ORDER if m != "ca" and any(c["method"] == m for c in rows)]
    scale, digits = (100.0, 2) if dataset == "mnist" else (1.0, 4)
    lines = [
        "| noise | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for noise in sorted({c["noise"] for c in rows}):
        cells = []
        for method in methods:
            c = next((c for c in rows if c["noise"] == noise and c["method"] == method), None)
            if c is None:
                cells.append("-")
                continue
            mark = " **>spread**" if c["exceeds_spread"] else ""
            cells.append(
                f"{c['diff_mean'] * scale:+.{digits}f} +- {c['diff_std'] * scale:.{digits}f} "
                f"({c['wins']}/{c['n']}){mark}"
            )
        lines.append(f"| {noise:g} | " + " | ".join(cells) + " |")
    return lines


def _ablation_table(
    summary: list[dict[str, Any]], comparisons: list[dict[str, Any]], dataset: str
) -> list[str]:
    at = _lookup(summary)
    noises = sorted(
        {e["noise"] for e in summary if e["dataset"] == dataset and e["variant"] != DEFAULT_VARIANT}
    )
    if not noises:
        return []
    head = " | ".join(f"noise {n:g}: test RMSE | pruned % | vs default" for n in noises)
    lines = [f"| CA variant | {head} |", "|---|" + "---|---|---|" * len(noises)]
    for variant in (DEFAULT_VARIANT, *ABLATIONS):
        cells = []
        for n in noises:
            e = at.get((dataset, n, variant, "ca"))
            c = next(
                (
                    c
                    for c in comparisons
                    if (c["dataset"], c["noise"], c["variant"], c["method"])
                    == (dataset, n, variant, "ca")
                ),
                None,
            )
            vs = (
                "-"
                if c is None
                else f"{c['diff_mean']:+.4f} ({c['wins']}/{c['n']})"
                + (" **>spread**" if c["exceeds_spread"] else "")
            )
            cells += [_cell(e, "test_rmse"), _cell(e, "pruning_rate", 100, 1), vs]
        name = (
            "default (activity, consecutive, patience 3)" if variant == DEFAULT_VARIANT else variant
        )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def render(summary: list[dict[str, Any]], comparisons: list[dict[str, Any]], seeds: int) -> str:
    """Every table of the suite as one markdown document."""
    out: list[str] = []
    for dataset in ("debutanizer", "debutanizer_lags", "column_a", "mnist"):
        if not any(e["dataset"] == dataset for e in summary):
            continue
        out.append(f"### {TITLE[dataset]}\n")
        if dataset == "mnist":
            out.append(f"Test error % (mean +- std over {seeds} seeds), 784-300-100-10:\n")
        else:
            out.append(f"Test RMSE against the analyzer (mean +- std over {seeds} seeds):\n")
            out += _by_noise_table(summary, dataset, "test_rmse", 1.0, 4, networks=False)
            out.append("")
            if any("test_truth_rmse" in e for e in summary if e["dataset"] == dataset):
                out.append("Test RMSE against the true composition:\n")
                out += _by_noise_table(summary, dataset, "test_truth_rmse", 1.0, 4, networks=False)
                out.append("")
            out.append(
                "Pruning rate % (small dense: share of the full network's weights it lacks):\n"
            )
            out += _by_noise_table(summary, dataset, "effective_rate", 100.0, 1, networks=True)
            out.append("")
            out.append("Accuracy, generalization and learning speed per method:\n")
        out += _detail_table(summary, dataset)
        out.append("")
        comparison = _comparison_table(comparisons, dataset)
        if comparison:
            out.append(
                "CA against each method, paired by seed: mean and std of (method - CA) on the "
                "test error measure (positive: CA better), seeds where CA is better, and "
                "**>spread** where the mean difference exceeds the larger seed std of the two:\n"
            )
            out += comparison
            out.append("")
        ablation = _ablation_table(summary, comparisons, dataset)
        if ablation:
            out.append(
                "CA ablations (one knob changed; 'vs default' is variant - default, paired):\n"
            )
            out += ablation
            out.append("")
    return "\n".join(out) + "\n"
