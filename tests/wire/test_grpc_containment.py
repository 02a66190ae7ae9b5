"""ctxplane's own failures never reach a gRPC client (issue 8, point 5): with a fault injected
into ctxplane's encoding, decoding, join or fold, sync and ``grpc.aio`` calls of all four
kinds return the server's answers and raise the server's errors exactly as without ctxplane.
Real servers on 127.0.0.1; the faults are injected into ctxplane's own internals."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_service import KINDS, SyncServer, aio_call, sync_call, visit

from ctxplane import _report
from ctxplane.baggage import Baggage, counters
from ctxplane.patches import asyncio_, grpc_
from ctxplane.transit import context

pytestmark = pytest.mark.timeout(60)


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected ctxplane fault")


FAULTS: dict[str, tuple[Any, str, Any]] = {
    "encode": (Baggage, "to_bytes", _broken),
    "decode": (Baggage, "from_bytes", classmethod(_broken)),
    "join": (context, "join_returned", _broken),
    "fold": (counters, "fold_component", _broken),
}


@pytest.fixture(scope="module")
def server() -> Iterator[SyncServer]:
    mods = (asyncio_, grpc_)
    was = [m.is_patched() for m in mods]
    for m in mods:
        m.patch()
    srv = SyncServer()
    try:
        yield srv
    finally:
        srv.stop()
        for m, w in zip(mods, was, strict=True):
            if not w:
                m.unpatch()


@pytest.fixture(params=sorted(FAULTS))
def fault(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    token = context._frame.set(context.Frame(Baggage.empty()))
    visit("client")  # something to send, before the fault
    _report._reported.clear()
    owner, name, value = FAULTS[request.param]
    monkeypatch.setattr(owner, name, value)
    yield request.param
    monkeypatch.undo()
    _report._reported.clear()
    context._frame.reset(token)


@pytest.mark.parametrize("kind", KINDS)
def test_sync_client_calls_are_unaffected(fault: str, kind: str, server: SyncServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        for _ in range(3):
            assert sync_call(channel, kind)
        with pytest.raises(grpc.RpcError) as err:
            sync_call(channel, kind, b"abort")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("kind", KINDS)
def test_aio_client_calls_are_unaffected(fault: str, kind: str, server: SyncServer) -> None:
    async def go() -> None:
        async with grpc.aio.insecure_channel(server.target) as channel:
            for _ in range(3):
                assert await aio_call(channel, kind)
            with pytest.raises(grpc.RpcError) as err:
                await aio_call(channel, kind, b"abort")
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    asyncio.run(go())
