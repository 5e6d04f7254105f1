"""Input qualities in every encoding historians use, read to good / uncertain / bad."""

from __future__ import annotations

import pytest

from service.contracts.errors import BadInputError
from service.plant.quality import Quality, from_number, from_opcda, from_opcua, from_pi, from_text

G, U, B = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD


@pytest.mark.parametrize(
    ("text", "quality"),
    [
        ("good", G),
        ("Good", G),
        ("GOOD_PROVISIONAL", G),
        ("OK (0x0)", G),  # Telegraf's OPC UA input
        ("uncertain", U),
        ("UncertainLastUsableValue", U),
        ("Uncertain_LastKnownValue", U),  # Ignition
        ("Questionable", U),
        ("suspect", U),
        ("bad", B),
        ("BadNoCommunication", B),  # OPC UA symbol
        ("Bad_NotConnected", B),  # Ignition
        ("Error", B),
    ],
)
def test_quality_words_and_symbols(text: str, quality: Quality) -> None:
    assert from_text(text, "q") is quality


def test_an_unknown_word_is_refused_naming_where() -> None:
    with pytest.raises(BadInputError, match=r"records\[2\]\.quality\.T03"):
        from_text("fine", "records[2].quality.T03")


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (0, G),
        (0x00000000, G),
        (0x40000000, U),
        (1083310080, U),  # UncertainLastUsableValue 0x40930000
        (0x80000000, B),
        (2150694912, B),  # BadNoCommunication 0x80310000
        (0xC0000000, B),  # reserved severity
        (-2147483136, B),  # Ignition Bad, signed 32 bit
        (1073742080, U),  # Ignition Uncertain
        (192, G),  # Ignition Good (an OPC DA value in the low bits; severity 00)
    ],
)
def test_opcua_status_codes(code: int, quality: Quality) -> None:
    assert from_opcua(code) is quality
    assert from_number(float(code), "opcua", "q") is quality


@pytest.mark.parametrize(
    ("code", "quality"), [(192, G), (216, G), (64, U), (84, U), (0, B), (24, B), (128, B)]
)
def test_opcda_quality_bytes(code: int, quality: Quality) -> None:
    assert from_opcda(code) is quality


def test_zero_means_good_in_opcua_and_bad_in_opcda_so_a_bare_integer_is_refused() -> None:
    assert from_number(0, "opcua", "q") is G
    assert from_number(0, "opcda", "q") is B
    with pytest.raises(BadInputError, match="quality_encoding"):
        from_number(0, None, "q")


def test_percent_confidence() -> None:
    assert from_number(80, "percent", "q") is G
    assert from_number(49.9, "percent", "q") is B
    with pytest.raises(BadInputError, match=r"0\.\.100"):
        from_number(120, "percent", "q")


@pytest.mark.parametrize(
    ("good", "questionable", "substituted", "quality"),
    [
        (True, False, False, G),
        (True, True, False, U),
        (True, False, True, U),  # replaced after it was written: not the transmitter's reading
        (False, False, False, B),
        (False, True, True, B),
    ],
)
def test_pi_flags(good: bool, questionable: bool, substituted: bool, quality: Quality) -> None:
    assert from_pi(good, questionable, substituted) is quality


def test_status_codes_out_and_order() -> None:
    assert [q.status_code for q in (G, U, B)] == [0, 0x40000000, 0x80000000]
    assert max(G, U) is U and max(U, B) is B
    assert [q.word for q in (G, U, B)] == ["good", "uncertain", "bad"]
