"""The dataset spec of simulated Column A files: which columns are signals, the target (the
bottoms analyzer, stamped at report time), the features and lags, the split.

The spec does not name the file, so one spec serves every file simulated with the same
configuration, whatever its length or seed.
"""

from __future__ import annotations

from typing import Any

from training.simulation_config import (
    DISTURBANCE_TRUTH,
    FLOW_COLUMNS,
    TARGET,
    TOP_ANALYZER,
    TRUTH,
    SimulationConfig,
    temperature_columns,
)
from training.spec import DatasetSpec


def spec_dict(config: SimulationConfig | None = None, fmt: str = "csv") -> dict[str, Any]:
    """The dataset spec for files this configuration produces, as plain YAML-ready data.

    It does not name the file, so one spec serves every file simulated with the same
    configuration, whatever its length or seed.
    """
    cfg = config or SimulationConfig()
    cfg.validate()
    temps = temperature_columns(cfg)
    lags = sorted({cfg.samples(m, "feature lag") for m in cfg.feature_lags_minutes})
    dead = cfg.samples(cfg.analyzer.dead_minutes, "analyzer dead time")
    train, validation, test = cfg.split
    return {
        "name": cfg.name,
        "description": (
            "Simulated Skogestad Column A (41 stages, alpha 1.5, LV configuration): light "
            "component in the bottoms from tray temperatures and flows."
        ),
        "source": {
            "format": fmt,
            "timestamp": "timestamp",
            "ignore": [TOP_ANALYZER, *DISTURBANCE_TRUTH],
            "sample_interval_s": float(round(cfg.sample_minutes * 60)),
        },
        "signals": _signals(cfg),
        "target": {
            "name": TARGET,
            "unit": "mol %",
            "range": [0.0, 100.0],
            "analyzer_delay": dead,
            "stamped_at": "report",
            "truth": TRUTH[0],
            # The bottoms impurity: its log is close to linear in the tray temperatures.
            "transform": "log",
            # The analyzer's data sheet: the scatter the simulator draws its readings with.
            "repeatability": {
                "relative_sd": cfg.analyzer.relative_sd,
                "absolute_sd": cfg.analyzer.absolute_sd,
            },
            "description": (
                f"bottoms analyzer (GC): sample every {cfg.analyzer.period_minutes:g} min, "
                f"reported {cfg.analyzer.dead_minutes:g} min later, NaN in between"
            ),
        },
        "features": [{"signal": t, "lags": list(lags)} for t in temps]
        + [{"signal": f, "lags": [0]} for f in FLOW_COLUMNS],
        "split": {"train": train, "validation": validation, "test": test},
        "missing": {"policy": "error"},
        "truth": list(TRUTH),
    }


def _signals(cfg: SimulationConfig) -> list[dict[str, Any]]:
    """The tray temperatures and the flows, with unit, valid range and what each one is."""
    temps = temperature_columns(cfg)
    signals: list[dict[str, Any]] = [
        {
            "name": name,
            "unit": "degC",
            "range": [50.0, 100.0],
            "description": f"temperature of stage {tray} (1 = reboiler, counted from the bottom)",
        }
        for name, tray in zip(temps, cfg.sensors.trays, strict=True)
    ]
    flow_text = {
        "F": "feed flow",
        "L": "reflux flow",
        "V": "boilup (vapour from the reboiler)",
        "D": "distillate flow (condenser level controller output)",
        "B": "bottoms flow (reboiler level controller output)",
    }
    signals += [
        {"name": f, "unit": "kmol/min", "range": [0.0, 10.0], "description": flow_text[f]}
        for f in FLOW_COLUMNS
    ]
    return signals


def dataset_spec(config: SimulationConfig | None = None, fmt: str = "csv") -> DatasetSpec:
    """The validated :class:`DatasetSpec` for this configuration's files."""
    return DatasetSpec.model_validate(spec_dict(config, fmt))
