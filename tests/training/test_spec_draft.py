"""``softsensor spec``: a first spec drafted from an export a new user brings, that the
trainer runs on as it stands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from service.cli.main import main
from training.data import load_dataset
from training.errors import DataError
from training.spec import DatasetSpec


def _export(
    path: Path, n: int = 300, sep: str = ";", decimal: str = ",", stamp: str = "{iso}"
) -> Path:
    """A plant export as a European-locale historian writes it: ';' between fields, decimal
    commas, units in the column names, a text column, a dead tag, the analyzer every 5 rows
    and ten minutes missing in the middle."""
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.normal(size=n)) * 0.2 + 80.0
    f = 1.0 + 0.05 * rng.normal(size=n)
    y = 0.4 + 0.05 * (t - 80.0) + 0.2 * (f - 1.0) + 0.005 * rng.normal(size=n)
    minutes = np.r_[np.arange(150), np.arange(160, n + 10)]
    lines = [sep.join(["time", "T12 [degC]", "F (t/h)", "L", "mode", "spare", "xB [mol %]"])]
    for i in range(n):
        hh, mm = divmod(int(minutes[i]), 60)
        iso = f"2026-02-01T{hh:02d}:{mm:02d}:00Z"
        cells = [stamp.format(iso=iso, hh=hh, mm=mm), f"{t[i]:.3f}", f"{f[i]:.4f}"]
        cells += [f"{2.0 + 0.1 * np.sin(i / 9):.4f}", "AUTO", "0"]
        cells.append(f"{y[i]:.4f}" if i % 5 == 0 else "")
        lines.append(sep.join(c.replace(".", decimal) for c in cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_drafted_spec_reads_the_export_and_trains_as_it_stands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _export(tmp_path / "unit 7.csv")
    assert main(["spec", "--data", str(data), "--target", "xB [mol %]"]) == 0
    said = capsys.readouterr().out
    spec = yaml.safe_load((tmp_path / "unit 7.yaml").read_text(encoding="utf-8"))
    assert spec["name"] == "unit_7"
    assert spec["source"] == {
        "format": "csv",
        "delimiter": ";",
        "decimal": ",",
        "timestamp": "time",
        "sample_interval_s": 60.0,
        "ignore": ["mode", "spare"],
    }
    units = {s["name"]: s["unit"] for s in spec["signals"]}
    assert units == {"T12 [degC]": "degC", "F (t/h)": "t/h", "L": "unknown"}
    assert spec["target"]["unit"] == "mol %" and spec["target"]["analyzer_delay"] == 0
    low, high = spec["signals"][1]["range"]  # a flow: never negative in the file
    assert low >= 0 and high > 1.1
    assert "analyzer_delay" in said and "units unknown" in said and "L" in said
    out = tmp_path / "run"
    args = ["--spec", str(tmp_path / "unit 7.yaml"), "--data", str(data), "--epochs", "3"]
    code = main(["train", *args, "--hidden", "8", "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    checks = metrics["data_checks"]  # inputs at lag 0, delay 0: no row spans the gap
    assert checks["rows_across_gaps"] == 0 and "1 gap" in checks["warnings"][0]
    assert metrics["test_r2"] > 0.5


def test_a_spec_is_not_replaced_unless_asked(tmp_path: Path) -> None:
    data = _export(tmp_path / "plant.csv", sep=",", decimal=".")
    spec = tmp_path / "plant.yaml"
    spec.write_text("# mine\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["spec", "--data", str(data), "--target", "xB [mol %]"])
    assert spec.read_text(encoding="utf-8") == "# mine\n"
    assert main(["spec", "--data", str(data), "--target", "xB [mol %]", "--force"]) == 0
    drafted = yaml.safe_load(spec.read_text(encoding="utf-8"))
    assert "delimiter" not in drafted["source"] and "decimal" not in drafted["source"]


@pytest.mark.parametrize(
    ("target", "says"), [("xD", "has no column 'xD'"), ("mode", "fewer than two numbers")]
)
def test_a_wrong_target_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, says: str
) -> None:
    data = _export(tmp_path / "plant.csv")
    assert main(["spec", "--data", str(data), "--target", target]) == 1
    assert says in capsys.readouterr().err
    assert not (tmp_path / "plant.yaml").exists()


def test_day_first_dates_are_drafted_as_the_file_runs_forward_or_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hourly rows from 10 February, day first: only that reading runs forward. From 1
    February the file cannot tell, and the command says how to tell it."""
    data = tmp_path / "plant.csv"
    lines = ["time;T;F;xB"]
    for i in range(120):
        day, hour = divmod(i, 24)
        lines.append(
            f"{10 + day:02d}.02.2026 {hour:02d}:00;{80 + np.sin(i / 7):.3f};"
            f"{1 + 0.1 * np.cos(i / 5):.3f};{0.4 + 0.01 * np.sin(i / 7):.4f}"
        )
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["spec", "--data", str(data), "--target", "xB"]) == 0
    source = yaml.safe_load((tmp_path / "plant.yaml").read_text(encoding="utf-8"))["source"]
    assert source["dayfirst"] is True and source["sample_interval_s"] == 3600.0
    early = tmp_path / "early.csv"
    text = "\n".join(  # the same rows from 1 February
        line if n == 0 else f"{1 + (n - 1) // 24:02d}" + line[2:]
        for n, line in enumerate(data.read_text(encoding="utf-8").splitlines())
    )
    early.write_text(text + "\n", encoding="utf-8")
    assert main(["spec", "--data", str(early), "--target", "xB"]) == 1
    assert "--day-first" in capsys.readouterr().err
    assert main(["spec", "--data", str(early), "--target", "xB", "--day-first"]) == 0
    drafted = yaml.safe_load((tmp_path / "early.yaml").read_text(encoding="utf-8"))
    assert drafted["source"]["dayfirst"] is True


