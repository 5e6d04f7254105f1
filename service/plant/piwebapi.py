"""PI Web API bodies in and out, so a PI connector posts what it reads and writes what it gets.

In: the body of a streamset read (``GET streamsets/recorded|interpolated|end|value``):
``{"Items": [{"WebId", "Name", "Path", "Items": [PITimedValue, ...]}]}``, the one-value form
``{"Items": [{..., "Value": PITimedValue}]}``, or the bare array of the write shape. Each
stream is mapped to a signal by the tag map. A value whose ``Good`` is false is bad and is
not used as a number (PI sends a digital state such as ``{"Name": "I/O Timeout"}`` or an
``Errors`` list there); a good value marked ``Questionable`` or ``Substituted`` is uncertain.

Recorded values are not aligned across streams: the rows are the times any stream has a
value, from the first time every signal has one, each signal read as of that time (its
latest value at or before it, PI's "previous" alignment). A value older than the tag map's
``max_age_s`` at a row's time is stale: uncertain.

Out: the body of ``POST streamsets/recorded`` (UpdateValuesAdHoc), one stream per output tag,
with ``Good``/``Questionable`` from each row's status.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from service.contracts.errors import BadInputError
from service.plant.quality import Quality, from_pi
from service.plant.tagmap import OutputValue, TagMap

_WHEN: TypeAdapter[datetime] = TypeAdapter(datetime)


@dataclass
class PiPoint:
    """One PITimedValue, read."""

    time: datetime
    value: float | None
    quality: Quality
    text: str | None = None  # the digital state or error, for the row's reasons


@dataclass
class HistorianRows:
    """Aligned rows from a historian body: per signal, one value and quality per row."""

    times: list[datetime]
    values: dict[str, list[float | None]]
    quality: dict[str, list[Quality]]
    notes: dict[str, list[str | None]] = field(default_factory=dict)


def _time(raw: object, where: str) -> datetime:
    if not isinstance(raw, str):
        raise BadInputError(f"{where}.Timestamp: an ISO 8601 time is required")
    try:
        when = _WHEN.validate_python(raw)  # 7 fractional digits (.NET ticks) are truncated
    except ValidationError as exc:
        raise BadInputError(f"{where}.Timestamp: not a time: {raw[:40]!r}") from exc
    if when.tzinfo is None:
        raise BadInputError(
            f"{where}.Timestamp: {raw[:40]!r} has no time zone (PI sends UTC with Z)"
        )
    try:
        return when.astimezone(UTC)
    except OverflowError as exc:  # year 1 or 9999 with an offset
        raise BadInputError(f"{where}.Timestamp: {raw[:40]!r} is out of range") from exc


def state_text(value: Mapping[str, Any]) -> str | None:
    """The text of a digital state object (its ``Name``) or of a handled error (its
    ``Errors`` joined); None for any other object."""
    name = value.get("Name")
    if isinstance(name, str) and name.strip():
        return name[:80]
    errors = value.get("Errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)[:200]
    return None


def pi_flags(item: Mapping[str, Any], where: str) -> Quality:
    """A value's quality from PI's flags (a missing flag: Good true, the others false)."""
    good = item.get("Good", True)
    questionable = item.get("Questionable", False)
    substituted = item.get("Substituted", False)
    if not all(isinstance(flag, bool) for flag in (good, questionable, substituted)):
        raise BadInputError(f"{where}: Good, Questionable and Substituted must be true or false")
    return from_pi(good, questionable, substituted)


def _bad_text(value: object) -> str:
    """What PI put where a bad value's number would be: a digital state, errors, text."""
    text = state_text(value) if isinstance(value, Mapping) else None
    if text is not None:
        return text
    return "bad value" if value is None else str(value)[:80]


def read_point(item: object, where: str) -> PiPoint:
    """One PITimedValue; a number with ``Good`` true, or anything with ``Good`` false."""
    if not isinstance(item, Mapping):
        raise BadInputError(f"{where}: a PI value object is required")
    when = _time(item.get("Timestamp"), where)
    quality = pi_flags(item, where)
    value = item.get("Value")
    if "Errors" in item:  # a handled error in the transfer: no value at all
        quality, value = Quality.BAD, {"Errors": item["Errors"]}
    if quality is Quality.BAD:
        return PiPoint(when, None, Quality.BAD, _bad_text(value))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInputError(
            f"{where}.Value: a good value of a numeric signal must be a number, got "
            f"{_bad_text(value)!r} (a digital or string tag mapped to a measurement?)"
        )
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise BadInputError(f"{where}.Value: not a finite number")
    return PiPoint(when, number, quality)


