"""The default recipe on a unit it was never tuned on, whose quality is nonlinear in the
sensors: the network must be far below ridge there, and it must not be cut off at the end
of its plan while it is still improving (``bench.small_unit``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.small_unit import SPEC, write_unit
from training.config import TrainConfig
from training.data import load_dataset
from training.experiment import RunConfig, run_experiment
from training.spec import load_spec


@pytest.mark.slow
def test_the_default_recipe_is_far_below_ridge_on_a_nonlinear_unit(tmp_path: Path) -> None:
    spec, data = tmp_path / "unit.yaml", tmp_path / "unit.csv"
    spec.write_text(SPEC, encoding="utf-8")
    write_unit(data, 0)
    ds = load_dataset(load_spec(spec), data)
    assert len(ds.train) < 750  # a lab result every fifth minute: few labelled rows
    cfg = RunConfig(train=TrainConfig(progress=False), members=1)
    m = run_experiment(ds, cfg).metrics
    ridge = m["baseline"]["ridge"]["test"]["analyzer"]["rmse"]
    assert m["ended_linear"] == 0
    assert m["test_rmse"] < 0.3 * ridge, (m["test_rmse"], ridge)
    assert m["epochs"] > m["member_runs"][0]["planned_epochs"] == 100  # went on past the plan
