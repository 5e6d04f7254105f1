"""A sample's value and its quality, in every form historians send them, at the edge.

Historians disagree on the shape of both (see ``service.plant.quality``). What the schema
takes, beside plain numbers and symbols:

- a value that is an object: PI's digital state (``{"Name": "I/O Timeout", "Value": 246,
  "IsSystem": true}``) or PI's handled error (``{"Errors": ["..."]}``). Either is a bad value,
  read as the state's name, so it takes the path of a state sent as text;
- a quality that is an object: OPC UA's JSON StatusCode (``{"Code": 2150694912, "Symbol":
  "BadNoCommunication"}``, Part 6 5.4.2.12; a missing Code is 0, Good) or PI's flags
  (``{"Good": false, "Questionable": false, "Substituted": false}``);
- a quality that is a boolean (Kepware's ``q``): true is good, false is bad;
- a number written as text (``"95.1"``, OPC UA's JSON Int64 ``"42"``): that number.

Each is turned into text at validation (a quality into its word), so one reading follows.
An OPC UA Code is always read as OPC UA, whatever ``quality_encoding`` says: the object
names its encoding.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, StrictBool, StrictFloat, StrictInt, StringConstraints

from service.api.forms import form
from service.contracts.errors import BadInputError
from service.plant.piwebapi import pi_flags, state_text
from service.plant.quality import Quality, from_opcua, from_text

Text = Annotated[str, StringConstraints(max_length=200)]
_PI_FLAGS = frozenset({"Good", "Questionable", "Substituted", "Annotated"})
_STATUS_KEYS = frozenset({"Code", "Symbol"})


# A number written as text: OPC UA's JSON encoding writes Int64, UInt64 and Decimal so
# (Part 6, 5.4.2), and CSV-to-JSON bridges write every value so. No state name reads so.
_NUMBER_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


def _number_or_state(text: str) -> float | str:
    """A finite number written as text, as that number; any other text, a state's name
    ("I/O Timeout"; also OPC UA's "NaN" and "Infinity": bad values either way)."""
    if _NUMBER_TEXT.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
    return text


def _state_name(value: dict[str, Any]) -> str:
    """A digital state object or an error object, as the name of a bad value."""
    text = state_text(value)
    if text is not None:
        return text
    raise ValueError(
        "an object in place of a number must be a digital state with its 'Name' or an "
        "error with its 'Errors' list"
    )


def _status_word(value: dict[str, Any]) -> str:
    """An OPC UA StatusCode object or PI's flags, as the word of its quality."""
    keys = value.keys()
    if keys and keys <= _STATUS_KEYS:
        code, symbol = value.get("Code"), value.get("Symbol")
        if code is None:  # omitted when 0 (Good); the symbol alone is read by its prefix
            return _symbol_word(symbol) if isinstance(symbol, str) else "good"
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < 2**32:
            raise ValueError("Code must be an OPC UA status code, an integer in 0..2**32-1")
        return from_opcua(code).word
    if "Good" in keys and keys <= _PI_FLAGS:
        return _pi_word(value)
    raise ValueError(
        "a quality object is an OPC UA status code ({'Code': ..., 'Symbol': ...}) or PI's "
        "flags ({'Good': ..., 'Questionable': ..., 'Substituted': ...})"
    )


def _symbol_word(symbol: str) -> str:
    try:
        return from_text(symbol, "Symbol").word
    except BadInputError as exc:  # pydantic names the field of a ValueError
        raise ValueError(exc.detail) from exc


def _pi_word(flags: dict[str, Any]) -> str:
    try:
        return pi_flags(flags, "flags").word
    except BadInputError as exc:
        raise ValueError(exc.detail) from exc


def _flag_word(good: bool) -> str:
    return (Quality.GOOD if good else Quality.BAD).word


StateObject = Annotated[dict[str, Any], AfterValidator(_state_name)]
StatusObject = Annotated[dict[str, Any], AfterValidator(_status_word)]
GoodFlag = Annotated[StrictBool, AfterValidator(_flag_word)]

# A value is a number (or a number written as text), null (not available) or a bad value: a
# digital state's name ("I/O Timeout", "Shutdown", as PI sends instead of a number) or a
# state or error object.
Value = (
    Annotated[StrictFloat, form("number")]
    | Annotated[Text, AfterValidator(_number_or_state), form("state name")]
    | Annotated[StateObject, form("state object")]
    | None
)
# Per signal: a symbol ("Good", "Uncertain_LastKnownValue", "BadNoCommunication", PI's
# "Questionable"), a number in the request's quality_encoding, a status or flags object, or
# a boolean. Missing means good.
QualityValue = (
    Annotated[StrictFloat, form("quality code")]
    | Annotated[StrictInt, form("quality code")]
    | Annotated[Text, form("quality word")]
    | Annotated[StatusObject, form("status object")]
    | Annotated[GoodFlag, form("boolean")]
)
