"""ctxplane's own failures never reach the app (issue 8, point 5): with a fault injected into
ctxplane's join, fold, decoding or encoding, ``asyncio.to_thread``, ``Pool.apply``,
``Process`` start/join and ``ProcessPoolExecutor`` return the app's results and raise the app's
exceptions exactly as without ctxplane; a process whose inbound baggage cannot be decoded
still runs its target. (The faults are injected into ctxplane's own internals; what is tested
is the application's behaviour. Forked children inherit the fault.)"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Hops

from ctxplane import _report
from ctxplane.baggage import Baggage, counters
from ctxplane.transit import context

TIMEOUT = 30
pytestmark = pytest.mark.timeout(120)


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected ctxplane fault")


FAULTS: dict[str, tuple[Any, str, Any]] = {
    "join_execution": (context, "join_execution", _broken),
    "join_executions": (context, "join_executions", _broken),
    "fold": (counters, "fold_component", _broken),
    "from_bytes": (Baggage, "from_bytes", classmethod(_broken)),
    "to_bytes": (Baggage, "to_bytes", _broken),
}


@pytest.fixture(params=sorted(FAULTS))
def fault(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _report._reported.clear()
    Hops.increment("count")  # something to carry, before the fault
    owner, name, value = FAULTS[request.param]
    monkeypatch.setattr(owner, name, value)
    yield request.param
    _report._reported.clear()


class AppError(Exception):
    """The application's own exception."""


def value(x: int) -> int:
    Hops.increment("count")
    return x * 2


def fails(x: int) -> int:
    Hops.increment("count")
    raise AppError(x)


def mp() -> Any:
    return multiprocessing.get_context("fork")


def test_to_thread(fault: str) -> None:
    async def main() -> None:
        assert await asyncio.to_thread(value, 2) == 4
        with pytest.raises(AppError):
            await asyncio.to_thread(fails, 1)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, value, 3) == 6
        assert await asyncio.gather(asyncio.to_thread(value, 1), asyncio.to_thread(value, 2)) == [
            2,
            4,
        ]

    asyncio.run(main())


def test_pool_apply_and_map(fault: str) -> None:
    with mp().Pool(1) as pool:
        assert pool.apply(value, (5,)) == 10
        with pytest.raises(AppError):
            pool.apply(fails, (1,))
        assert pool.map(value, [1, 2]) == [2, 4]
        assert list(pool.imap(value, [1, 2])) == [2, 4]


def test_process_pool_executor(fault: str) -> None:
    with cf.ProcessPoolExecutor(1, mp_context=mp()) as ex:
        assert ex.submit(value, 4).result(TIMEOUT) == 8
        with pytest.raises(AppError):
            ex.submit(fails, 1).result(TIMEOUT)
        assert list(ex.map(value, [1, 2])) == [2, 4]

        async def main() -> int:
            return await asyncio.get_running_loop().run_in_executor(ex, value, 3)

        assert asyncio.run(main()) == 6


def put_value(q: Any, x: int) -> None:
    q.put(value(x))


def test_process_start_and_join(fault: str) -> None:
    q = mp().Queue()
    p = mp().Process(target=put_value, args=(q, 7))
    p.start()
    assert q.get(timeout=TIMEOUT) == 14  # the target ran
    p.join(TIMEOUT)
    p.join(TIMEOUT)
    assert p.exitcode == 0
    q.close()
