"""Across real processes (fork): the child's events go to the same trace file (appended by
every process), hang from the creator's last event, and the creator's join names them.
A pool worker leaves through ``os._exit``: its events are flushed by multiprocessing's exit
finalizers."""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import ctxplane
from ctxplane.testing import Trace

pytestmark = pytest.mark.timeout(60)
FORK = multiprocessing.get_context("fork")


def read_trace(path: Path) -> Trace:
    return Trace([json.loads(line) for line in path.read_text().splitlines() if line])


@pytest.fixture
def trace_file(tmp_path: Path) -> Iterator[Path]:
    from ctxplane.tracing import api
    from ctxplane.tracing.sinks import FileSink

    path = tmp_path / "trace.jsonl"
    api.start([FileSink(str(path))], service="proc-test")
    try:
        yield path
    finally:
        api.stop()


def work(i: int) -> int:
    ctxplane.event("child", i=i)
    return os.getpid()


def check(t: Trace, n: int) -> None:
    start, end = t.span("root")
    children = t.find("child")
    assert len(children) == n
    for c in children:
        t.assert_parents(c, start)
        assert c["pid"] != start["pid"] and c["trace"] == start["trace"]
        assert c["task"] == start["trace"][16:]
    joins = t.find(type="join")
    assert {p for j in joins for p in j["parents"]} == {start["id"]} | {
        j["id"] for j in joins[:-1]
    } | {c["id"] for c in children}
    t.assert_parents(t.one("after"), joins[-1])
    assert end is not None
    t.assert_eu_sequences()


def test_process_pool_executor(trace_file: Path) -> None:
    with cf.ProcessPoolExecutor(2, mp_context=FORK) as pool, ctxplane.span("root"):
        futs = [pool.submit(work, i) for i in range(2)]
        for f in futs:
            f.result()
        ctxplane.event("after")
    from ctxplane.tracing import recorder

    recorder.flush()
    check(read_trace(trace_file), 2)


def test_multiprocessing_pool_apply(trace_file: Path) -> None:
    pool = FORK.Pool(2)
    try:
        with ctxplane.span("root"):
            pool.apply(work, (0,))
            ctxplane.event("after")
    finally:
        pool.close()
        pool.join()
    from ctxplane.tracing import recorder

    recorder.flush()
    check(read_trace(trace_file), 1)


def test_process_start_join(trace_file: Path) -> None:
    with ctxplane.span("root"):
        p = FORK.Process(target=work, args=(0,))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        ctxplane.event("after")
    from ctxplane.tracing import recorder

    recorder.flush()
    check(read_trace(trace_file), 1)
