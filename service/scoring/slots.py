"""Served models: one slot per name, loaded from the registry, swapped whole on a reload.

A slot is a verified model version plus what the service derives from its card once (the
validity model, the bias limits, the interval). A reload builds a new slot and swaps one
dictionary entry, so a request that already holds the old slot finishes on it; streams move
to the new version the next time they are used (``service.state.streams.rebind``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from service.contracts.card import IntervalCalibration
from service.contracts.errors import ModelNotFoundError, NotReadyError
from service.contracts.registry import Registry, RegistryError
from service.lab.bias import BiasConfig
from service.monitoring.metrics import ServiceMetrics
from service.scoring.runtime import LoadedModel, ModelLoadError, load_model
from service.scoring.status import bad_outside_limit
from service.scoring.validity import InputValidity, input_validity
from service.settings import Settings

log = logging.getLogger("softsensor")


@dataclass
class ModelSlot:
    """One served model version and what its card says about checking and correcting it."""

    model: LoadedModel
    validity: InputValidity | None  # None: a card without calibration
    bias_config: BiasConfig
    interval: IntervalCalibration | None
    outside_limit: int  # signals outside the training range before a row is bad
    rows_counter: Any  # the Prometheus child for this model, looked up once
    lab_lock: threading.Lock = field(default_factory=threading.Lock)


def new_slot(model: LoadedModel, settings: Settings, metrics: ServiceMetrics) -> ModelSlot:
    card = model.card
    validity = input_validity(card)
    groups = len(validity.groups) if validity is not None else len(model.raw_signals)
    return ModelSlot(
        model=model,
        validity=validity,
        bias_config=BiasConfig.from_card(
            card,
            gain=settings.lab_gain,
            trust=settings.lab_trust,
            max_age_s=settings.lab_max_age_s,
            max_future_s=settings.lab_max_future_s,
        ),
        interval=None if card.calibration is None else card.calibration.interval,
        outside_limit=bad_outside_limit(groups),
        rows_counter=metrics.rows.labels(model.name),
    )


class ModelSlots:
    """The served names, their slots, and the champion-pointer watcher's logic."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.registry = Registry(settings.registry)
        self.slots: dict[str, ModelSlot] = {}
        self.served: list[str] = []
        self._refused: dict[str, str] = {}  # name -> version last refused (log once)
        self._missing: dict[str, str] = {}  # name -> champion not (yet) in the registry
        self._lock = threading.Lock()

    def start(self) -> None:
        """Load every served model's champion; failures leave it not ready."""
        self.served = list(self.settings.models or self._registry_names())
        if not self.served:
            log.warning(
                "no models in registry %s: not ready until one appears", self.settings.registry
            )
        for name in self.served:
            self.refresh(name)

    def _registry_names(self) -> list[str]:
        try:
            return self.registry.names()
        except (RegistryError, OSError) as exc:
            log.error("cannot list registry %s: %s", self.settings.registry, exc)
            return []

    @property
    def ready(self) -> bool:
        return bool(self.served) and all(name in self.slots for name in self.served)

    def default_name(self) -> str:
        if self.settings.default_model:
            return self.settings.default_model
        if not self.served:
            raise NotReadyError("no model is configured or registered yet")
        return self.served[0]

    def slot(self, name: str | None) -> ModelSlot:
        name = name or self.default_name()
        if name not in self.served:
            raise ModelNotFoundError(
                None, f"model {name!r} is not served here; served: {self.served}"
            )
        slot = self.slots.get(name)
        if slot is None:
            raise NotReadyError(f"model {name!r} has no verified version loaded yet")
        return slot

    def refresh(self, name: str) -> str | None:
        """Load the champion of ``name`` if it is not the one served; refuse a broken one.

        Returns the version served afterwards. A refused version is logged and counted once;
        the previous version (if any) keeps serving.
        """
        with self._lock:
            try:
                champion = self.registry.champion(name)
            except RegistryError as exc:
                self._refuse(name, "?", str(exc))
                return self._served_version(name)
            current = self._served_version(name)
            if champion is None:
                if current is None:
                    log.warning("model %s: no champion in %s; not ready", name, self.registry.root)
                return current
            if champion == current or self._refused.get(name) == champion:
                return current
            try:
                loaded = load_model(self.registry, name, champion)
            except ModelLoadError as exc:
                cause = exc.__cause__
                if isinstance(cause, ModelNotFoundError):
                    self._await_version(name, champion, current)  # retried at every pass
                else:
                    self._refuse(name, champion, exc.detail)
                return current
            self.slots[name] = new_slot(loaded, self.settings, self.metrics)
            self._refused.pop(name, None)
            self._missing.pop(name, None)
            self.metrics.reloads.labels(name).inc()
            log.info("model %s: serving version %s (was %s)", name, champion, current)
            return champion

    def _served_version(self, name: str) -> str | None:
        slot = self.slots.get(name)
        return None if slot is None else slot.model.version

    def _refuse(self, name: str, version: str, reason: str) -> None:
        if self._refused.get(name) != version:
            log.error("model %s: refused version %s: %s", name, version, reason)
            self.metrics.reload_refusals.labels(name).inc()
        self._refused[name] = version

    def _await_version(self, name: str, version: str, current: str | None) -> None:
        """The pointer names a version the registry does not hold (yet): a pointer copied
        ahead of its version, or a version deleted. Unlike a broken version this one is
        retried at every watcher pass (it may still arrive); logged and counted once."""
        if self._missing.get(name) != version:
            log.error(
                "model %s: champion pointer names version %s, which is not in registry %s; "
                "%s until it appears or the pointer changes",
                name,
                version,
                self.registry.root,
                "NOT READY" if current is None else f"still serving {current}",
            )
            self.metrics.reload_refusals.labels(name).inc()
        self._missing[name] = version

    def reload(self, name: str) -> str:
        """Explicit reload: like refresh, but a refusal is an error for the caller."""
        if name not in self.served:
            raise ModelNotFoundError(None, f"model {name!r} is not served here")
        self._refused.pop(name, None)
        version = self.refresh(name)
        champion = self.registry.champion(name)
        if version is None or version != champion:
            raise ModelLoadError(
                f"model {name!r}: version {champion} was refused; still serving {version}"
            )
        return version

    def watch_once(self) -> None:
        """One pass of the pointer watcher: pick up new champions (and new names)."""
        if not self.settings.models:
            for name in self._registry_names():
                if name not in self.served:
                    self.served.append(name)
        for name in list(self.served):
            self.refresh(name)
