"""Bodies of the admin endpoints: champion changes and voids, with the reason the audit trail
keeps, and the audit trail's entries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.api.schemas import DateStamp, Name, StreamId, _Body

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class PromoteRequest(_Body):
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    reason: Reason | None = Field(default=None, description="why, for the audit trail")


class RollbackRequest(_Body):
    reason: Reason | None = Field(default=None, description="why, for the audit trail")


class VoidRequest(_Body):
    """A stored lab result to void: it leaves the stream's history (the bias is recomputed
    from the remaining results) and is kept in the audit trail with who voided it and why."""

    model: Name | None = None
    stream: StreamId | None = Field(default=None, description="default: the default stream")
    sample_time: DateStamp
    reason: Reason = Field(description="why the value is wrong, for the audit trail")

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "model": "column_a",
                    "stream": "unit-1",
                    "sample_time": "2026-01-01T05:00:00Z",
                    "reason": "sample bottle mislabelled (LIMS 884213)",
                }
            ]
        },
    )


class VoidResponse(BaseModel):
    model: str
    stream: str
    sample_time: datetime
    value: float = Field(description="the voided value")
    voided_by: str = Field(description="the admin token's name")
    voided_at: datetime
    reason: str
    bias: float = Field(description="the stream's bias recomputed without it")


class AuditEvent(BaseModel):
    """One admin action: a champion change (promote, rollback) or a lab result voided."""

    time: datetime
    action: Literal["promote", "rollback", "void"]
    model: str
    actor: str = Field(description="the admin token's name (or the command line's user)")
    reason: str | None
    version: str | None = Field(default=None, description="the champion after the change")
    previous: str | None = Field(default=None, description="the champion before the change")
    stream: str | None = None
    sample_time: datetime | None = None
    value: float | None = None
