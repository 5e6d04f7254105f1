"""The periodic retraining job: train a challenger on new data, compare it with the champion on
the most recent held-out window, and promote it only if it is clearly better and sane.

Every registry write is atomic (see ``service.contracts.registry``), so killing the job at any
moment leaves the registry and the champion pointer as they were or as they became, never
between.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from service.contracts.atomic import write_atomic
from service.contracts.card import ModelCard
from service.contracts.registry import Registry, RegistryError
from training.config import CAConfig, NetworkConfig, TrainConfig
from training.data import Dataset, load_dataset
from training.errors import SoftSensorError
from training.evaluation import score
from training.experiment import RunConfig, run_experiment
from training.export import ExportError, run_onnx
from training.publish import publish
from training.spec import DatasetSpec

Decision = Literal["promoted", "kept", "rejected"]
EXIT_DONE = 0  # promoted or kept: nothing for the scheduler to do
EXIT_FAILED = 1  # the job could not run (data, spec, registry)
EXIT_REJECTED = 3  # a challenger was trained but failed its sanity checks: look at the report


@dataclass
class RetrainReport:
    """What the job did and why; written as JSON and markdown."""

    name: str
    started: str
    data: str
    data_sha256: str
    window_rows: int
    margin: float
    unit: str = ""
    champion: str | None = None
    champion_rmse: float | None = None
    challenger: str | None = None
    challenger_rmse: float | None = None
    # The linear baselines fitted on the new data's train/validation split, scored on the
    # same window: a challenger that loses to the best of them is not promoted.
    linear_rmse: dict[str, float] = field(default_factory=dict)
    beats_linear: bool | None = None
    allow_worse_than_linear: bool = False
    decision: Decision = "kept"
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    finished: str = ""


def run_config_from_card(card: ModelCard | None, seed: int) -> RunConfig:
    """The champion's recipe (network, optimizer, pruner and its knobs), or the defaults."""
    if card is None:
        return RunConfig(seed=seed, train=TrainConfig(progress=False))
    t = card.training
    pruner = dict(card.pruning.config)
    method = str(pruner.pop("method", "ca"))
    ca_fields = set(CAConfig.__dataclass_fields__)
    ca = (
        CAConfig(**{k: v for k, v in pruner.items() if k in ca_fields})
        if method == "ca"
        else CAConfig()
    )
    train_fields = set(TrainConfig.__dataclass_fields__)
    optimizer = {k: v for k, v in dict(t.get("optimizer", {})).items() if k in train_fields}
    train_cfg = replace(TrainConfig(**optimizer), seed=seed, progress=False)
    net = t["network"]
    network = NetworkConfig(
        hidden=tuple(net["hidden"]),
        activation=net["activation"],
        # cards written before the linear path existed describe a plain chain
        linear_path=bool(net.get("linear_path", False)),
        additive=bool(net.get("additive", False)),
    )
    return RunConfig(
        method=method,
        seed=seed,
        network=network,
        train=train_cfg,
        ca=ca,
        target_sparsity=pruner.get("target_sparsity"),
        members=card.ensemble.members if card.ensemble is not None else 1,
    )


def score_version(
    registry: Registry, name: str, version: str, window: Any, names: list[str]
) -> float:
    """RMSE of a registered model on the window, through onnxruntime as the service runs it."""
    card = registry.verify(name, version)
    missing = [f.name for f in card.features if f.name not in names]
    if missing:
        raise SoftSensorError(f"{name} {version} needs features the new data lacks: {missing}")
    cols = [names.index(f.name) for f in card.features]
    model = (registry.version_dir(name, version) / "model.onnx").read_bytes()
    pred = run_onnx(model, window.x[:, cols])
    if not np.all(np.isfinite(pred)):
        raise SoftSensorError(f"{name} {version} gives non-finite estimates on the window")
    return score(window.y, pred).rmse


# Stored results whose value is not a measurement of the process as it was at its sample
# time: outside the target's valid range (a typo, a unit), an implausible residual (a swapped
# sample), stamped in the future (a clock error). Late or out-of-order ones are still labels.
RETRAIN_ACTOR = "softsensor retrain"  # who the champion history says promoted a challenger
UNUSABLE_LAB = frozenset({"out_of_range", "implausible", "future"})


