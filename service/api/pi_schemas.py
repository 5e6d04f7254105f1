"""The PI Web API bodies predict takes and gives, as the OpenAPI schema shows them.

These models document the shapes (PI Web API reference: streamset GetRecordedAdHoc and
UpdateValuesAdHoc); the body itself is read by ``service.plant.piwebapi``, which names a bad
field by its place in PI's shape (``Items[2].Items[0].Timestamp``). A test validates the
golden bodies against these models, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, RootModel


class PiTimedValue(BaseModel):
    """One value as PI gives it; ``Value`` is a number when ``Good``, else often a digital
    state (``{"Name": "I/O Timeout", "Value": 246, "IsSystem": true}``) or ``Errors``."""

    model_config = ConfigDict(extra="allow")

    Timestamp: str = Field(description="ISO 8601 with a time zone (PI sends UTC, Z)")
    Value: JsonValue = None
    Good: bool = Field(default=True, description="false: bad, the value is not used")
    Questionable: bool = Field(default=False, description="true: uncertain")
    Substituted: bool = Field(
        default=False, description="true: uncertain (replaced after it was written)"
    )
    Annotated: bool = False
    UnitsAbbreviation: str | None = None
    Errors: list[str] | None = Field(default=None, description="a handled error: bad")


class PiStream(BaseModel):
    """One stream of a streamset read: found in the tag map by WebId, Path or Name."""

    model_config = ConfigDict(extra="allow")

    WebId: str | None = None
    Name: str | None = None
    Path: str | None = None
    UnitsAbbreviation: str | None = None
    Items: list[PiTimedValue] | None = Field(
        default=None, description="recorded, interpolated, plot values"
    )
    Value: PiTimedValue | None = Field(
        default=None, description="the one value of streamsets/value"
    )
    WebException: dict[str, Any] | None = Field(
        default=None, description="refused, with its message"
    )


def _reading(point: str, value: Any, **flags: Any) -> dict[str, Any]:
    item = {"Timestamp": "2026-01-01T05:01:00Z", "Good": True, "Questionable": False}
    item |= {"Substituted": False, "Annotated": False, "Value": value} | flags
    return {"Name": point, "Path": f"\\\\PISRV01\\{point}", "Items": [item]}


# What a poller gets from GET streamsets/recorded for the twelve points of the shipped tag map
# (deploy/tagmaps/column_a.yaml) one minute after the records example: one transmitter in a
# digital state, another one questionable.
_POINTS = {
    "T03": "COLA.TI103", "T08": "COLA.TI108", "T13": "COLA.TI113", "T21": "COLA.TI121",
    "T28": "COLA.TI128", "T34": "COLA.TI134", "T39": "COLA.TI139", "F": "COLA.FI101",
    "L": "COLA.FC102", "V": "COLA.FC103", "D": "COLA.FC104", "B": "COLA.FC105",
}  # fmt: skip
_VALUES = {
    "T03": 82.13, "T08": 81.44, "T13": 79.75, "T21": 76.18, "T28": 73.12, "T34": 70.2,
    "T39": 69.3, "F": 0.99, "L": 2.51, "V": 3.006, "D": 0.4819, "B": 0.4918,
}  # fmt: skip
_STREAMSET_EXAMPLE: dict[str, Any] = {
    "Items": [
        _reading(p, {"Name": "I/O Timeout", "Value": 246, "IsSystem": True}, Good=False)
        if s == "T21"
        else _reading(p, _VALUES[s], Questionable=s == "T34")
        for s, p in _POINTS.items()
    ],
    "Links": {},
}


class PiStreamset(BaseModel):
    """The body of a PI Web API streamset read, posted unchanged with ``?format=piwebapi``
    (or the bare list of its streams)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [_STREAMSET_EXAMPLE]})

    Items: list[PiStream]
    Links: dict[str, Any] | None = None
    WebException: dict[str, Any] | None = None


class PiWriteValue(BaseModel):
    Timestamp: str = Field(description="the row's time, ISO 8601 UTC")
    Value: float
    UnitsAbbreviation: str = Field(description="the target's unit (model card)")
    Good: bool = Field(description="false when the row's status is bad")
    Questionable: bool = Field(description="true when the row's status is uncertain")


class PiWriteStream(BaseModel):
    WebId: str = Field(description="the output point of the tag map")
    Items: list[PiWriteValue]


class PiRecordedWrite(RootModel[list[PiWriteStream]]):
    """The answer with ``?answer=piwebapi``: the body of PI Web API's ``POST
    streamsets/recorded``, one stream per output point of the tag map (estimate, corrected
    estimate, interval bounds), to be posted to PI unchanged."""
