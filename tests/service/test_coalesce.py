"""Requests scored together answer exactly as they would alone (issue 5's one-row path).

``predict_many`` assembles several requests in one pass and scores them in one onnxruntime
call; a model's batcher feeds it the requests that queued while the model was scoring.
These tests hold both to the one-by-one answers and side effects, for every kind of request
a historian sends: one row without history, windows, columns, streams (also one stream twice
in a batch), nulls, out-of-range and absurd values, and requests that are refused.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from service.api.schemas import PredictRequest
from service.contracts.errors import ServiceError
from service.dataplane import SoftSensorService
from service.lab.sqlite import StoreError
from service.monitoring.metrics import ServiceMetrics
from tests.service.conftest import Published, make_settings, start_server, tiny_records

SIGNALS = ("a", "b", "q")
T0 = 1.8e9


def _service(published: Published, state: Path, **kw: object) -> SoftSensorService:
    svc = SoftSensorService(make_settings(published.root, state, **kw), ServiceMetrics())
    svc.start()
    return svc


def _same(got: Any, want: Any, where: str = "answer") -> None:
    """Equal structure and text; numbers equal up to float32 rounding (onnxruntime may sum a
    batch's products in another order than a single row's)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, float) and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6), (
            f"{where}: {got} != {want}"
        )
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _plain(answer: dict[str, Any] | ServiceError) -> Any:
    """What the client receives: the JSON of an answer, or an error's class and detail."""
    if isinstance(answer, ServiceError):
        return {"error": type(answer).__name__, "detail": answer.detail}
    return orjson.loads(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY))


# Mostly plausible readings (valid range [-100, 100]); now and then one not reported (null:
# imputed), out of range, or absurd (1e300 overflows the float32 graph: no finite estimate).
values = st.integers(0, 29).flatmap(
    lambda k: (
        st.none()
        if k == 0
        else st.sampled_from([150.0, -1e4])
        if k == 1
        else st.just(1e300)
        if k == 2
        else st.floats(-90, 90)
    )
)


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A turn's worth of predict requests, good and bad, in arrival order (times in seconds
    from the start of the example)."""
    clock = 0.0
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["lone", "window", "columns", "stream", "stream", "bad"]))
        n = 1 if kind in ("lone", "bad") else draw(st.integers(1, 4))
        rows = [{s: draw(values) for s in SIGNALS} for _ in range(n)]
        jump = draw(st.sampled_from([0.0, 0.0, 0.0, -600.0]))  # now and then: back in time
        times = [clock + jump + 60.0 * (k + 1) for k in range(n)]
        clock = max(clock, times[-1])
        body: dict[str, Any]
        if kind == "columns":
            body = {"timestamp": times, "columns": {s: [r[s] for r in rows] for s in SIGNALS}}
        else:
            body = {
                "records": [{"timestamp": t, "values": r} for t, r in zip(times, rows, strict=True)]
            }
        if kind == "stream":
            body["stream"] = draw(st.sampled_from(["unit-1", "unit-1", "unit-2"]))
        if kind == "bad":
            body["records"][0]["values"] = {"a": 1.0, "zz": 2.0}  # unknown and missing signals
        out.append(body)
    return out


@pytest.fixture(scope="module")
def twins(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two services on the same registry: one scores batches, the other one request at a time,
    and the time the next example starts at.

    Streams and drift state carry over between examples, as they would in a running service,
    so each example's times start after the last one's.
    """
    a = _service(published, tmp_path_factory.mktemp("together"))
    b = _service(published, tmp_path_factory.mktemp("alone"))
    yield a, b, [T0]
    a.stop()
    b.stop()