def _streams(body: object) -> list[Mapping[str, Any]]:
    if isinstance(body, Mapping):
        if body.get("WebException"):
            raise BadInputError(f"WebException: {_bad_text(body['WebException'])}")
        items = body.get("Items")
    else:
        items = body
    if not isinstance(items, list) or not all(isinstance(s, Mapping) for s in items):
        raise BadInputError("Items: a list of PI streams is required")
    return items


def _key(stream: Mapping[str, Any], key: str, where: str) -> str | None:
    value = stream.get(key)
    if value is not None and not isinstance(value, str):
        raise BadInputError(f"{where}.{key}: text is required")
    return value


def read_streamset(body: object, tags: TagMap, required: Sequence[str]) -> HistorianRows:
    """The aligned rows of a streamset body, for the model's ``required`` signals."""
    points: dict[str, list[PiPoint]] = {}
    for i, stream in enumerate(_streams(body)):
        where = f"Items[{i}]"
        web_id, path, point = (_key(stream, k, where) for k in ("WebId", "Path", "Name"))
        name = point or path or web_id
        signal = tags.signal_of_pi(web_id, path, point)
        if signal is None:
            of = "" if tags.model is None else f" of model {tags.model!r}"
            raise BadInputError(
                f"{where}: stream {str(name)[:80]!r} is not in the tag map{of} (matched by "
                "WebId, Path or Name)"
            )
        if stream.get("WebException"):
            raise BadInputError(f"{where}.WebException: {_bad_text(stream['WebException'])}")
        raw = stream.get("Items", [stream["Value"]] if "Value" in stream else None)
        if not isinstance(raw, list):
            raise BadInputError(f"{where}.Items: a list of PI values is required")
        read = [read_point(item, f"{where}.Items[{j}]") for j, item in enumerate(raw)]
        points.setdefault(signal, []).extend(read)
    missing = [s for s in required if not points.get(s)]
    if missing:
        raise BadInputError(f"Items: no values for signals {missing} of the model")
    return align(points, tags.max_age_s)


def align(points: dict[str, list[PiPoint]], max_age_s: float | None) -> HistorianRows:
    """Rows at every time a stream has a value, from the first time all have one; each
    signal as of the row's time, stale (uncertain) when older than ``max_age_s``."""
    for series in points.values():
        series.sort(key=lambda p: p.time)
    start = max(series[0].time for series in points.values())
    times = sorted({p.time for series in points.values() for p in series if p.time >= start})
    rows = HistorianRows(times, {}, {}, {})
    for signal, series in points.items():
        stamps = [p.time for p in series]
        values, qualities, notes = [], [], []
        for t in times:
            p = series[bisect.bisect_right(stamps, t) - 1]
            quality, note = p.quality, p.text
            age = (t - p.time).total_seconds()
            if max_age_s is not None and age > max_age_s and quality is not Quality.BAD:
                quality, note = max(quality, Quality.UNCERTAIN), f"stale: {age:.0f} s old"
            values.append(p.value)
            qualities.append(quality)
            notes.append(note)
        rows.values[signal], rows.quality[signal], rows.notes[signal] = values, qualities, notes
    return rows


def write_body(
    tags: TagMap,
    times: Sequence[datetime | float | str | None],
    outputs: Mapping[OutputValue, Sequence[float]],
    status: Sequence[Quality],
    unit: str,
) -> list[dict[str, Any]]:
    """The UpdateValuesAdHoc array for the tag map's output tags (those with a WebId);
    empty when there are no rows (an overlapping read that brought nothing new)."""
    stamps = [_stamp(t) for t in times]
    if not stamps:
        return []
    body = []
    for tag in tags.outputs:
        if tag.web_id is None or tag.value not in outputs:
            continue
        items = [
            {
                "Timestamp": stamp,
                "Value": float(value),
                "UnitsAbbreviation": unit,
                "Good": quality is not Quality.BAD,
                "Questionable": quality is Quality.UNCERTAIN,
            }
            for stamp, value, quality in zip(stamps, outputs[tag.value], status, strict=True)
        ]
        body.append({"WebId": tag.web_id, "Items": items})
    return body


def _stamp(t: datetime | float | str | None) -> str:
    if t is None:
        raise BadInputError("timestamp: PI needs a time for every value written back")
    if isinstance(t, str):
        return t
    when = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
