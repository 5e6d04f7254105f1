"""Loading historian exports: the happy path and one test per class of bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DEBUTANIZER_SPEC
from training.data import load_dataset
from training.errors import DataError, SpecError
from training.spec import load_spec


def _edit(path: Path, row: int, column: str, value: str) -> None:
    """Set one cell of the tiny CSV (row is 1-based, header not counted)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _load(spec: Path, data: Path) -> object:
    return load_dataset(load_spec(spec), data)


def test_tiny_dataset_assembles_lags_and_derived_signals(tiny: tuple[Path, Path]) -> None:
    """Rows start at the largest lag, and each column is the declared signal at its lag."""
    spec, data = tiny
    ds = load_dataset(load_spec(spec), data)
    assert ds.feature_names == ["a", "a_lag1", "ab", "q_lag2"]
    raw = np.genfromtxt(data, delimiter=",", skip_header=1, usecols=(1, 2, 3))
    a, b, q = raw.T
    t = ds.train.index
    assert t[0] == 2
    np.testing.assert_allclose(ds.train.x[:, 0], a[t])
    np.testing.assert_allclose(ds.train.x[:, 1], a[t - 1])
    np.testing.assert_allclose(ds.train.x[:, 2], 0.5 * a[t] + 0.5 * b[t])
    np.testing.assert_allclose(ds.train.x[:, 3], q[t - 2])
    np.testing.assert_allclose(ds.train.y, q[t])
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (35, 12, 11)
    assert ds.test.index[0] > ds.validation.index[-1] > ds.train.index[-1]
    assert ds.timestamps is None or len(ds.timestamps) == ds.rows_used


def test_debutanizer_protocol_rows_and_features(debutanizer_path: Path) -> None:
    """The shipped spec reproduces the 10-input protocol: rows t = 4..2393, 1200/400/790."""
    ds = load_dataset(load_spec(DEBUTANIZER_SPEC), debutanizer_path)
    raw = np.loadtxt(debutanizer_path)
    assert ds.rows_read == 2394
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (1200, 400, 790)
    assert ds.train.index[0] == 4 and ds.test.index[-1] == 2393
    t = ds.test.index
    np.testing.assert_allclose(ds.test.x[:, 8], (raw[t, 5] + raw[t, 6]) / 2)
    np.testing.assert_allclose(ds.test.x[:, 9], raw[t - 4, 7])
    np.testing.assert_allclose(ds.test.x[:, 7], raw[t - 3, 4])


def test_missing_column_is_named(tiny: tuple[Path, Path]) -> None:
    """A column the spec needs but the file lacks."""
    spec, data = tiny
    text = data.read_text().replace("time,a,b,q", "time,a,bb,q")
    data.write_text(text)
    with pytest.raises(DataError, match=r"column 'b': missing"):
        _load(spec, data)


def test_extra_column_is_named(tiny: tuple[Path, Path]) -> None:
    """A column the file has but the spec does not mention."""
    spec, data = tiny
    lines = data.read_text().splitlines()
    data.write_text("\n".join(f"{line},1" for line in lines) + "\n")
    text = data.read_text().replace("time,a,b,q,1", "time,a,b,q,spare")
    data.write_text(text)
    with pytest.raises(DataError, match=r"column 'spare': is not in the spec"):
        _load(spec, data)


def test_non_numeric_value_names_column_and_row(tiny: tuple[Path, Path]) -> None:
    """A text cell in a numeric column."""
    spec, data = tiny
    _edit(data, 17, "b", "BAD")
    with pytest.raises(
        DataError, match=r"tiny.csv, column 'b', row 17 \(line 18\): non-numeric value 'BAD'"
    ):
        _load(spec, data)


def test_timestamp_out_of_order(tiny: tuple[Path, Path]) -> None:
    """A sample stamped earlier than the one before it."""
    spec, data = tiny
    _edit(data, 9, "time", "2026-01-01T00:01:00Z")
    with pytest.raises(DataError, match=r"column 'time', row 9 \(line 10\): .* out of order"):
        _load(spec, data)


