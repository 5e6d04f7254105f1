"""Predict requests that arrive together are scored together.

Under load, the event loop reads several requests from different connections before it
runs any of them. Scoring them one by one pays onnxruntime's fixed cost per call and
numpy's per call overhead once per request, for a single row each. The coalescer queues
the requests read in one pass of the loop and scores them in the next, in one call to
``SoftSensorService.predict_many``, which answers each request exactly as it would have
been answered alone.

Unlike Triton's dynamic batcher or MLServer's adaptive batching, it never waits for more
requests: a request alone is scored at the next turn of the loop, so a quiet service
answers as fast as before, and a busy one gets batches the size of its backlog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Histogram

from service.errors import ServiceError
from service.schemas import PredictRequest

ScoreMany = Callable[[Sequence[PredictRequest]], list[dict[str, Any] | ServiceError]]


class PredictCoalescer:
    """Queues predict requests and scores each turn's queue in one call.

    Belongs to one event loop (the server's). A call takes at most ``max_requests``
    requests and, beyond the first, no more than ``max_rows`` rows in all: every request
    of a call waits for the whole call, so only requests that are cheap alone are worth
    gathering (for a hundred rows, the fixed cost of a call is already small).
    """

    def __init__(
        self, score_many: ScoreMany, max_requests: int, max_rows: int, sizes: Histogram
    ) -> None:
        self._score_many = score_many
        self.max_requests = max_requests
        self.max_rows = max_rows
        self._sizes = sizes
        self._queue: list[tuple[PredictRequest, asyncio.Future[dict[str, Any]]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop a flush is due on

    async def score(self, req: PredictRequest) -> dict[str, Any]:
        """The answer to ``req``, scored with whatever else arrived in the same turn."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # nothing due, or due on a loop that has gone (tests)
            for _, stale in self._queue:
                stale.cancel()
            self._queue.clear()
            self._loop = loop
            loop.call_soon(self._flush)
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._queue.append((req, answer))
        return await answer

    def _flush(self) -> None:
        take = rows = 0
        for req, _ in self._queue[: self.max_requests]:
            rows += req.rows
            if take and rows > self.max_rows:
                break
            take += 1
        batch = self._queue[:take]
        del self._queue[:take]
        if self._queue:  # the rest at the next turn, after the replies to this batch
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._loop = None
        self._sizes.observe(len(batch))
        try:
            results: Sequence[dict[str, Any] | BaseException] = self._score_many(
                [req for req, _ in batch]
            )
        except Exception as exc:  # an unexpected failure: every request of the batch sees it
            results = [exc] * len(batch)
        for (_, answer), result in zip(batch, results, strict=True):
            if answer.cancelled():  # the client went away
                continue
            if isinstance(result, BaseException):
                answer.set_exception(result)
            else:
                answer.set_result(result)
