"""A 3-service chain in 3 real processes (aiohttp A -> grpc.aio B -> sync gRPC C), each
activated through the environment as ``ctxplane-run -t PATH`` does, every process appending
to one trace file; the test process is the edge client. The DAG read back from the file has
the cross-service edges and the joins of every hop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import ctxplane
from ctxplane.cli import build_env
from ctxplane.testing import Trace

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).parent


class Chain:
    """The three services, started C first; :meth:`stop` closes their stdin (they exit
    normally, flushing their events) and checks they exited cleanly."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = build_env(os.environ, {"CTXPLANE_TRACE_FILE": str(path)})
        self.procs: list[subprocess.Popen[str]] = []
        port = None
        for role in "CBA":
            port = self._start(role, port)
        assert port is not None
        self.a_port = port

    def _start(self, role: str, downstream: int | None) -> int:
        args = [sys.executable, str(HERE / "chain_procs.py"), role]
        if downstream is not None:
            args.append(str(downstream))
        p = subprocess.Popen(
            args,
            env={**self.env, "CTXPLANE_SERVICE_NAME": f"svc-{role}"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(p)
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip().isdigit(), f"{role} did not start: {line!r}"
        return int(line)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.stdin is not None and not p.stdin.closed:
                p.stdin.close()
            p.wait(30)
        assert [p.returncode for p in self.procs] == [0] * len(self.procs)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    c = Chain(tmp_path / "chain.jsonl")
    try:
        yield c
    finally:
        for p in c.procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)


def read(path: Path) -> Trace:
    return Trace([json.loads(line) for line in path.read_text().splitlines() if line])


def test_three_process_chain(chain: Chain) -> None:
    from ctxplane.tracing import api
    from ctxplane.tracing.sinks import FileSink

    async def main() -> bytes:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s,
            s.get(f"http://127.0.0.1:{chain.a_port}/chain") as r,
        ):
            assert r.status == 200
            return await r.read()

    api.start([FileSink(str(chain.path))], service="client")
    try:
        with ctxplane.span("root"):
            assert asyncio.run(main()) == b"ABC"
    finally:
        api.stop()  # flushes this process's events
    chain.stop()  # A, B and C flush theirs at exit
    t = read(chain.path)
    assert len(t.traces()) == 1
    assert {r["service"] for r in t.records} == {"client", "svc-A", "svc-B", "svc-C"}
    assert len({r["pid"] for r in t.records}) == 4
    t.assert_eu_sequences()

    def spans(service: str, kind: str) -> list[tuple[Any, Any]]:
        return [
            (s, e) for s, e in t.spans().values()
            if s["service"] == service and s["span_kind"] == kind
        ]

    root, _ = t.span("root")
    ((client_s, client_e),) = spans("client", "client")
    ((a_s, a_e),) = spans("svc-A", "server")
    ((ab_s, ab_e),) = spans("svc-A", "client")
    ((b_s, b_e),) = spans("svc-B", "server")
    ((bc_s, bc_e),) = spans("svc-B", "client")
    ((c_s, c_e),) = spans("svc-C", "server")
    assert None not in (client_e, a_e, ab_e, b_e, bc_e, c_e)
    assert a_s["label"] == "GET /chain" and b_s["attrs"]["rpc.method"] == "Call"
    # the cross-service edges, and the structural parents
    t.assert_parents(client_s, root)
    t.assert_parents(a_s, client_s)
    t.assert_parents(t.one("A work"), a_s)
    t.assert_parents(ab_s, t.one("A work"))
    t.assert_parents(b_s, ab_s)
    t.assert_parents(t.one("B work"), b_s)
    t.assert_parents(bc_s, t.one("B work"))
    t.assert_parents(c_s, bc_s)
    t.assert_parents(t.one("C work"), c_s)
    t.assert_parents(c_e, t.one("C work"))
    for child, parent in ((a_s, client_s), (b_s, ab_s), (c_s, bc_s), (ab_s, a_s), (bc_s, b_s)):
        assert child["parent_span"] == parent["span"]
    # the joins: every response joined in the caller before it resumed
    joins = {j["service"]: j for j in t.find(type="join") if j["service"] != "client"}
    assert set(joins) == {"svc-A", "svc-B"}
    t.assert_parents(joins["svc-B"], bc_s, c_e)
    t.assert_parents(joins["svc-A"], ab_s, b_e)
    a_send = t.one(type="send")
    t.assert_parents(a_send, ab_e)
    # the client: the response joins in the task, then the task joins into asyncio.run's caller
    task_join, run_join = _client_joins(t)
    t.assert_parents(task_join, client_s, a_send)
    t.assert_parents(client_e, task_join)
    t.assert_parents(run_join, root, client_e)  # the task's last event


def _client_joins(t: Trace) -> tuple[Any, Any]:
    joins = [j for j in t.find(type="join") if j["service"] == "client"]
    assert len(joins) == 2
    first, second = sorted(joins, key=lambda j: len(t.ancestors(j)))
    return first, second
