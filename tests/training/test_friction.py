"""What a new user met when training on their own data, each fixed: title lines, labels out of
range, choosing the test window, report-stamped analyzer lags, number formats in errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service.cli.main import main
from tests.conftest import TINY_SPEC, write_tiny_csv
from training.data import load_dataset
from training.errors import DataError, SpecError
from training.spec import load_spec

WHITESPACE_SPEC = """
name: ws
source: {format: whitespace, columns: [u, v, w, y]%s}
signals:
  - {name: u, unit: degC, range: [-10, 10]}
  - {name: v, unit: degC, range: [-10, 10]}
  - {name: w, unit: degC, range: [-10, 10]}
target: {name: y, unit: mol%%, range: [-10, 10], analyzer_delay: 0}
features:
  - {signal: u, lags: [0]}
  - {signal: v, lags: "0..1"}
  - {signal: w, lags: [0]}
split: {train: 0.6, validation: 0.2, test: 0.2}
"""


def _whitespace_file(path: Path, title: str, n: int = 40, bad_row: int | None = None) -> Path:
    """A title line and two blank lines, then whitespace-separated numbers."""
    rng = np.random.default_rng(0)
    rows = [" ".join(f"{v:.4f}" for v in rng.normal(size=4)) for _ in range(n)]
    if bad_row is not None:
        rows[bad_row - 1] = "1.0 oops 2.0 3.0"
    path.write_text(title + "\n\n\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _spec(tmp_path: Path, extra: str = "") -> Path:
    spec = tmp_path / "ws.yaml"
    spec.write_text(WHITESPACE_SPEC % extra, encoding="utf-8")
    return spec


def test_a_title_line_fails_with_its_line_and_the_remedy(tmp_path: Path) -> None:
    """pandas blames the first data line ("Expected 3 fields in line 4"); the error now says
    that line 1 set the count and how to skip it."""
    data = _whitespace_file(tmp_path / "d.txt", "Column data set")
    with pytest.raises(DataError) as err:
        load_dataset(load_spec(_spec(tmp_path)), data)
    text = str(err.value)
    assert "line 4 has 4 fields but line 1 has 3" in text
    assert "source.skip_rows" in text and "here 3 would skip everything above line 4" in text


def test_a_title_of_as_many_words_names_skip_rows_too(tmp_path: Path) -> None:
    data = _whitespace_file(tmp_path / "d.txt", "debutanizer data with title")
    with pytest.raises(DataError, match=r"row 1 \(line 1\): non-numeric value .*skip_rows"):
        load_dataset(load_spec(_spec(tmp_path)), data)


def test_skip_rows_reads_the_file_and_errors_name_the_real_line(tmp_path: Path) -> None:
    """With skip_rows the data loads; a bad cell in data row 7 is reported at line 10."""
    spec = _spec(tmp_path, ", skip_rows: 1")
    ds = load_dataset(load_spec(spec), _whitespace_file(tmp_path / "d.txt", "Title line"))
    assert ds.rows_read == 40 and ds.feature_names == ["u", "v", "v_lag1", "w"]
    bad = _whitespace_file(tmp_path / "b.txt", "Title line", bad_row=7)
    with pytest.raises(DataError, match=r"column 'v', row 7 \(line 10\): non-numeric value"):
        load_dataset(load_spec(spec), bad)


def test_a_whitespace_file_with_a_header_line_is_read_by_its_names(tmp_path: Path) -> None:
    """Many text exports name their columns on the first line; a spec without
    source.columns reads them from there, and a file of numbers only is told to name them."""
    rng = np.random.default_rng(0)
    rows = [" ".join(f"{v:.4f}" for v in rng.normal(size=4)) for _ in range(40)]
    data = tmp_path / "named.txt"
    data.write_text("Unit 7 export\n\nw   v  u y\n" + "\n".join(rows) + "\n", encoding="utf-8")
    spec = tmp_path / "ws.yaml"
    spec.write_text(
        WHITESPACE_SPEC.replace("columns: [u, v, w, y]%s", "skip_rows: 2"), encoding="utf-8"
    )
    ds = load_dataset(load_spec(spec), data)
    first = [float(v) for v in rows[1].split()]  # v at lag 1: the first row scored is the 2nd
    assert ds.rows_read == 40 and ds.train.x[0, 0] == pytest.approx(first[2])  # u: 3rd column
    bare = _whitespace_file(tmp_path / "bare.txt", "")
    with pytest.raises(DataError, match=r"holds numbers, not column names.*source\.columns"):
        load_dataset(load_spec(spec), bare)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("format: whitespace, columns: [u, v, w, y], header_rows: 2", "text files with a header"),
        ("format: parquet, header_rows: 2", "text files with a header"),
        ("format: csv, header_rows: 0", "source.header_rows"),
    ],
)
def test_header_rows_only_where_a_file_has_a_header(tmp_path: Path, source: str, says: str) -> None:
    spec = tmp_path / "ws.yaml"
    spec.write_text(
        WHITESPACE_SPEC.replace("format: whitespace, columns: [u, v, w, y]%s", source),
        encoding="utf-8",
    )
    with pytest.raises(SpecError, match=says):
        load_spec(spec)


WINDOWS_SPEC = """
name: win
source: {format: csv, delimiter: ;, decimal: ',', timestamp: Zeit%s}
signals:
  - {name: "T12 [°C]", unit: "°C", range: [0, 200]}
  - {name: "Durchfluß [t/h]", unit: t/h, range: [0, 10]}
