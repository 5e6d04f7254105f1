"""The drift-test sweep (``python -m bench.drift_sweep``, docs/drift_sweep.md) on a short
month: the knobs reach the calibrated block and the detector, and loosening them can only
flag the drift earlier. About 30 s (two units of 17 simulated days)."""

from __future__ import annotations

import pytest

from bench.drift_sweep import month, weigh
from training.redundancy import MARGIN, ON_DELAY_SAMPLES


@pytest.mark.slow
def test_a_looser_test_flags_the_drift_no_later() -> None:
    m = month((11, 12), days=17.0, train_days=14.0)
    default = weigh(m, ON_DELAY_SAMPLES, MARGIN)
    loose = weigh(m, 1, 1.0)
    assert default["on_delay_samples"] == ON_DELAY_SAMPLES and loose["margin"] == 1.0
    assert default["drift_delay_min"] is not None, "the default test missed the drift"
    assert loose["drift_delay_min"] is not None
    # A lower limit and a shorter on-delay flag a superset of the rows: never later.
    assert loose["drift_delay_min"] < default["drift_delay_min"]
    assert loose["drift_noise_sds_at_detection"] < default["drift_noise_sds_at_detection"]
    assert loose["clean_onsets"] >= default["clean_onsets"]
