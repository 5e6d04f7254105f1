"""From a finished run to a registered model version: export, verify, describe, write.

Nothing reaches the registry unless the exported graph agrees with torch and the card
validates; the version is written atomically, and becomes champion only when none exists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from service.contracts.card import ModelCard
from service.contracts.registry import Registry, new_version_id
from training.card import build_card
from training.card_markdown import render_markdown
from training.data import Dataset
from training.experiment import RunReport
from training.export import ExportedModel, export_onnx

PARITY = 1e-5  # onnxruntime vs torch, as a fraction of the target's observed range


@dataclass(frozen=True)
class Published:
    """What was written, for the caller to report."""

    name: str
    version: str
    path: Path
    card: ModelCard
    exported: ExportedModel
    champion: bool


def export_run(dataset: Dataset, report: RunReport) -> ExportedModel:
    """Export the run's shrunk network, verified on the validation and test rows."""
    # The graph reads float32: the reference sees the same rounded inputs, so the check
    # measures the graph's arithmetic, not the input format.
    rows = np.vstack([dataset.validation.x, dataset.test.x]).astype(np.float32).astype(np.float64)
    reference = report.predict(rows)
    y = np.concatenate([dataset.train.y, dataset.validation.y, dataset.test.y])
    span = float(np.ptp(y)) or 1.0
    ensemble = report.ensemble
    return export_onnx(
        report.shrunk,
        report.dense,
        ensemble.x_scaler,
        ensemble.y_scaler,
        rows,
        reference,
        tolerance=PARITY * span,
        name=dataset.spec.name,
        transform=ensemble.transform,
    )


def publish(
    dataset: Dataset,
    report: RunReport,
    registry: Registry,
    name: str,
    *,
    version: str | None = None,
    now: datetime | None = None,
    make_first_champion: bool = True,
) -> Published:
    """Export, build the card, write the version; make it champion if there is none (unless
    ``make_first_champion`` is off: the retraining job decides that itself)."""
    created = now or datetime.now(UTC)
    exported = export_run(dataset, report)
    digest = hashlib.sha256(exported.onnx_bytes).hexdigest()
    version = version or new_version_id(created, digest[:7])
    card = build_card(dataset, report, exported, name=name, version=version, created=created)
    files = {
        "model.onnx": exported.onnx_bytes,
        "card.json": (card.model_dump_json(indent=2) + "\n").encode("utf-8"),
        "card.md": render_markdown(card).encode("utf-8"),
    }
    path = registry.write_version(name, version, files)
    registry.verify(name, version)
    champion = make_first_champion and registry.champion(name) is None
    if champion:
        registry.promote(name, version, by="softsensor train", reason="the first version")
    return Published(name, version, path, card, exported, champion)
