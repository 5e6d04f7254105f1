"""The prediction log's writer thread: batches answered before its upkeep (the checkpoint)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from service.lab.groupcommit import GroupCommit


def test_a_batch_is_answered_before_the_writer_thread_does_its_upkeep() -> None:
    """Nobody waits for the WAL checkpoint: the group's futures are done when it starts."""
    written: list[Any] = []
    seen: list[bool] = []
    futures: list[Any] = []
    submitted, upkept = threading.Event(), threading.Event()

    def write(rows: list[Any]) -> None:
        assert submitted.wait(timeout=10)  # the future is in the list before it is written
        written.extend(rows)

    def upkeep() -> None:
        seen.append(futures[0].done())
        upkept.set()

    writer = GroupCommit(write, "test-writer", after=upkeep)
    try:
        futures.append(writer.submit(["row"]))
        submitted.set()
        futures[0].result(timeout=10)
        assert upkept.wait(timeout=10)
        assert seen == [True] and written == ["row"]
    finally:
        writer.close()


def test_a_failing_upkeep_leaves_the_writer_running(caplog: pytest.LogCaptureFixture) -> None:
    written: list[Any] = []

    def upkeep() -> None:
        raise OSError("disk full")

    writer = GroupCommit(written.extend, "test-writer", after=upkeep)
    try:
        writer.submit([1]).result(timeout=10)
        writer.submit([2]).result(timeout=10)  # the thread lived through the failure
        assert written == [1, 2]
    finally:
        writer.close()
    assert "upkeep after a write failed" in caplog.text