def _alone(svc: SoftSensorService, req: PredictRequest) -> dict[str, Any] | ServiceError:
    try:
        return svc.predict(req)
    except ServiceError as exc:
        return exc


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bodies=batches())
def test_a_batch_answers_as_its_requests_alone(twins: Any, bodies: list[dict[str, Any]]) -> None:
    together, alone, clock = twins
    start = clock[0]
    clock[0] += 1e5
    for body in bodies:
        if "timestamp" in body:
            body["timestamp"] = [start + t for t in body["timestamp"]]
        for record in body.get("records", []):
            record["timestamp"] += start
    reqs = [PredictRequest.model_validate(b) for b in bodies]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an absurd value is refused without a numpy warning
        got = together.predict_many(reqs)
        want = [_alone(alone, r) for r in reqs]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        _same(_plain(g), _plain(w), f"request {i}")
    # ... and the state a batch leaves behind is what the requests leave one by one.
    for name in ("unit-1", "unit-2", "default"):
        slot_got, slot_want = together.slot("tiny"), alone.slot("tiny")
        got_s, want_s = together.stream(slot_got, name), alone.stream(slot_want, name)
        h_got, h_want = got_s.history, want_s.history
        assert (h_got is None) == (h_want is None)
        if h_got is not None and h_want is not None:
            assert np.array_equal(h_got.times, h_want.times)
            assert np.array_equal(h_got.values, h_want.values)
        assert got_s.clock == want_s.clock
        m_got, m_want = got_s.monitors, want_s.monitors
        assert np.array_equal(m_got.changes.last_change, m_want.changes.last_change)
        assert (m_got.outside_run, m_got.frozen) == (m_want.outside_run, m_want.frozen)
        d_got, d_want = got_s.drift_monitor(), want_s.drift_monitor()
        assert d_got.rows_in_window == d_want.rows_in_window
        assert d_got.out_of_range_totals() == d_want.out_of_range_totals()
        psi_got, psi_want = d_got.feature_psi(), d_want.feature_psi()
        assert psi_got.keys() == psi_want.keys()
        assert np.allclose(list(psi_got.values()), list(psi_want.values()), equal_nan=True)
    assert _prediction_log(together) == _prediction_log(alone)
    for metric in ("softsensor_predicted_rows_total", "softsensor_imputed_values_total"):
        for sample in ("a", "b", "q", None):
            labels = {"model": "tiny"} | ({} if sample is None else {"signal": sample})
            assert together.metrics.registry.get_sample_value(
                metric, labels
            ) == alone.metrics.registry.get_sample_value(metric, labels)


def _prediction_log(svc: SoftSensorService) -> list[tuple[Any, ...]]:
    """The service's durable prediction log, every row."""
    assert svc.store is not None
    con = sqlite3.connect(svc.store.where)  # the SQLite engine: its file
    try:
        return con.execute(
            "SELECT * FROM predictions ORDER BY model, stream, sample_time"
        ).fetchall()
    finally:
        con.close()


def _lone(value: float) -> PredictRequest:
    return PredictRequest.model_validate(
        {"records": [{"values": {"a": value, "b": 1.0, "q": 2.0}}]}
    )


def test_requests_queued_in_one_turn_are_scored_in_one_call(
    published: Published, tmp_path: Path
) -> None:
    svc = _service(published, tmp_path, coalesce_requests=3)
    reqs = [_lone(float(v)) for v in range(7)]
    reqs[4] = PredictRequest.model_validate({"model": "nope", "records": [{"values": {}}]})

    async def all_at_once() -> list[dict[str, Any] | BaseException]:
        return await asyncio.gather(*(svc.batchers.score(r) for r in reqs), return_exceptions=True)

    answers = asyncio.run(all_at_once())
    reg = svc.metrics.registry
    # 7 requests, at most 3 per call: 3 + 3 + 1.
    assert reg.get_sample_value("softsensor_predict_batch_requests_count") == 3
    assert reg.get_sample_value("softsensor_predict_batch_requests_sum") == 7
    assert reg.get_sample_value("softsensor_predict_batch_requests_bucket", {"le": "2.0"}) == 1
    assert isinstance(answers[4], ServiceError) and "nope" in answers[4].detail  # its own error
    for i, answer in enumerate(answers):
        if i != 4:
            assert isinstance(answer, dict), answer
            _same(_plain(answer), _plain(svc.predict(reqs[i])), f"request {i}")
            assert answer["rows"][0]["flags"]["missing_history"] is True
    svc.stop()


def test_only_small_requests_wait_for_company(published: Published, tmp_path: Path) -> None:
    """A request over ``max_rows`` rows is scored at once, on its own; the small ones that
    arrived with it are still scored together."""
    svc = _service(published, tmp_path, coalesce_rows=2)
    records = tiny_records(published.data, 0, 12)
    sizes = [1, 2, 3, 1, 5]
    reqs, start = [], 0
    for n in sizes:
        reqs.append(PredictRequest.model_validate({"records": records[start : start + n]}))
        start += n

    async def all_at_once() -> list[dict[str, Any]]:
        return await asyncio.gather(*(svc.batchers.score(r) for r in reqs))

    answers = asyncio.run(all_at_once())
    assert [len(a["rows"]) for a in answers] == sizes
    for got, req in zip(answers, reqs, strict=True):
        _same(_plain(got), _plain(svc.predict(req)))
    reg = svc.metrics.registry
    # Calls: [3] and [5] at once, alone; then [1, 2, 1] together.
    assert reg.get_sample_value("softsensor_predict_batch_requests_count") == 3
    assert reg.get_sample_value("softsensor_predict_batch_requests_bucket", {"le": "1.0"}) == 2
    assert reg.get_sample_value("softsensor_predict_batch_requests_sum") == 5
    svc.stop()