@pytest.mark.parametrize(("encoding", "declared"), [("cp1252", "cp1252"), ("utf-8-sig", None)])
def test_an_export_a_windows_spreadsheet_saved_is_drafted_in_its_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str, declared: str | None
) -> None:
    """Excel saves CSV in the Windows code page (cp1252 in Western Europe) or as UTF-8 with
    a byte-order mark. The names come through as written, and the YAML shows them so."""
    data = _export(tmp_path / "plant.csv")
    text = data.read_text(encoding="utf-8").replace("degC", "°C").replace("F (t/h)", "Fluß (t/h)")
    data.write_bytes(text.encode(encoding))
    assert main(["spec", "--data", str(data), "--target", "xB [mol %]"]) == 0
    said = capsys.readouterr().out
    written = (tmp_path / "plant.yaml").read_text(encoding="utf-8")
    assert "name: T12 [°C]" in written and "Fluß (t/h)" in written  # not "\xB0" escapes
    spec = yaml.safe_load(written)
    assert spec["source"].get("encoding") == declared
    assert ("not UTF-8 (line 1)" in said) == (declared is not None)
    out = tmp_path / "run"
    args = ["--spec", str(tmp_path / "plant.yaml"), "--data", str(data), "--epochs", "2"]
    assert main(["train", *args, "--hidden", "8", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert "T12 [°C]" in metrics["feature_names"]


def test_a_local_time_export_over_the_end_of_summer_time_is_drafted_in_its_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Local times without an offset repeat an hour when summer time ends: the draft stops
    and names --timezone; with it the spec keeps the zone and trains."""
    clock = pd.date_range("2026-10-24 18:00", periods=600, freq="1min", tz="Europe/Berlin")
    rng = np.random.default_rng(2)
    t = 80 + np.cumsum(rng.normal(size=len(clock))) * 0.1
    f = 1 + 0.1 * rng.normal(size=len(clock))
    y = 0.4 + 0.05 * (t - 80) + 0.1 * f
    shown = clock.tz_localize(None).strftime("%Y-%m-%d %H:%M")
    rows = zip(shown, t, f, y, strict=True)
    data = tmp_path / "plant.csv"
    lines = ["time,T,F,xB"] + [f"{s},{a:.3f},{b:.4f},{c:.4f}" for s, a, b, c in rows]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["spec", "--data", str(data), "--target", "xB"]) == 1
    err = capsys.readouterr().err
    assert "end of summer time" in err and "--timezone" in err
    assert main(["spec", "--data", str(data), "--target", "xB", "--timezone", "Europe/Berlin"]) == 0
    spec = yaml.safe_load((tmp_path / "plant.yaml").read_text(encoding="utf-8"))
    assert spec["source"]["timezone"] == "Europe/Berlin"
    assert spec["source"]["sample_interval_s"] == 60.0
    args = ["--spec", str(tmp_path / "plant.yaml"), "--data", str(data), "--epochs", "2"]
    assert main(["train", *args, "--hidden", "8", "--quiet", "--out", str(tmp_path / "r")]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["data_checks"]["rows_across_gaps"] == 0  # no gap, no step back


def test_numbers_separated_by_spaces_are_drafted_with_their_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A text file of numbers, as lab systems and papers' data sets come: its header line
    names the columns, or --columns does; a title line above is skipped."""
    rng = np.random.default_rng(4)
    u = rng.normal(size=(200, 3))
    y = u @ np.array([0.5, -0.3, 0.1]) + 0.01 * rng.normal(size=200)
    rows = [" ".join(f"{v:.5f}" for v in (*r, t)) for r, t in zip(u, y, strict=True)]
    named = tmp_path / "named.txt"
    named.write_text("Lab data, unit 7\n\nu1  u2  u3  y\n" + "\n".join(rows) + "\n")
    assert main(["spec", "--data", str(named), "--target", "y"]) == 0
    source = yaml.safe_load((tmp_path / "named.yaml").read_text(encoding="utf-8"))["source"]
    assert source == {"format": "whitespace", "skip_rows": 2}
    assert "title" in capsys.readouterr().out
    bare = tmp_path / "bare.txt"
    bare.write_text("\n".join(rows) + "\n")
    assert main(["spec", "--data", str(bare), "--target", "y"]) == 1
    assert "--columns c1,c2,c3,c4" in capsys.readouterr().err
    assert main(["spec", "--data", str(bare), "--target", "y", "--columns", "a,b,c,y"]) == 0
    spec = yaml.safe_load((tmp_path / "bare.yaml").read_text(encoding="utf-8"))
    assert spec["source"] == {"format": "whitespace", "columns": ["a", "b", "c", "y"]}
    args = ["--spec", str(tmp_path / "bare.yaml"), "--data", str(bare), "--epochs", "2"]
    assert main(["train", *args, "--hidden", "8", "--quiet", "--out", str(tmp_path / "r")]) == 0


def test_a_title_line_above_a_csv_header_is_skipped(tmp_path: Path) -> None:
    data = _export(tmp_path / "plant.csv")
    text = data.read_text(encoding="utf-8")
    data.write_text("Export unit 7; from 2026-02-01\n" + text, encoding="utf-8")
    assert main(["spec", "--data", str(data), "--target", "xB [mol %]"]) == 0
    source = yaml.safe_load((tmp_path / "plant.yaml").read_text(encoding="utf-8"))["source"]
    assert source["skip_rows"] == 1 and source["delimiter"] == ";" and source["decimal"] == ","


def test_a_units_line_below_the_header_gives_the_units_and_is_not_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spreadsheet exports write the units on the line below the names: the draft takes
    them, the spec skips that line (header_rows: 2), and a bad cell is named by its line."""
    data = _export(tmp_path / "plant.csv")
    lines = data.read_text(encoding="utf-8").splitlines()
    lines[0] = "time;T12;F;L;mode;spare;xB"
    lines.insert(1, ";degC;t/h;m;;;mol %")
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["spec", "--data", str(data), "--target", "xB"]) == 0
    assert "units (header_rows: 2)" in capsys.readouterr().out
    spec = yaml.safe_load((tmp_path / "plant.yaml").read_text(encoding="utf-8"))
    assert spec["source"]["header_rows"] == 2
    assert {s["name"]: s["unit"] for s in spec["signals"]} == {"T12": "degC", "F": "t/h", "L": "m"}
    assert spec["target"]["unit"] == "mol %"
    cells = lines[5].split(";")
    lines[5] = ";".join([cells[0], "n/a", *cells[2:]])
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["--spec", str(tmp_path / "plant.yaml"), "--data", str(data), "--epochs", "2"]
    assert main(["train", *args, "--hidden", "8", "--quiet", "--out", str(tmp_path / "r")]) == 1
    assert "column 'T12', row 4 (line 6): non-numeric value 'n/a'" in capsys.readouterr().err


def _compressed(path: Path, raw: bytes) -> Path:
    import bz2
    import gzip
    import lzma
    import zipfile

    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("unit7.csv", raw)
        return path
    packers: dict[str, Callable[[bytes], bytes]] = {
        ".gz": gzip.compress,
        ".bz2": bz2.compress,
        ".xz": lzma.compress,
    }
    path.write_bytes(packers[path.suffix](raw))
    return path


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.xz", ".zip"])
def test_a_compressed_export_is_drafted_and_its_lines_named_as_unpacked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """Exports travel compressed; pandas reads them by the extension, and the layout, the
    encoding and the line of a bad cell are read from the same unpacked text."""
    text = _export(tmp_path / "plant.csv").read_text(encoding="utf-8").replace("degC", "°C")
    data = _compressed(tmp_path / f"unit7{suffix}", text.encode("cp1252"))
    out = tmp_path / "unit7.yaml"
    args = ["spec", "--data", str(data), "--target", "xB [mol %]", "--out", str(out)]
    assert main(args) == 0
    source = yaml.safe_load(out.read_text(encoding="utf-8"))["source"]
    assert (source["delimiter"], source["decimal"], source["encoding"]) == (";", ",", "cp1252")
    train = ["train", "--spec", str(out), "--data", str(data), "--epochs", "1", "--quiet"]
    assert main([*train, "--hidden", "8", "--out", str(tmp_path / "r")]) == 0
    lines = text.splitlines()
    cells = lines[7].split(";")
    lines[7] = ";".join([cells[0], "n/a", *cells[2:]])
    _compressed(data, ("\n".join(lines) + "\n").encode("cp1252"))
    capsys.readouterr()
    assert main([*train, "--out", str(tmp_path / "r2")]) == 1
    assert "row 7 (line 8): non-numeric value 'n/a'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("head", "what"),
    [(b"PK\x03\x04" + bytes(60), "Excel .xlsx"), (b"\xd0\xcf\x11\xe0" + bytes(60), "97-2003")],
)
def test_a_workbook_is_refused_for_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], head: bytes, what: str
) -> None:
    book = tmp_path / "unit7.xlsx"
    book.write_bytes(head)
    assert main(["spec", "--data", str(book), "--target", "xB"]) == 1
    err = capsys.readouterr().err
    assert what in err and "save the sheet as CSV" in err


def test_a_parquet_frame_indexed_by_time_keeps_its_times(tmp_path: Path) -> None:
    """pandas writes a frame indexed by time with the times as its index; they were dropped
    (no time column, no gaps, no time split), now they are the time column."""
    n = 300
    stamps = pd.date_range("2026-02-01", periods=n, freq="1min", tz="UTC", name="time")
    rng = np.random.default_rng(5)
    t = 80 + np.cumsum(rng.normal(size=n)) * 0.1
    f = 1 + 0.1 * rng.normal(size=n)
    frame = pd.DataFrame({"T12": t, "F": f, "xB": 0.4 + 0.05 * (t - 80) + 0.1 * f}, index=stamps)
    data = tmp_path / "unit7.parquet"
    frame.to_parquet(data)
    assert main(["spec", "--data", str(data), "--target", "xB"]) == 0
    source = yaml.safe_load((tmp_path / "unit7.yaml").read_text(encoding="utf-8"))["source"]
    assert source == {"format": "parquet", "timestamp": "time", "sample_interval_s": 60.0}
    spec = DatasetSpec.model_validate(yaml.safe_load((tmp_path / "unit7.yaml").read_text()))
    ds = load_dataset(spec, data)
    assert ds.timestamps is not None and ds.timestamps[0].startswith("2026-02-01T00:00")


@pytest.mark.parametrize(("decimal", "thousands"), [(",", "."), (".", ",")])
def test_numbers_a_spreadsheet_grouped_by_thousands_are_read(
    tmp_path: Path, decimal: str, thousands: str
) -> None:
    """'12.062,87' (German) and '12,062.87' (English) as a spreadsheet formats a flow: the
    column was text to the draft and left out; now the marks are found and read."""
    rng = np.random.default_rng(6)
    lines = ["time;Feed [kg/h];T [degC];xB [mol %]"]
    feeds = 12_000 + 500 * rng.normal(size=200)
    for i, feed in enumerate(feeds):
        t = 80 + rng.normal()
        cells = [
            f"{feed:,.2f}",
            f"{t:.2f}",
            f"{0.4 + 1e-5 * (feed - 12_000) + 0.05 * (t - 80):.4f}",
        ]
        shown = [c.replace(",", "_").replace(".", decimal).replace("_", thousands) for c in cells]
        lines.append(";".join([f"2026-02-01T{i // 60:02d}:{i % 60:02d}:00Z", *shown]))
    data = tmp_path / "plant.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["spec", "--data", str(data), "--target", "xB [mol %]"]) == 0
    spec = DatasetSpec.model_validate(yaml.safe_load((tmp_path / "plant.yaml").read_text()))
    assert (spec.source.decimal, spec.source.thousands) == (decimal, thousands)
    ds = load_dataset(spec, data)
    j = ds.feature_names.index("Feed [kg/h]")
    assert ds.train.x[0, j] == pytest.approx(round(feeds[0], 2))


def test_a_thousands_mark_that_is_the_decimal_mark_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"source\.thousands ',' is also the decimal mark"):
        DatasetSpec.model_validate(
            {
                "name": "x",
                "source": {"format": "csv", "delimiter": ";", "decimal": ",", "thousands": ","},
                "signals": [{"name": "a", "unit": "-", "range": [0, 1]}],
                "target": {"name": "y", "unit": "-", "range": [0, 1], "analyzer_delay": 0},
                "features": [{"signal": "a", "lags": [0]}],
                "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
            }
        )


def test_an_export_listed_newest_first_is_read_oldest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Historian and LIMS reports often list the newest row first: refused as out of order
    at its second row before; now read oldest first, said so, and a bad cell still named
    by its line in the file."""
    data = _export(tmp_path / "plant.csv")
    header, *rows = data.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join([header, *rows[::-1]]) + "\n", encoding="utf-8")
    assert main(["spec", "--data", str(data), "--target", "xB [mol %]"]) == 0
    assert "newest first" in capsys.readouterr().out
    spec = DatasetSpec.model_validate(yaml.safe_load((tmp_path / "plant.yaml").read_text()))
    assert spec.source.sample_interval_s == 60.0
    ds = load_dataset(spec, data)
    assert ds.timestamps is not None and ds.timestamps == sorted(ds.timestamps)
    assert ds.warnings[0].startswith("the rows run newest first")
    lines = data.read_text(encoding="utf-8").splitlines()
    cells = lines[3].split(";")
    lines[3] = ";".join([cells[0], "n/a", *cells[2:]])
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"\(line 4\): non-numeric value 'n/a'"):
        load_dataset(spec, data)