def test_timestamp_duplicated(tiny: tuple[Path, Path]) -> None:
    """Two samples with the same stamp."""
    spec, data = tiny
    _edit(data, 9, "time", "2026-01-01T00:07:00Z")
    with pytest.raises(DataError, match=r"column 'time', row 9 \(line 10\): .* duplicated"):
        _load(spec, data)


def test_unparseable_timestamp(tiny: tuple[Path, Path]) -> None:
    """A stamp that is not a time."""
    spec, data = tiny
    _edit(data, 4, "time", "yesterday")
    with pytest.raises(DataError, match=r"column 'time', row 4 \(line 5\): not a timestamp"):
        _load(spec, data)


def test_too_few_rows(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    """Fewer rows than the lags and the split need."""
    spec, data = tiny
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:9]) + "\n")
    with pytest.raises(DataError, match=r"too few rows: 6 usable rows after lags \(max lag 2\)"):
        _load(spec, data)


def test_constant_feature(tiny: tuple[Path, Path]) -> None:
    """A sensor that never moves carries no information."""
    spec, data = tiny
    for row in range(1, 61):
        _edit(data, row, "b", "3.5")
    with pytest.raises(DataError, match=r"column 'b': is constant \(3.5\)"):
        _load(spec, data)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", ""])
def test_non_finite_fails_under_error_policy(tiny: tuple[Path, Path], bad: str) -> None:
    """NaN, inf and blanks are refused unless the spec declares a policy."""
    spec, data = tiny
    _edit(data, 20, "a", bad)
    with pytest.raises(
        DataError, match=r"column 'a', row 20 \(line 21\): NaN/inf .*policy is 'error'"
    ):
        _load(spec, data)


def test_out_of_range_value_fails_under_error_policy(tiny: tuple[Path, Path]) -> None:
    """A value outside the signal's valid range is a sensor fault, treated like a NaN."""
    spec, data = tiny
    _edit(data, 30, "a", "500")
    with pytest.raises(
        DataError, match=r"column 'a', row 30 \(line 31\): value outside the valid range"
    ):
        _load(spec, data)


def test_drop_policy_never_takes_lags_across_a_gap(tiny: tuple[Path, Path]) -> None:
    """With 'drop', every row whose features touch the bad sample is left out."""
    spec, data = tiny
    spec.write_text(spec.read_text().replace("split:", "missing: {policy: drop}\nsplit:"))
    _edit(data, 20, "a", "nan")  # data row 20 is time index 19
    ds = load_dataset(load_spec(spec), data)
    used = np.concatenate([ds.train.index, ds.validation.index, ds.test.index])
    assert 19 not in used and 20 not in used  # a at t and a at t-1
    assert 18 in used and 21 in used
    assert ds.rows_used == 56


def test_ffill_policy_fills_short_gaps_and_refuses_long_ones(tiny: tuple[Path, Path]) -> None:
    """Forward fill carries the last good value up to max_fill samples, then fails."""
    spec, data = tiny
    spec.write_text(
        spec.read_text().replace("split:", "missing: {policy: ffill, max_fill: 2}\nsplit:")
    )
    before = data.read_text().splitlines()[19].split(",")[1]
    _edit(data, 20, "a", "nan")
    _edit(data, 21, "a", "inf")
    ds = load_dataset(load_spec(spec), data)
    assert ds.values_filled == 2
    row = int(np.flatnonzero(ds.train.index == 20)[0])
    assert ds.train.x[row, 0] == pytest.approx(float(before))
    _edit(data, 22, "a", "nan")
    with pytest.raises(
        DataError, match=r"column 'a', row 22 \(line 23\): .*gap of 3 samples, max_fill is 2"
    ):
        _load(spec, data)