target: {name: "xB [mol %%]", unit: mol %%, range: [0, 5], analyzer_delay: 0}
features:
  - {signal: "T12 [°C]", lags: [0, 1]}
  - {signal: "Durchfluß [t/h]", lags: [0]}
split: {train: 0.6, validation: 0.2, test: 0.2}
"""


def _windows_export(path: Path, encoding: str, n: int = 60) -> Path:
    """What a spreadsheet on a German-locale Windows saves as CSV: names with degree signs
    and umlauts, in its code page (cp1252) or as UTF-8 with a byte-order mark."""
    rng = np.random.default_rng(3)
    lines = ["Zeit;T12 [°C];Durchfluß [t/h];xB [mol %]"]
    for i in range(n):
        t, f = 80 + rng.normal(), 1 + 0.1 * rng.normal()
        cells = [f"2026-02-01T{i // 60:02d}:{i % 60:02d}:00Z", f"{t:.3f}", f"{f:.4f}"]
        cells.append(f"{0.4 + 0.05 * (t - 80):.4f}")
        lines.append(";".join(c.replace(".", ",") if i else c for c in cells))
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def test_a_file_not_in_utf8_is_refused_with_its_line_and_read_as_declared(tmp_path: Path) -> None:
    """A cp1252 file used to end in a UnicodeDecodeError traceback from pandas' C parser."""
    data = _windows_export(tmp_path / "w.csv", "cp1252")
    spec = tmp_path / "w.yaml"
    spec.write_text(WINDOWS_SPEC % "", encoding="utf-8")
    with pytest.raises(DataError, match=r"is not utf-8 text \(line 1, byte 11\).*source\.encoding"):
        load_dataset(load_spec(spec), data)
    spec.write_text(WINDOWS_SPEC % ", encoding: cp1252", encoding="utf-8")
    ds = load_dataset(load_spec(spec), data)
    assert ds.rows_read == 60 and ds.feature_names[0] == "T12 [°C]"


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path: Path) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(WINDOWS_SPEC % "", encoding="utf-8")
    ds = load_dataset(load_spec(spec), _windows_export(tmp_path / "w.csv", "utf-8-sig"))
    assert ds.rows_read == 60


@pytest.mark.parametrize("encoding", ["utf-9", "rot13"])
def test_an_encoding_that_is_no_text_encoding_is_refused_by_name(
    tmp_path: Path, encoding: str
) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(WINDOWS_SPEC % f", encoding: {encoding}", encoding="utf-8")
    with pytest.raises(SpecError, match=rf"source\.encoding '{encoding}' is not a text encoding"):
        load_spec(spec)


def _tiny_with_outliers(tmp_path: Path, rows: tuple[int, ...]) -> tuple[Path, Path]:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC.replace("range: [-100, 100], analyzer", "range: [-1, 1], analyzer"))
    data = write_tiny_csv(tmp_path / "tiny.csv", n=80)
    lines = data.read_text().splitlines()
    for r in rows:
        cells = lines[r].split(",")
        cells[3] = "5.0"
        lines[r] = ",".join(cells)
    data.write_text("\n".join(lines) + "\n")
    return spec, data


