"""ctxplane's own failures never fail the application: a branch or join that raises is logged
(once as a warning) and the task, thread or future behaves exactly as without ctxplane."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import state, visit

from ctxplane import _report
from ctxplane.transit import context


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected ctxplane fault")


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    _report._reported.clear()
    yield monkeypatch
    _report._reported.clear()


def test_failing_task_join_keeps_results_and_exceptions(
    faults: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    faults.setattr(context, "_claim", _broken)  # every join of a child that changed something

    async def value() -> int:
        visit("child")
        return 7

    async def boom() -> None:
        raise ValueError("app error")

    async def main() -> None:
        assert await asyncio.create_task(value()) == 7
        assert await asyncio.gather(value(), value()) == [7, 7]
        with pytest.raises(ValueError, match="app error"):
            await asyncio.create_task(boom())

    with caplog.at_level(logging.DEBUG, logger="ctxplane.patches"):
        asyncio.run(main())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert {r.getMessage() for r in warnings} == {
        "ctxplane asyncio task join failed; the application goes on",
        "ctxplane asyncio batch join failed; the application goes on",
    }


def test_failing_branch_falls_back_to_plain_tasks(
    faults: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    faults.setattr(context, "_running_loop", _broken)  # every branch now raises inside

    async def value() -> int:
        return 3

    async def main() -> None:
        assert await asyncio.create_task(value()) == 3
        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(value())
        assert t.result() == 3

    with caplog.at_level(logging.WARNING, logger="ctxplane.patches"):
        asyncio.run(main())
    assert "ctxplane asyncio branch failed; the application goes on" in caplog.messages


def test_failing_thread_and_future_joins_keep_the_app_going(
    faults: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    faults.setattr(context, "join_context", _broken)
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(1))
    t.start()
    t.join(timeout=10)
    with cf.ThreadPoolExecutor(1) as ex:
        assert ex.submit(lambda: 5).result(timeout=10) == 5
    assert got == [1]
    assert state() == (0, frozenset())
    assert "ctxplane thread join failed; the application goes on" in caplog.messages
    assert "ctxplane future join failed; the application goes on" in caplog.messages
