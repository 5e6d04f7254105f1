"""The served tag maps: files and directories read at start, one map per (model, stream),
found by model and stream, and checked against the model version served."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.contracts.errors import BadInputError
from service.plant.tagmap import TagMapError
from service.plant.tagmaps import load_tag_maps
from tests.service.conftest import Published, make_settings

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_directory_serves_one_map_per_stream(tmp_path: Path) -> None:
    _write(tmp_path / "u1.yaml", "model: m\nstream: unit-1\ninputs: [{signal: a, web_id: W1}]\n")
    _write(tmp_path / "u2.yml", "model: m\nstream: unit-2\ninputs: [{signal: a, web_id: W2}]\n")
    _write(tmp_path / "README.txt", "not a tag map")
    maps = load_tag_maps([tmp_path])
    assert len(maps) == 2
    assert maps.find("m", "unit-2").path.name == "u2.yml"
    with pytest.raises(BadInputError, match=r"stream: model 'm' has tag maps for streams"):
        maps.find("m", None)
    with pytest.raises(BadInputError, match=r"no tag map of model 'm' for stream 'unit-3'"):
        maps.find("m", "unit-3")
    with pytest.raises(BadInputError, match=r"model: no tag map for model 'other'"):
        maps.find("other", None)


def test_a_map_without_a_stream_serves_any_stream(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.yaml", "model: m\ninputs: [{signal: a, web_id: W}]\n")
    maps = load_tag_maps([path])
    assert maps.find("m", "anything").path == path
    assert maps.find("m", None).path == path


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": "inputs: [{signal: a, web_id: W}]\n"}, "model: required"),
        (
            {
                "a.yaml": "model: m\ninputs: [{signal: a, web_id: W}]\n",
                "b.yaml": "model: m\ninputs: [{signal: a, web_id: V}]\n",
            },
            "b.yaml is invalid: model, stream: 'm' and None are mapped by .*a.yaml already",
        ),
        ({"a.yaml": "model: m\ninputs: [{signal: a, web_id: W}]\nmax_age_s: -1\n"}, "max_age_s"),
    ],
)
def test_bad_maps_are_refused_naming_file_and_key(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        _write(tmp_path / name, text)
    with pytest.raises(TagMapError, match=message):
        load_tag_maps([tmp_path])


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TagMapError, match=r"cannot read tag map .*nothere.yaml"):
        load_tag_maps([tmp_path / "nothere.yaml"])


def test_the_map_must_fit_the_model_served(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "m.yaml",
        "model: m\ninputs: [{signal: a, web_id: W}, {signal: zz, web_id: V}]\n",
    )
    served = load_tag_maps([path]).find("m", None)
    with pytest.raises(TagMapError, match=r"m.yaml: inputs\[1\].signal: 'zz' is not a signal"):
        served.check_signals(["a"], frozenset({"a", "b"}))
    with pytest.raises(TagMapError, match=r"m.yaml: inputs: no point for signals \['b'\]"):
        served.check_signals(["a", "b"], frozenset({"a", "b", "zz"}))


def test_the_shipped_example_is_valid() -> None:
    maps = load_tag_maps([REPO / "deploy" / "tagmaps"])
    column_a = maps.find("column_a", "unit-1")
    signals = [t.signal for t in column_a.tags.inputs]
    assert signals == ["T03", "T08", "T13", "T21", "T28", "T34", "T39", "F", "L", "V", "D", "B"]
    assert {t.value for t in column_a.tags.outputs if t.web_id} == {
        "estimate",
        "estimate_corrected",
        "interval_low",
        "interval_high",
    }


def test_a_tag_map_for_another_model_version_answers_500_naming_the_file(
    published: Published, tmp_path: Path
) -> None:
    """A map that no longer fits the served model is the operator's to fix: a 500 naming
    the file by its name (not its path on the server) and the key, never a 4xx."""
    path = _write(tmp_path / "tiny.yaml", "model: tiny\ninputs: [{signal: a, web_id: W}]\n")
    settings = make_settings(published.root, tmp_path, tag_maps=[path])
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/predict?format=piwebapi", json={"Items": []})
    assert r.status_code == 500, r.text
    assert r.json()["detail"] == (
        "tag map tiny.yaml: inputs: no point for signals ['b', 'q'] of model 'tiny'"
    )
