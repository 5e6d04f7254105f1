"""``card.md``: the model card for people, written beside ``card.json`` in the registry.

What the model estimates, from what, how well against the simple alternatives, and how small.
The service never reads it: ``card.json`` (``service.contracts.card.ModelCard``) is the
contract.
"""

from __future__ import annotations

from service.contracts.card import ModelCard


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def render_markdown(card: ModelCard) -> str:
    """The whole page, as markdown text."""
    lines = [*_header(card), *_metrics_table(card), *_comparison(card), *_pruning(card)]
    lines += [*_inputs(card), *_provenance(card)]
    return "\n".join(lines)


def _header(card: ModelCard) -> list[str]:
    target = card.target
    transform = (
        ""
        if target.transform == "none"
        else f" The network is fitted to {target.transform}({target.name}); the "
        "model file turns it back into the unit above."
    )
    return [
        f"# {card.name} {card.version}",
        "",
        f"Estimates **{target.name}** ({target.unit}); the analyzer reports it "
        f"{target.analyzer_delay_samples} samples late. Created {card.created.isoformat()}."
        + transform,
        "",
    ]


def _metrics_table(card: ModelCard) -> list[str]:
    unit = card.target.unit
    return [
        f"| model | split | rows | RMSE ({unit}) | MAE ({unit}) | R2 |",
        "|---|---|---|---|---|---|",
        *(
            f"| this model | {k} | {v.rows} | {_fmt(v.rmse)} | {_fmt(v.mae)} | {v.r2:.3f} |"
            for k, v in card.metrics.items()
        ),
        *(
            f"| {b.description} | {k} | {v.rows} | {_fmt(v.rmse)} | {_fmt(v.mae)} | {v.r2:.3f} |"
            for name, b in card.baseline.items()
            for k, v in b.metrics.items()
        ),
        "",
    ]


def _comparison(card: ModelCard) -> list[str]:
    """Against ridge regression on test, and what the ensemble holds."""
    lines: list[str] = []
    m = card.metrics
    if "ridge" in card.baseline and "test" in m:
        ridge = card.baseline["ridge"].metrics["test"].rmse
        change = (m["test"].rmse - ridge) / ridge
        lines += [
            f"On the test split this model's RMSE is {abs(change):.1%} "
            f"{'below' if change < 0 else 'above'} ridge regression's.",
            "",
        ]
    if card.ensemble is not None and card.ensemble.members > 1:
        linear = sum(card.ensemble.ended_linear)
        lines += [
            f"Ensemble of {card.ensemble.members} pruned networks (seeds "
            f"{', '.join(map(str, card.ensemble.seeds))}), averaged inside the model file"
            + (
                f"; {linear} of them ended at the linear model (nothing beat ridge on validation)"
                if linear
                else ""
            )
            + ".",
            "",
        ]
    return lines


def _pruning(card: ModelCard) -> list[str]:
    pruning = card.pruning
    return [
        f"Pruning: {pruning.method}, {pruning.pruning_rate:.1%} of connections removed "
        f"(per layer: {', '.join(f'{r:.0%}' for r in pruning.pruning_rate_per_layer)}); "
        f"neurons removed per hidden layer: {', '.join(map(str, pruning.neurons_removed))}; "
        f"parameters {pruning.params_before} -> {pruning.params_after}; "
        f"ONNX {card.onnx_bytes} bytes (dense architecture: {card.dense_onnx_bytes}).",
        "",
    ]


def _inputs(card: ModelCard) -> list[str]:
    kept = "; ".join(
        f"{signal} at lag {', '.join(map(str, sel.kept))} (of {len(sel.candidates)})"
        for signal, sel in card.lag_selection.items()
        if sel.kept
    )
    return [
        "Inputs kept: " + (kept or ", ".join(f.name for f in card.features)) + ".",
        "",
        "Inputs no longer needed: " + (", ".join(card.pruning.inputs_removed) or "none") + ".",
        "",
        "| input | unit | valid range |",
        "|---|---|---|",
        *(
            f"| {f.name} | {f.unit} | {f.valid_range.low:g} .. {f.valid_range.high:g} |"
            for f in card.features
        ),
        "",
    ]


def _provenance(card: ModelCard) -> list[str]:
    data = card.data
    return [
        f"Data: {data.source} (sha256 {data.sha256[:12]}...), "
        f"{data.rows_train}/{data.rows_validation}/{data.rows_test} rows "
        "train/validation/test, chronological.",
        "",
        f"Model file sha256: `{card.onnx_sha256}`.",
        "",
    ]