def test_targets_out_of_range_are_counted_and_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels outside the declared range used to vanish silently; now metrics.json counts
    them and the run warns with the count and the range."""
    spec, data = _tiny_with_outliers(tmp_path, (20, 30, 40))
    ds = load_dataset(load_spec(spec), data)
    outside = int(np.sum(np.abs(np.genfromtxt(data, delimiter=",", skip_header=1)[:, 3]) > 1))
    assert ds.target_out_of_range == outside >= 3
    assert f"{outside} values of target 'q'" in ds.warnings[0] and "[-1, 1] mol%" in ds.warnings[0]
    out = tmp_path / "run"
    args = ["train", "--spec", str(spec), "--data", str(data), "--out", str(out)]
    assert main([*args, "--epochs", "3", "--members", "1", "--quiet"]) == 0
    import json

    checks = json.loads((out / "metrics.json").read_text())["data_checks"]
    assert checks["target_out_of_range"] == outside
    assert f"warning: {outside} values of target 'q'" in capsys.readouterr().err


def test_errors_print_numbers_not_numpy_reprs(tmp_path: Path) -> None:
    """'value outside the valid range [-100, 100]: 999', never np.float64(999.0)."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    data = write_tiny_csv(tmp_path / "tiny.csv")
    lines = data.read_text().splitlines()
    cells = lines[5].split(",")
    cells[1] = "999"
    lines[5] = ",".join(cells)
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_dataset(load_spec(spec), data)
    assert "[-100, 100]: 999 (missing-value policy" in str(err.value)
    assert "np.float64" not in str(err.value)


@pytest.mark.parametrize(
    ("window", "first", "last"),
    [
        ("{start: 51}", 51, 80),
        ("{start: 41, end: 70}", 41, 70),
        ("{start: '2026-01-01T00:45:00Z'}", 46, 80),
        ("{start: '2026-01-01T00:40:00', end: '2026-01-01T01:09:00Z'}", 41, 70),
    ],
)
def test_the_test_window_by_rows_or_timestamps(
    tmp_path: Path, window: str, first: int, last: int
) -> None:
    """Rows are the 1-based data rows of error messages; both ends are inclusive; the rows
    before the window are split train/validation by the given shares, in time order."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        TINY_SPEC.replace(
            "split: {train: 0.6, validation: 0.2, test: 0.2}",
            f"split: {{train: 0.75, validation: 0.25, test: {window}}}",
        )
    )
    ds = load_dataset(load_spec(spec), write_tiny_csv(tmp_path / "tiny.csv", n=80))
    assert ds.test.index[0] + 1 == first and ds.test.index[-1] + 1 == last
    before = first - 1 - 2  # rows 3.. are usable (lag 2)
    assert len(ds.train) + len(ds.validation) == before
    assert len(ds.train) == round(0.75 * before)
    assert ds.validation.index[-1] < ds.test.index[0]


def test_a_test_window_with_no_rows_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC.replace("test: 0.2}", "test: {start: 500}}"))
    with pytest.raises(DataError, match=r"no usable row lies in the test window \(rows 500"):
        load_dataset(load_spec(spec), write_tiny_csv(tmp_path / "tiny.csv"))


def test_report_stamped_target_lag_below_the_delay_is_refused(tmp_path: Path) -> None:
    """stamped_at: report used to accept such a lag and fail later with '0 usable rows'."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        TINY_SPEC.replace("analyzer_delay: 2}", "analyzer_delay: 4, stamped_at: report}")
    )
    with pytest.raises(SpecError, match="used at lag 2, below its analyzer delay of 4"):
        load_spec(spec)


@pytest.mark.parametrize(
    ("lags", "expected"),
    [("0..3", [0, 1, 2, 3]), ("'0..30:10'", [0, 10, 20, 30]), ("[0, '4..6']", [0, 4, 5, 6])],
)
def test_lag_ranges_in_the_spec(tmp_path: Path, lags: str, expected: list[int]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC.replace("{signal: a, lags: [0, 1]}", f"{{signal: a, lags: {lags}}}"))
    assert load_spec(spec).features[0].lags == expected


def test_bad_lag_ranges_are_spec_errors(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC.replace("{signal: a, lags: [0, 1]}", "{signal: a, lags: '5..2'}"))
    with pytest.raises(SpecError, match="needs start <= end"):
        load_spec(spec)


def _european(src: Path, dst: Path) -> Path:
    """``src`` as a spreadsheet in many European locales writes it: ';' and decimal commas."""
    text = src.read_text(encoding="utf-8").replace(",", ";")
    lines = text.splitlines()
    body = [
        ";".join([c.split(";")[0], *[v.replace(".", ",") for v in c.split(";")[1:]]])
        for c in lines[1:]
    ]
    dst.write_text("\n".join([lines[0], *body]) + "\n", encoding="utf-8")
    return dst


