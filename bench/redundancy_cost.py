"""Microseconds per row of the sensor-redundancy drift test, as a stream meets it.

    python -m bench.redundancy_cost                      # a 12-signal block (Column A's size)
    python -m bench.redundancy_cost --card models/column_a/<version>/card.json

The test runs on every row of every stateful request (``service.monitoring.redundancy``):
one small matrix product and a handful of vector operations per row. This measures it in
this process, for one row per request (a historian's poll) and for longer batches; on a
loaded machine the figures are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from service.contracts.card import ModelCard, SensorRedundancy
from service.monitoring.redundancy import RedundancyDrift, RedundancyModel


def synthetic_block(m: int = 12, seed: int = 0) -> SensorRedundancy:
    """A block of ``m`` signals with dense weights: the cost does not depend on the values."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.1, (2 * m, m))
    for j in range(m):
        weights[j, j] = weights[m + j, j] = 0.0
    return SensorRedundancy(
        signals=[f"s{j}" for j in range(m)],
        mean=[0.0] * m,
        scale=[1.0] * m,
        weights=weights.tolist(),
        smooth_samples=10.0,
        baseline_samples=60.0,
        fast_samples=5.0,
        clip_sd=8.0,
        residual_sd=[0.05] * m,
        limit=[4.0] * m,
        release=0.5,
        margin=2.0,
        false_alarms_per_week=0.1,
        validation_samples=0,
        validation_onsets=0,
    )


def cost_per_row_us(block: SensorRedundancy, rows: int, seconds: float = 1.0) -> float:
    """Median over repeats of the time one ``observe`` of ``rows`` rows takes, per row."""
    model = RedundancyModel.from_card(block, tuple(block.signals))
    assert model is not None
    detector = RedundancyDrift(model)
    values = np.random.default_rng(1).normal(size=(rows, len(block.signals)))
    detector.observe(values)  # warm: the first row starts the averages
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        detector.observe(values)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / rows * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.redundancy_cost", description=__doc__)
    p.add_argument("--card", type=Path, help="a model card whose redundancy block to time")
    args = p.parse_args(argv)
    block = synthetic_block()
    if args.card is not None:
        card = ModelCard.model_validate_json(args.card.read_text(encoding="utf-8"))
        if card.calibration is None or card.calibration.redundancy is None:
            print(f"{args.card}: no redundancy block", file=sys.stderr)
            return 1
        block = card.calibration.redundancy
    out = {str(n): round(cost_per_row_us(block, n), 2) for n in (1, 16, 1000)}
    print(json.dumps({"signals": len(block.signals), "us_per_row": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