def read_lab_results(source: Path | str | None, name: str | None = None) -> pd.DataFrame | None:
    """Lab results as labels (``timestamp``, ``value``, oldest first): a CSV exported by the
    service (``GET /v1/lab-results?format=csv``; a hand-made one needs only those two
    columns), or read from the service's state store itself when ``source`` is its URL
    (``sqlite:///...`` or ``postgresql://...``: the same database the serving pods write),
    model ``name``'s. Both go through one filter: results that are no measurement of the
    process (``UNUSABLE_LAB``) are left out, voided ones are no longer stored."""
    if source is None:
        return None
    if "://" in str(source):
        return _labels(_stored_lab_results(str(source), name), str(source))
    path = Path(source)
    frame = pd.read_csv(path, dtype={"reason": "string", "model": "string"})
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise SoftSensorError(f"lab results {path} lack columns {sorted(missing)}")
    return _labels(frame, str(path))


def _labels(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The usable results of an exported table, as (timestamp UTC, value), oldest first."""
    if "reason" in frame.columns:
        frame = frame[~frame["reason"].fillna("").isin(UNUSABLE_LAB)]
    try:
        stamps = pd.to_datetime(frame["timestamp"], utc=True, format="mixed")
    except ValueError as exc:
        raise SoftSensorError(f"lab results {where}: timestamp: {exc}") from exc
    out = pd.DataFrame({"timestamp": stamps, "value": frame["value"].astype(float)})
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _stored_lab_results(url: str, name: str | None) -> pd.DataFrame:
    """The store's results as the service's CSV export has them (one function writes both)."""
    from service.lab.export import CSV_COLUMNS, csv_row
    from service.lab.records import MAX_LIST
    from service.lab.statestore import open_store

    with contextlib.closing(open_store(url)) as store:
        rows = [csv_row(r) for r in store.list(name, limit=MAX_LIST)]
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    frame["value"] = frame["value"].astype(float)
    return frame


def retrain(
    registry: Registry,
    name: str,
    spec: DatasetSpec,
    data: Path,
    *,
    margin: float = 0.02,
    seed: int = 0,
    lab_results: Path | str | None = None,
    allow_worse_than_linear: bool = False,
) -> RetrainReport:
    """Train, compare on the newest held-out window (the test part), decide. Never half done.

    A challenger is promoted only if it is also no worse than the best linear baseline
    (ridge, fitted on the same new data) on the window, unless ``allow_worse_than_linear``.
    """
    started = datetime.now(UTC)
    dataset: Dataset = load_dataset(
        spec, data, seed=seed, lab_results=read_lab_results(lab_results, name)
    )
    report = RetrainReport(
        name=name,
        started=started.isoformat(),
        data=str(data),
        data_sha256=dataset.sha256,
        unit=spec.target.unit,
        window_rows=len(dataset.test),
        margin=margin,
        allow_worse_than_linear=allow_worse_than_linear,
    )
    champion = registry.champion(name)
    champion_card = _evaluate_champion(registry, name, champion, dataset, report)
    cfg = run_config_from_card(champion_card, seed)
    run = run_experiment(dataset, cfg)
    report.linear_rmse = {
        b: entry["test"]["analyzer"]["rmse"]
        for b, entry in run.metrics["baseline"].items()
        if b.startswith("ridge")
    }
    try:
        published = publish(dataset, run, registry, name, make_first_champion=False)
    except (ExportError, RegistryError) as exc:
        report.decision = "rejected"
        report.checks["export_parity_and_card"] = False
        report.reasons.append(f"challenger failed its checks: {exc}")
        return _finish(report)
    report.challenger = published.version
    report.checks["export_parity_and_card"] = True
    report.challenger_rmse = score_version(
        registry, name, published.version, dataset.test, dataset.feature_names
    )
    report.checks["finite_outputs"] = bool(np.isfinite(report.challenger_rmse))
    if not _may_promote_against_linear(report, champion, allow_worse_than_linear):
        return _finish(report)
    _decide(registry, name, published.version, champion, report)
    return _finish(report)


def _evaluate_champion(
    registry: Registry, name: str, champion: str | None, dataset: Dataset, report: RetrainReport
) -> ModelCard | None:
    """The champion's card and its RMSE on the new window; a champion that cannot be
    evaluated is noted in the report (and does not block the challenger)."""
    if champion is None:
        return None
    report.champion = champion
    champion_card = None
    try:
        champion_card = registry.verify(name, champion)
        report.champion_rmse = score_version(
            registry, name, champion, dataset.test, dataset.feature_names
        )
    except SoftSensorError as exc:  # registry failures included
        report.reasons.append(f"champion cannot be evaluated: {exc}")
    return champion_card


def _may_promote_against_linear(
    report: RetrainReport, champion: str | None, allow_worse_than_linear: bool
) -> bool:
    """Is the challenger no worse than the best ridge baseline (or allowed to be)? When it
    may not be promoted, the decision and its reason are set here."""
    assert report.challenger_rmse is not None  # scored before this is asked
    linear_name, linear = min(report.linear_rmse.items(), key=lambda kv: kv[1])
    beats_linear = report.challenger_rmse <= linear
    report.beats_linear = beats_linear
    if beats_linear:
        return True
    what = "ridge regression" if linear_name == "ridge" else "ridge on the transformed target"
    loses = (
        f"challenger RMSE {report.challenger_rmse:.4g} is worse than {what}'s {linear:.4g} "
        "on the held-out window"
    )
    if not allow_worse_than_linear:
        report.decision = "kept" if champion is not None else "rejected"
        report.reasons.append(
            f"{loses}: not promoted (a linear model would serve better; pass "
            "--allow-worse-than-linear to promote it anyway)"
        )
        return False
    report.reasons.append(f"{loses}; promotion allowed by --allow-worse-than-linear")
    return True


def _decide(
    registry: Registry, name: str, version: str, champion: str | None, report: RetrainReport
) -> None:
    """Promote the challenger, or keep the champion, by the margin on the new window."""
    margin = report.margin
    assert report.challenger_rmse is not None
    if champion is None:
        report.decision = "promoted"
        report.reasons.append("no champion existed: the challenger is the first")
        registry.promote(name, version, by=RETRAIN_ACTOR, reason=report.reasons[-1])
    elif report.champion_rmse is None:
        report.decision = "promoted"
        report.reasons.append("the champion could not be evaluated on the new data")
        registry.promote(name, version, by=RETRAIN_ACTOR, reason=report.reasons[-1])
    elif report.challenger_rmse < report.champion_rmse * (1.0 - margin):
        report.decision = "promoted"
        report.reasons.append(
            f"challenger RMSE {report.challenger_rmse:.4g} beats the champion's "
            f"{report.champion_rmse:.4g} by more than {margin:.0%}"
        )
        registry.promote(name, version, by=RETRAIN_ACTOR, reason=report.reasons[-1])
    else:
        report.reasons.append(
            f"challenger RMSE {report.challenger_rmse:.4g} does not beat the champion's "
            f"{report.champion_rmse:.4g} by {margin:.0%}: champion kept"
        )


def _finish(report: RetrainReport) -> RetrainReport:
    report.finished = datetime.now(UTC).isoformat()
    return report


def render_report(report: RetrainReport) -> str:
    """Markdown for people reading the job's output."""

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    return "\n".join(
        [
            f"# Retraining {report.name}: {report.decision}",
            "",
            f"Started {report.started}, finished {report.finished}. Data {report.data} "
            f"(sha256 {report.data_sha256[:12]}...), held-out window {report.window_rows} rows.",
            "",
            f"| model | version | RMSE on the window ({report.unit}) |",
            "|---|---|---|",
            f"| champion | {report.champion or 'none'} | {fmt(report.champion_rmse)} |",
            f"| challenger | {report.challenger or 'none'} | {fmt(report.challenger_rmse)} |",
            *(
                f"| {name.replace('_', ' ')} (new data, same split) | - | {fmt(value)} |"
                for name, value in report.linear_rmse.items()
            ),
            "",
            f"Margin required: {report.margin:.0%}. Checks: "
            + (
                ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in report.checks.items())
                or "none"
            )
            + ".",
            "",
            *(f"- {r}" for r in report.reasons),
            "",
        ]
    )


def write_report(report: RetrainReport, directory: Path) -> tuple[Path, Path]:
    """JSON and markdown, each written atomically; named by start time."""
    stem = f"{report.name}-{report.started.replace(':', '').replace('-', '')[:15]}"
    json_path = write_atomic(
        directory / f"{stem}.json", json.dumps(asdict(report), indent=2) + "\n"
    )
    md_path = write_atomic(directory / f"{stem}.md", render_report(report))
    return json_path, md_path