def test_semicolons_and_decimal_commas_read_as_the_same_numbers(tmp_path: Path) -> None:
    """``source.delimiter`` and ``source.decimal`` read a ';' file with decimal commas into
    exactly the dataset of the ',' and '.' file; without them the error says which
    character seems to separate the header's fields."""
    plain = write_tiny_csv(tmp_path / "plain.csv")
    eu = _european(plain, tmp_path / "eu.csv")
    assert re.search(r"\d;-?\d+,\d+;", eu.read_text()) and "." not in eu.read_text()
    spec = tmp_path / "plain.yaml"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    with pytest.raises(DataError, match=r"separated by ';'\? set source.delimiter"):
        load_dataset(load_spec(spec), eu)
    eu_spec = tmp_path / "eu.yaml"
    eu_spec.write_text(
        TINY_SPEC.replace("timestamp: time}", "timestamp: time, delimiter: ';', decimal: ','}"),
        encoding="utf-8",
    )
    a, b = load_dataset(load_spec(spec), plain), load_dataset(load_spec(eu_spec), eu)
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(a, part).x, getattr(b, part).x)
        np.testing.assert_array_equal(getattr(a, part).y, getattr(b, part).y)


def test_a_decimal_mark_that_is_also_the_delimiter_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(TINY_SPEC.replace("timestamp: time}", "timestamp: time, decimal: ','}"))
    with pytest.raises(SpecError, match=r"source\.decimal ',' is also the delimiter"):
        load_spec(spec)


LAB_SPEC = TINY_SPEC.replace("  - {signal: q, lags: [2]}\n", "")


def _lab_run(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """A process export without the analyzer's column, and the lab's results: sampled every
    3 minutes at 17 s past the minute (not on the export's grid), one sampled a day after
    the export ends, and one outside the target's range."""
    spec = tmp_path / "lab.yaml"
    spec.write_text(LAB_SPEC, encoding="utf-8")
    data = write_tiny_csv(tmp_path / "tiny.csv", n=120)
    lines = data.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join(",".join(line.split(",")[:3]) for line in lines) + "\n")
    stamps = pd.date_range("2026-01-01T00:03:17Z", periods=38, freq="3min").tolist()
    lab = pd.DataFrame(
        {
            "timestamp": [*stamps, pd.Timestamp("2026-01-02T00:00:00Z"), stamps[0]],
            "value": [*(0.1 * np.arange(38)), 1.0, 500.0],
        }
    ).sort_values("timestamp", kind="stable")
    return spec, data, lab


def test_lab_results_off_the_grid_label_the_rows_nearest_their_sample_times(
    tmp_path: Path,
) -> None:
    """A lab samples when it does, not on the historian's minute grid. Before, a result
    labelled a row only when stamped exactly at its time: none of these was used, and
    nothing said so."""
    spec, data, lab = _lab_run(tmp_path)
    ds = load_dataset(load_spec(spec), data, lab_results=lab)
    assert ds.lab_results_used == 38 and ds.lab_results_unmatched == 1
    assert any("1 of 40 lab results lie more than 30 s" in w for w in ds.warnings)
    assert any("1 of 40 lab results lie outside the target's range" in w for w in ds.warnings)
    y = np.concatenate([ds.train.y, ds.validation.y, ds.test.y])
    assert sorted(np.round(y, 6)) == pytest.approx(0.1 * np.arange(38))
    rows = np.concatenate([ds.train.index, ds.validation.index, ds.test.index])
    assert rows.tolist() == [3 + 3 * i for i in range(38)]  # 00:03:17 -> the 00:03 row


def test_train_takes_lab_results_for_an_export_without_the_analyzer(tmp_path: Path) -> None:
    spec, data, lab = _lab_run(tmp_path)
    csv = tmp_path / "lims.csv"
    lab.assign(timestamp=lab["timestamp"].map(lambda t: t.isoformat())).to_csv(csv, index=False)
    out = tmp_path / "run"
    args = ["--spec", str(spec), "--data", str(data), "--lab-results", str(csv)]
    assert (
        main(["train", *args, "--epochs", "2", "--hidden", "8", "--quiet", "--out", str(out)]) == 0
    )
    checks = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["data_checks"]
    assert checks["lab_results_used"] == 38 and checks["lab_results_unmatched"] == 1
