"""PI Web API shapes on ``POST /v1/predict``, chosen by query parameters.

``?format=piwebapi``: the body is a PI Web API streamset read, posted as PI answered it
(``GET streamsets/recorded|interpolated|end|value``). The model's tag map (``?model=``,
default: the service's default model; ``?stream=`` picks the map and names the stream) maps
its streams to signals; the aligned rows become ordinary records, each value with its quality
(``Good`` false: bad; ``Questionable`` or ``Substituted``: uncertain), and go through the one
predict path like any request.

``?answer=piwebapi``: the answer is the body of PI's ``POST streamsets/recorded``
(UpdateValuesAdHoc), one stream per output point of the tag map, so a connector writes it
back to PI unchanged. It goes with either input shape.

Query parameters, not the body's look or an ``Accept`` header, choose the shapes: a poller's
URL field is the one thing every integration tool lets a user set, and the answer to an
ambiguous body would otherwise depend on a guess. Everything refusable is refused before a
row is scored, so a refused request leaves the stream as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from service.api.schemas import Name, PredictRequest, StreamId
from service.contracts.errors import BadInputError
from service.dataplane import SoftSensorService
from service.plant.piwebapi import HistorianRows, read_streamset, write_body
from service.plant.quality import Quality
from service.plant.tagmap import OutputValue
from service.plant.tagmaps import ServedTagMap
from service.scoring.answers import SERVED, served_columns
from service.scoring.parsing import check_rows

PI = "piwebapi"
Answer = Callable[[dict[str, Any]], Any]


class PredictQuery(BaseModel):
    """The query parameters of predict; none of them is needed for the service's own shapes."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["piwebapi"] | None = None
    answer: Literal["piwebapi"] | None = None
    model: Name | None = None
    stream: StreamId | None = None


def read_query(query: Mapping[str, str]) -> PredictQuery:
    """The checked query (pydantic's error names a bad or unknown parameter)."""
    shape = PredictQuery.model_validate(dict(query))
    if shape.format is None and (shape.model or shape.stream):
        which = "model" if shape.model else "stream"
        raise BadInputError(
            f"{which}: as a query parameter only with format=piwebapi; a records or columns "
            "body names it itself"
        )
    return shape


def read_shaped(
    service: SoftSensorService, body: bytes, shape: PredictQuery, read_own: Callable[[], Any]
) -> tuple[PredictRequest, Answer | None]:
    """The request to score, and what turns its answer into the shape asked for."""
    served = None
    if shape.format == PI:
        req, served = _read_streamset(service, body, shape)
    else:
        req = read_own()
    if shape.answer != PI:
        return req, None
    if served is None:
        served = service.tag_maps.find(req.model or service.default_name(), req.stream)
    _check_answerable(req, served)
    return req, functools.partial(recorded_write, served)


def _read_streamset(
    service: SoftSensorService, body: bytes, shape: PredictQuery
) -> tuple[PredictRequest, ServedTagMap]:
    name = shape.model or service.default_name()
    model = service.slot(name).model
    served = service.tag_maps.find(name, shape.stream)
    served.check_signals(model.raw_signals, model.known_signals)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInputError(f"body: not JSON: {exc}") from exc
    rows = read_streamset(doc, served.tags, model.raw_signals)
    check_rows(len(rows.times), service.settings.max_batch_rows)
    stream = shape.stream or served.tags.stream
    request = {"model": name, "stream": stream, "records": as_records(rows), "overlap": "skip"}
    return PredictRequest.model_validate(request), served


def as_records(rows: HistorianRows) -> list[dict[str, Any]]:
    """The aligned rows as predict records: a bad value as null, qualities by word."""
    records = []
    for i, when in enumerate(rows.times):
        values = {s: column[i] for s, column in rows.values.items()}
        quality = {s: q[i].word for s, q in rows.quality.items() if q[i] is not Quality.GOOD}
        record: dict[str, Any] = {"timestamp": when, "values": values}
        if quality:
            record["quality"] = quality
        records.append(record)
    return records


def _check_answerable(req: PredictRequest, served: ServedTagMap) -> None:
    """PI needs a point to write to and a time for every value: refused before scoring."""
    if not any(tag.web_id for tag in served.tags.outputs):
        raise BadInputError(
            f"answer: the tag map {served.path.name} of model {served.model!r} has no outputs "
            "with a web_id to write to"
        )
    stamps = [r.timestamp for r in req.records] if req.records is not None else req.timestamp
    if stamps is None or any(t is None for t in stamps):
        raise BadInputError("timestamp: answer=piwebapi needs the time of every row")


def recorded_write(served: ServedTagMap, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The UpdateValuesAdHoc body of an answer (records or columns)."""
    columns = served_columns(payload)
    outputs: dict[OutputValue, Any] = {f: columns[f] for f in SERVED}
    status = [Quality[w.upper()] for w in columns["status"]]
    return write_body(served.tags, columns["timestamp"], outputs, status, payload["unit"])
