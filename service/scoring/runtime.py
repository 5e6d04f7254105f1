"""A loaded, verified model: the ONNX session plus what its card says about inputs and output.

``load_model`` refuses anything it cannot trust: wrong sha256, invalid card, a graph whose
input does not match the card's features, or a test inference that is not finite.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnxruntime as ort

from service.contracts.arrays import FloatArray
from service.contracts.card import ModelCard
from service.contracts.errors import ServiceError
from service.contracts.features import (
    DerivedSignal,
    FeaturePlan,
    LagFeature,
    gap_seconds,
    max_lag,
)
from service.contracts.registry import MODEL_FILE, Registry, RegistryError


class ModelLoadError(ServiceError):
    """A model version could not be loaded and verified; the previous one keeps serving."""

    status = 503
    error = "model_load_failed"


@dataclass(frozen=True)
class LoadedModel:
    """Immutable: a hot reload builds a new one and swaps the reference."""

    name: str
    version: str
    card: ModelCard
    session: ort.InferenceSession
    input_name: str
    output_name: str
    features: tuple[LagFeature, ...]
    raw_signals: tuple[str, ...]  # what a historian must send (measured signals)
    known_signals: frozenset[str]  # what it may send (unused ones are ignored)
    raw_signal_set: frozenset[str]
    derived: tuple[DerivedSignal, ...]
    history: int  # max lag
    plan: FeaturePlan  # raw signal matrix -> feature rows (the shared assembly)
    fallbacks: FloatArray  # per raw signal: value before any was seen
    low: FloatArray  # per raw signal: valid range
    high: FloatArray
    # a longer step between two samples is a gap lags do not span (None: rows are samples)
    gap_s: float | None = None

    def valid_range(self, signal: str) -> tuple[float, float]:
        """The physically plausible range of a measured signal (or of the target)."""
        for s in self.card.signals:
            if s.name == signal:
                return s.valid_range.low, s.valid_range.high
        r = self.card.target.valid_range
        return r.low, r.high

    def fallback(self, signal: str) -> float:
        """Value used when a signal has never been seen: its training mean, else mid-range."""
        for f, ref in zip(self.card.features, self.card.reference, strict=True):
            if f.signal == signal and f.lag == 0:
                return ref.mean
        low, high = self.valid_range(signal)
        return (low + high) / 2.0

    def predict(self, x: FloatArray) -> FloatArray:
        """Estimates for assembled rows (card feature order, engineering units)."""
        # A value beyond float32's range becomes inf, the estimate non-finite, and the caller
        # answers 422 naming the signal: numpy's overflow warning would only add log noise.
        with np.errstate(over="ignore"):
            rows = np.ascontiguousarray(x, dtype=np.float32)  # bulk assembly gives F order
        out = self.session.run([self.output_name], {self.input_name: rows})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)


def _session(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # rows are few per call; threads cost more than they give
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _checked_session(model_bytes: bytes, card: ModelCard, what: str) -> ort.InferenceSession:
    """The graph's session, refused unless it takes the card's features and gives one output."""
    try:
        session = _session(model_bytes)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelLoadError(f"{what}: onnxruntime cannot load the graph: {exc}") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelLoadError(f"{what}: the graph must have one input and one output")
    width = inputs[0].shape[1] if len(inputs[0].shape) == 2 else None
    if width != len(card.features):
        raise ModelLoadError(
            f"{what}: graph input has {width} columns, the card lists {len(card.features)} features"
        )
    return session


def load_model(registry: Registry, name: str, version: str) -> LoadedModel:
    """Verify and load one version; raises ModelLoadError naming the reason."""
    try:
        card = registry.verify(name, version)
        model_bytes = (registry.version_dir(name, version) / MODEL_FILE).read_bytes()
    except (RegistryError, OSError) as exc:
        raise ModelLoadError(f"{name} {version}: {exc}") from exc
    session = _checked_session(model_bytes, card, f"{name} {version}")
    inputs, outputs = session.get_inputs(), session.get_outputs()
    features = tuple(f.to_lag_feature() for f in card.features)
    derived = tuple(d for s in card.signals if s.used and (d := s.to_derived()) is not None)
    measured = [s.name for s in card.signals if s.derived_from is None and s.used]
    if any(f.signal == card.target.name for f in features):
        measured.append(card.target.name)  # the latest analyzer value is an input too
    loaded = LoadedModel(
        name=name,
        version=version,
        card=card,
        session=session,
        input_name=inputs[0].name,
        output_name=outputs[0].name,
        features=features,
        raw_signals=tuple(measured),
        raw_signal_set=frozenset(measured),
        known_signals=frozenset(
            [s.name for s in card.signals if s.derived_from is None] + [card.target.name]
        ),
        derived=derived,
        history=max_lag(features),
        plan=FeaturePlan(tuple(measured), derived, features),
        fallbacks=np.zeros(0),
        low=np.zeros(0),
        high=np.zeros(0),
        gap_s=gap_seconds(card.target.sample_interval_s),
    )
    ranges = [loaded.valid_range(s) for s in measured]
    loaded = replace(
        loaded,
        fallbacks=np.array([loaded.fallback(s) for s in measured]),
        low=np.array([r[0] for r in ranges]),
        high=np.array([r[1] for r in ranges]),
    )
    probe = np.array([[r.mean for r in card.reference]], dtype=np.float64)
    try:
        estimate = loaded.predict(probe)
    except Exception as exc:
        raise ModelLoadError(f"{name} {version}: test inference failed: {exc}") from exc
    if estimate.shape != (1,) or not np.all(np.isfinite(estimate)):
        raise ModelLoadError(
            f"{name} {version}: test inference on the reference means is not finite"
        )
    return loaded


def load_problem(registry: Registry, name: str, version: str) -> str | None:
    """Why ``version`` could not be served (load and test inference), or None if it can:
    the check a promote or rollback runs before the champion pointer moves."""
    try:
        load_model(registry, name, version)
    except ModelLoadError as exc:
        return exc.detail
    return None
