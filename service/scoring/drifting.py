"""A stream's sensor-drift detectors moved on by a request's rows: the PCA residual test
(``service.monitoring.alarms.SensorDrift``) and the redundancy test
(``service.monitoring.redundancy``), their flags merged by sensor name."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.scoring.rows import Assembled
from service.scoring.slots import ModelSlot
from service.scoring.validity import Assessment
from service.state.streams import Monitors

Drifting = tuple[tuple[str, ...], NDArray[np.bool_]]  # sensors, flags [n, sensors]


def move_drift_detectors(
    slot: ModelSlot, m: Monitors, part: Assembled, a: Assessment | None
) -> Drifting | None:
    """Move the stream's drift detectors on by the request's rows (call under the
    stream's lock): per row, the sensors the PCA residual test and the redundancy test
    flag, by name; None without either detector."""
    valid = ~np.any(part.out_of_range, axis=1)
    found: list[Drifting] = []
    if a is not None and a.residual is not None and m.sensor_drift is not None:
        keep = np.all(np.isfinite(a.residual), axis=1) & valid
        with np.errstate(invalid="ignore"):
            flags = m.sensor_drift.observe(a.residual, keep) > 1.0
        assert slot.validity is not None
        found.append((slot.validity.pca_signals, flags))
    if m.redundancy is not None:
        # a value carried forward for a missing one would read as a sensor gone flat
        flags = m.redundancy.observe(part.filled.values, valid & ~np.any(part.imputed, axis=1))
        found.append((m.redundancy.model.signals, flags))
    if len(found) < 2:
        return found[0] if found else None
    (names_a, flags_a), (names_b, flags_b) = found
    extra = [j for j, name in enumerate(names_b) if name not in names_a]
    merged = np.hstack([flags_a, flags_b[:, extra]])
    for j, name in enumerate(names_b):
        if name in names_a:
            merged[:, names_a.index(name)] |= flags_b[:, j]
    return (*names_a, *(names_b[j] for j in extra)), merged
