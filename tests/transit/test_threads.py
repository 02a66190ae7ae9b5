"""Branch and join across threads, timers and executors (threads and processes)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

from conftest import state, visit


def test_thread_start_branches_and_join_joins() -> None:
    visit("parent")
    starts: list[Any] = []
    t = threading.Thread(target=lambda: (starts.append(state()), visit("t")))
    t.start()
    t.join(timeout=10)
    assert starts == [(1, frozenset({"parent"}))]
    assert state() == (2, frozenset({"parent", "t"}))


def test_thread_subclass_overriding_run_gets_the_branch() -> None:
    visit("parent")
    starts: list[Any] = []

    class Worker(threading.Thread):
        def run(self) -> None:
            starts.append(state())
            visit("sub")

    w = Worker()
    w.start()
    w.join(timeout=10)
    assert starts == [(1, frozenset({"parent"}))]
    assert state() == (2, frozenset({"parent", "sub"}))


def test_timer() -> None:
    t = threading.Timer(0.001, visit, args=("timer",))
    t.start()
    t.join(timeout=10)
    assert state() == (1, frozenset({"timer"}))


def test_thread_join_timeout_on_live_thread_joins_nothing() -> None:
    release = threading.Event()

    def work() -> None:
        visit("late")
        release.wait(10)

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=0.01)
    assert state() == (0, frozenset())
    release.set()
    t.join(timeout=10)
    assert state() == (1, frozenset({"late"}))


def test_thread_pool_submit_map_result() -> None:
    visit("parent")
    with cf.ThreadPoolExecutor(2) as ex:
        seen = ex.submit(lambda: (visit("s"), state())[1]).result()
        assert seen == (2, frozenset({"parent", "s"}))
        list(ex.map(lambda n: visit(n), ["m1", "m2"]))
    assert state() == (4, frozenset({"parent", "s", "m1", "m2"}))


def test_failed_future_still_joins() -> None:
    def fail() -> None:
        visit("failed")
        raise RuntimeError("boom")

    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(fail)
        assert isinstance(fut.exception(), RuntimeError)
    assert state() == (1, frozenset({"failed"}))


def _in_process(name: str) -> tuple[int, frozenset[str]]:
    before = state()
    visit(name)
    return before


def test_process_pool_carries_baggage_both_ways() -> None:
    visit("parent")
    with cf.ProcessPoolExecutor(1) as ex:
        seen_by_child = ex.submit(_in_process, "proc").result(timeout=60)
    assert seen_by_child == (1, frozenset({"parent"}))
    assert state() == (2, frozenset({"parent", "proc"}))


def test_concurrent_process_pool_tasks_on_one_worker_count_exactly() -> None:
    with cf.ProcessPoolExecutor(1) as ex:
        futs = [ex.submit(_in_process, f"p{i}") for i in range(6)]
        for f in futs:
            f.result(timeout=60)
    assert state() == (6, frozenset(f"p{i}" for i in range(6)))