def test_whitespace_file_with_wrong_column_count(tmp_path: Path) -> None:
    """A headerless file must have exactly the columns the spec names."""
    data = tmp_path / "d.txt"
    data.write_text("\n\n" + "\n".join("1 2 3" for _ in range(10)) + "\n")
    spec = load_spec(DEBUTANIZER_SPEC)
    with pytest.raises(DataError, match=r"has 3 columns but the spec names 8"):
        load_dataset(spec, data)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_dataset(load_spec(DEBUTANIZER_SPEC), tmp_path / "nope.txt")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("lags: [2]", "lags: [1]"), "below its analyzer delay"),
        (("combine: {a: 0.5, b: 0.5}", "combine: {a: 0.5, zz: 0.5}"), "unknown signals"),
        (("split:", "splitt: 1\nsplit:"), "splitt: Extra inputs are not permitted"),
        (("range: [-100, 100]}", "range: [100, -100]}"), "low < high"),
    ],
)
def test_bad_spec_names_the_problem(
    tiny: tuple[Path, Path], change: tuple[str, str], message: str
) -> None:
    """Spec mistakes are reported with the key and the reason."""
    spec, _ = tiny
    spec.write_text(spec.read_text().replace(*change, 1))
    with pytest.raises(SpecError, match=message):
        load_spec(spec)


def test_report_stamped_analyzer_is_moved_to_sample_time(tiny: tuple[Path, Path]) -> None:
    """A value reported at row t+d describes the process at t: it labels row t."""
    spec, data = tiny
    spec.write_text(
        spec.read_text().replace("analyzer_delay: 2}", "analyzer_delay: 2, stamped_at: report}")
    )
    ds = load_dataset(load_spec(spec), data)
    q = np.genfromtxt(data, delimiter=",", skip_header=1, usecols=(3,))
    t = ds.train.index
    np.testing.assert_allclose(ds.train.y, q[t + 2])
    np.testing.assert_allclose(ds.train.x[:, 3], q[t - 2])  # the feature is what was known
    assert ds.test.index[-1] == len(q) - 3  # the last 2 rows have no label yet


def test_rows_whose_lags_or_label_span_a_gap_in_time_are_left_out(
    tiny: tuple[Path, Path],
) -> None:
    """Five minutes missing from a one-a-minute export: lags and the report-time label are
    taken by row, so the rows around the gap would pair samples six minutes apart as one
    apart. With the sample interval declared they are left out, counted and warned about."""
    spec, data = tiny
    text = spec.read_text().replace("analyzer_delay: 2}", "analyzer_delay: 2, stamped_at: report}")
    lines = data.read_text(encoding="utf-8").splitlines()
    del lines[31:36]  # data rows 30..34 (0-based): minutes 30..34
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec.write_text(text)
    before = load_dataset(load_spec(spec), data)  # no interval declared: rows are samples
    assert before.rows_across_gaps == 0 and not before.warnings
    spec.write_text(text.replace("timestamp: time}", "timestamp: time, sample_interval_s: 60}"))
    ds = load_dataset(load_spec(spec), data)
    used = np.concatenate([ds.train.index, ds.validation.index, ds.test.index])
    # data row 29 is minute 29, row 30 minute 35; history 2 (q lag 2), label 2 rows on
    assert not {28, 29, 30, 31} & set(used.tolist())
    assert {27, 32} <= set(used.tolist())
    assert ds.rows_across_gaps == 4 and ds.rows_used == before.rows_used - 4
    (warning,) = ds.warnings
    assert "1 gap " in warning and "360 s" in warning and "4 rows" in warning


def test_lab_results_label_their_sample_time(tiny: tuple[Path, Path]) -> None:
    """Lab values override the analyzer on the row whose timestamp is their sample time."""
    import pandas as pd

    spec, data = tiny
    lab = pd.DataFrame(
        {"timestamp": ["2026-01-01T00:10:00Z", "2026-01-02T00:00:00Z"], "value": [42.0, 7.0]}
    )  # the second matches no row: ignored
    ds = load_dataset(load_spec(spec), data, lab_results=lab)
    row = int(np.flatnonzero(ds.train.index == 10)[0])
    assert ds.train.y[row] == 42.0
    plain = load_dataset(load_spec(spec), data)
    assert plain.train.y[row] != 42.0
    np.testing.assert_array_equal(np.delete(ds.train.y, row), np.delete(plain.train.y, row))
