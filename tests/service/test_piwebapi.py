"""PI Web API bodies: a streamset read in (golden file in the documented shape, with a
questionable value, a digital state, 7 fractional digits and unaligned streams) and the
recorded-values write body out (golden file), through the tag map."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.contracts.errors import BadInputError
from service.plant.piwebapi import read_streamset, write_body
from service.plant.quality import Quality
from service.plant.tagmap import TagMap, TagMapError, load_tag_map

GOLDEN = Path(__file__).parent / "golden"
G, U, B = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD


def _read() -> Any:
    return json.loads((GOLDEN / "pi_streamset_recorded.json").read_text(encoding="utf-8"))


def test_streamset_read_aligned_with_qualities() -> None:
    tags = load_tag_map(GOLDEN / "pi_tagmap.yaml")
    rows = read_streamset(_read(), tags, ["a", "b", "q"])
    assert rows.times == [
        datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 1, 0, 123456, tzinfo=UTC),  # .NET's 7th digit truncated
        datetime(2026, 1, 1, 0, 2, tzinfo=UTC),
    ]
    assert rows.values["a"] == [1.25, 1.5, 1.75]
    assert rows.quality["a"] == [G, U, U]  # questionable, substituted -> uncertain
    assert rows.values["b"] == [0.5, 0.5, None]  # as of each time; Good false -> no number
    assert rows.quality["b"] == [G, G, B]
    assert rows.notes["b"][2] == "I/O Timeout"
    assert rows.values["q"] == [0.42, 0.42, 0.42]
    assert rows.quality["q"] == [U, U, U]  # 10 min old against max_age_s 300: stale
    assert rows.notes["q"][0] == "stale: 600 s old"


def test_write_body_matches_the_documented_recorded_shape() -> None:
    tags = load_tag_map(GOLDEN / "pi_tagmap.yaml")
    times = read_streamset(_read(), tags, ["a", "b", "q"]).times
    outputs = {
        "estimate": [0.5, 0.625, 0.75],
        "estimate_corrected": [0.55, 0.675, 0.8],
        "interval_low": [0.25, 0.375, 0.5],
        "interval_high": [0.75, 0.875, 1.0],  # mapped to an OPC UA node only: not written
    }
    body = write_body(tags, times, outputs, [G, U, B], "mol%")  # type: ignore[arg-type]
    golden = json.loads((GOLDEN / "pi_recorded_write.json").read_text(encoding="utf-8"))
    assert body == golden


def _stream(values: list[dict[str, Any]], **keys: Any) -> dict[str, Any]:
    return {"Items": [{"WebId": "W", "Name": "TI1", "Items": values, **keys}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_stream([{"Timestamp": "2026-01-01T00:00:00", "Value": 1.0}]), "no time zone"),
        (_stream([{"Timestamp": "yesterday", "Value": 1.0}]), "not a time"),
        (_stream([{"Timestamp": "2026-01-01T00:00:00Z", "Value": "ON"}]), "digital or string"),
        (_stream([{"Timestamp": "2026-01-01T00:00:00Z", "Value": True}]), "digital or string"),
        (_stream([{"Timestamp": "2026-01-01T00:00:00Z", "Value": 1.0, "Good": "yes"}]), "Good"),
        (
            {"Items": [{"WebId": "X", "Name": "OTHER", "Items": []}]},
            "'OTHER' is not in the tag map",
        ),
        (_stream([], WebException={"Errors": ["PI point not found"]}), "PI point not found"),
        ({"WebException": {"Errors": ["timeout"]}, "Items": []}, "timeout"),
        ({"Items": "nothing"}, "a list of PI streams"),
        ({"Items": [{"WebId": 7, "Items": []}]}, r"Items\[0\].WebId: text is required"),
        (_stream([{"Timestamp": "2026-01-01T00:00:00Z", "Value": 10**400}]), "not a finite"),
        (_stream([{"Timestamp": "0001-01-01T00:00:00+05:00", "Value": 1.0}]), "out of range"),
        (
            _stream([{"Timestamp": "2026-01-01T00:00:00Z", "Value": 1.0, "Substituted": 1}]),
            "Substituted must be true or false",
        ),
        ({"Items": []}, r"no values for signals \['a'\]"),
    ],
)
def test_bad_bodies_are_refused_naming_the_place(body: Any, message: str) -> None:
    tags = TagMap.model_validate({"inputs": [{"signal": "a", "web_id": "W"}]})
    with pytest.raises(BadInputError, match=message):
        read_streamset(body, tags, ["a"])


def test_a_bad_value_is_a_bad_row_not_a_refusal() -> None:
    tags = TagMap.model_validate({"inputs": [{"signal": "a", "web_id": "W"}]})
    body = _stream([{"Timestamp": "2026-01-01T00:00:00Z", "Good": False, "Errors": ["x"]}])
    rows = read_streamset(body, tags, ["a"])
    assert rows.values["a"] == [None] and rows.quality["a"] == [B] and rows.notes["a"] == ["x"]


def test_value_form_and_bare_array_are_read_too() -> None:
    tags = load_tag_map(GOLDEN / "pi_tagmap.yaml")
    streams = _read()["Items"]
    one_value = {"Items": [{**s, "Value": s["Items"][0]} for s in streams]}
    for s in one_value["Items"]:
        del s["Items"]
    rows = read_streamset(one_value, tags, ["a", "b", "q"])
    assert rows.values["a"] == [1.25] and rows.values["b"] == [0.5]
    bare = read_streamset(streams, tags, ["a", "b", "q"])
    assert bare.values == read_streamset(_read(), tags, ["a", "b", "q"]).values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inputs: []", "inputs"),
        ("inputs: [{signal: a}]", "at least one of"),
        ("inputs: [{signal: a, web_id: W}, {signal: a, web_id: V}]", "more than once"),
        ("inputs: [{signal: a, web_id: W}, {signal: b, web_id: W}]", "web_id used more than once"),
        ("inputs: [{signal: a, webid: W}]", "webid"),
        ("outputs: [{value: estimate, web_id: W}]\ninputs: [{signal: a, web_id: V}]\nx: 1", "x"),
        ("inputs: [{signal: a, web_id: W}]\noutputs: [{value: guess, web_id: V}]", "value"),
        ("[", "not valid YAML"),
    ],
)
def test_a_bad_tag_map_names_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TagMapError, match=message) as info:
        load_tag_map(path)
    assert str(path) in str(info.value)
