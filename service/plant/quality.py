"""Input quality as historians and DCSs send it, reduced to one scale: good, uncertain, bad.

Five encodings are in use and they disagree: PI's booleans (``Good``, ``Questionable``,
``Substituted``), OPC UA's 32-bit status code (0 is Good), OPC DA's quality byte (0 is
Bad; Canary and AVEVA send it), Honeywell PHD's confidence 0..100, and symbolic names
(``BadNoCommunication``, ``Uncertain_LastKnownValue``, ``Good``). A bare integer cannot be
read without knowing its encoding, so integers are only accepted with one named; text is read
by its prefix, which covers the symbols of every family.

The row status rules (``service.scoring.status``) take these values; the answer gives the row's
status back as words and as an OPC UA status code, so a historian can store the estimate
with its quality.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from service.contracts.errors import BadInputError

Encoding = Literal["opcua", "opcda", "percent"]


class Quality(IntEnum):
    """Ordered so that the worse of two qualities is the larger."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @property
    def word(self) -> str:
        return self.name.lower()

    @property
    def status_code(self) -> int:
        """The OPC UA status code of this severity (Part 4, 7.39: bits 31-30)."""
        return STATUS_CODES[self]


STATUS_CODES = {Quality.GOOD: 0x00000000, Quality.UNCERTAIN: 0x40000000, Quality.BAD: 0x80000000}

_PREFIXES = (
    ("good", Quality.GOOD),
    ("ok", Quality.GOOD),  # Telegraf's "OK (0x0)"
    ("uncertain", Quality.UNCERTAIN),
    ("questionable", Quality.UNCERTAIN),
    ("suspect", Quality.UNCERTAIN),
    ("bad", Quality.BAD),
    ("error", Quality.BAD),
)
PERCENT_GOOD = 50.0  # PHD: values of at least this confidence are used (one client's rule)


def from_text(text: str, where: str) -> Quality:
    """``good`` / ``Uncertain_LastKnownValue`` / ``BadNoCommunication`` / ``Questionable``..."""
    folded = text.strip().lower()
    for prefix, quality in _PREFIXES:
        if folded.startswith(prefix):
            return quality
    raise BadInputError(
        f"{where}: quality {text[:40]!r} is not good, uncertain or bad (nor a symbol of one: "
        "Good..., Uncertain..., Questionable, Bad..., Error...)"
    )


def from_opcua(code: int) -> Quality:
    """Severity in bits 31-30: 00 good, 01 uncertain, 10 bad (11 is reserved: bad).

    Ignition's signed 32-bit quality codes read the same once taken as unsigned.
    """
    severity = (code & 0xFFFFFFFF) >> 30
    return (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.BAD)[severity]


def from_opcda(code: int) -> Quality:
    """OPC DA quality byte, bits 7-6: 11 good, 01 uncertain, 00 bad (10 is unused: bad)."""
    bits = (code & 0xFF) >> 6
    return (Quality.BAD, Quality.UNCERTAIN, Quality.BAD, Quality.GOOD)[bits]


def from_percent(confidence: float) -> Quality:
    """A 0..100 confidence (Honeywell PHD): below the threshold is not used."""
    return Quality.GOOD if confidence >= PERCENT_GOOD else Quality.BAD


def from_number(value: float, encoding: Encoding | None, where: str) -> Quality:
    """A numeric quality, read in the encoding the request names."""
    if encoding is None:
        raise BadInputError(
            f"{where}: a numeric quality needs the request's quality_encoding (opcua, opcda or "
            "percent): 0 is Good in OPC UA and Bad in OPC DA"
        )
    if encoding == "percent":
        if not 0 <= value <= 100:
            raise BadInputError(f"{where}: a percent quality must be within 0..100, got {value}")
        return from_percent(value)
    if value != int(value) or value < -(2**31) or value >= 2**32:
        raise BadInputError(f"{where}: an {encoding} quality must be a 32-bit integer")
    return from_opcua(int(value)) if encoding == "opcua" else from_opcda(int(value))


def from_pi(good: bool, questionable: bool, substituted: bool = False) -> Quality:
    """PI Web API's flags: ``Good`` false is bad; a good value marked questionable, or
    substituted (replaced after it was written: a manual entry or an edit, not the reading
    the transmitter sent), is uncertain. ``Annotated`` says nothing about the value."""
    if not good:
        return Quality.BAD
    return Quality.UNCERTAIN if questionable or substituted else Quality.GOOD