def test_a_new_event_loop_finds_nothing_left_from_the_last(
    published: Published, tmp_path: Path
) -> None:
    """A loop that stopped with a request still queued (a server stopped mid-turn; tests
    restart apps in-process) must not leave the next loop waiting for a call that is due on
    the dead one."""
    svc = _service(published, tmp_path)
    old = asyncio.new_event_loop()
    abandoned = old.create_task(svc.batchers.score(_lone(1.0)))
    old.call_soon(old.stop)  # one pass: the request is queued, its call due two passes later
    old.run_forever()
    old.close()  # ... which never come
    assert not abandoned.done()

    async def one() -> dict[str, Any]:
        return await asyncio.wait_for(svc.batchers.score(_lone(1.0)), timeout=10)

    answer = asyncio.run(one())
    assert answer["rows"][0]["estimate"] == svc.predict(_lone(1.0))["rows"][0]["estimate"]
    svc.stop()


def test_answers_go_out_only_once_their_predictions_are_durable(
    published: Published, tmp_path: Path
) -> None:
    """A batch's answers wait for the commit of its predictions (a lab result reported
    after a kill -9 must find them). An idle writer lets the loop commit at once; while
    another connection holds the file's write lock (a lab result's transaction through its
    fsync), the loop does not wait for it: the batch goes to the writer thread and the loop
    serves on. When the commit fails, every request of the batch gets the error."""
    svc = _service(published, tmp_path)
    assert svc.log_writer is not None and svc.store is not None
    writers: list[int] = []
    for name in ("_write", "_write_now"):
        real = getattr(svc.log_writer, name)

        def watched(log: Any, real: Any = real) -> Any:
            writers.append(threading.get_ident())
            return real(log)

        setattr(svc.log_writer, name, watched)
    reqs = [_lone(float(v)) for v in range(4)]

    async def scored() -> tuple[int, list[Any]]:
        answers = await asyncio.gather(*(svc.batchers.score(r) for r in reqs))
        return threading.get_ident(), answers

    loop_thread, answers = asyncio.run(scored())
    assert writers == [loop_thread]  # idle: one commit, on the loop, no hand-over
    assert len(_prediction_log(svc)) == 4 and all(isinstance(a, dict) for a in answers)

    writers.clear()
    lab = sqlite3.connect(svc.store.where, isolation_level=None, check_same_thread=False)
    lab.execute("BEGIN IMMEDIATE")  # the write lock, held as a lab transaction holds it

    async def while_locked() -> tuple[int, list[Any]]:
        batch = asyncio.gather(*(svc.batchers.score(_lone(float(v) + 10)) for v in range(4)))
        for _ in range(20):  # the loop goes on while the batch waits for the lock
            await asyncio.sleep(0.01)
        assert not batch.done()
        lab.execute("COMMIT")  # quick: nothing was written
        return threading.get_ident(), await batch

    loop_thread, answers = asyncio.run(while_locked())
    lab.close()
    assert writers[0] == loop_thread and loop_thread not in writers[1:] and len(writers) == 2
    assert len(_prediction_log(svc)) == 8 and all(isinstance(a, dict) for a in answers)

    def broken(log: Any) -> None:
        raise StoreError(tmp_path, "disk full")

    svc.log_writer._write = broken
    svc.log_writer._write_now = broken  # type: ignore[assignment]

    async def refused() -> list[Any]:
        coros = (svc.batchers.score(r) for r in reqs)
        return list(await asyncio.gather(*coros, return_exceptions=True))

    results = asyncio.run(refused())
    assert all(isinstance(r, StoreError) for r in results), results
    svc.stop()


@pytest.mark.slow
def test_a_real_server_coalesces_concurrent_clients(published: Published, tmp_path: Path) -> None:
    """64 clients at once against `softsensor serve`: every answer is its own request's."""
    server = start_server(published.root, tmp_path / "state", tmp_path / "server.log")
    try:
        server.wait_until("/v2/health/ready")
        bodies = [
            {"records": [{"values": {"a": float(v) - 32.0, "b": 1.0, "q": 2.0}}]} for v in range(64)
        ]

        async def hammer() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=server.url, limits=limits) as client:
                return await asyncio.gather(*(client.post("/v1/predict", json=b) for b in bodies))

        together = asyncio.run(hammer())
        one_by_one = [httpx.post(server.url + "/v1/predict", json=b) for b in bodies]
        for got, want in zip(together, one_by_one, strict=True):
            assert got.status_code == want.status_code == 200
            _same(got.json()["rows"][0]["estimate"], want.json()["rows"][0]["estimate"])
        text = httpx.get(server.url + "/metrics").text
        sizes = {
            s.name: s.value
            for f in text_string_to_metric_families(text)
            if f.name == "softsensor_predict_batch_requests"
            for s in f.samples
            if s.name.endswith(("_sum", "_count"))
        }
        assert sizes["softsensor_predict_batch_requests_sum"] == 128  # every request, once
        # a lone request is scored at once, so only the concurrent ones can share a call:
        # they did (the server saw the others in flight), and the 64 lone ones did not
        assert 64 < sizes["softsensor_predict_batch_requests_count"] < 128
    finally:
        server.stop()
