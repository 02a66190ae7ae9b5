"""Malformed bytes: the explicit API raises, transports drop and count (issue 8, point 12).

``ctxplane.deserialize`` is called by the application on bytes it chose to trust: malformed
ones raise :class:`ctxplane.BaggageError` and leave the active baggage alone. The same bytes
from a peer (gRPC metadata on a real server on 127.0.0.1) are dropped with a counted
rejection and the request is served with the baggage it had.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import wire_fixtures
from grpc_service import SyncServer, sync_call

import ctxplane
from ctxplane.baggage import Baggage
from ctxplane.patches import grpc_
from ctxplane.transit import context
from ctxplane.wire import limits
from ctxplane.wire.grpc import DEFAULT_METADATA_KEY, decode_metadata
from ctxplane.wire.http import decode_header

pytestmark = pytest.mark.timeout(60)

GARBAGE = [
    b"\xff\xff\x00garbage",  # an atom length far past the end
    b"\x05abc",  # a truncated atom
    b"\x03\x05ab",  # well framed, but no baggage atom starts with 0x05
]


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    yield from wire_fixtures.fresh_state()


@pytest.mark.parametrize("data", GARBAGE)
def test_explicit_deserialize_raises_on_malformed_bytes(data: bytes) -> None:
    before = Baggage.from_bytes(bytes.fromhex("02f801") + b"\x02\x00\x07")
    context.set_current(before)
    with pytest.raises(ctxplane.BaggageError):
        ctxplane.deserialize(data)
    assert context.current() is before  # nothing joined
    assert limits.rejections() == {}  # the app's call, not a peer's: nothing counted
    assert ctxplane.deserialize(before.to_bytes()) == before  # well-formed bytes still join


@pytest.mark.parametrize("data", GARBAGE)
def test_the_same_bytes_on_the_wire_are_dropped_and_counted(data: bytes) -> None:
    import base64

    assert decode_metadata(data) is None
    assert decode_header(base64.urlsafe_b64encode(data).decode().rstrip("=")) is None
    assert limits.rejections() == {"malformed": 2}


@pytest.fixture(scope="module")
def patched() -> Iterator[None]:
    yield from wire_fixtures.patched(grpc_)


@pytest.fixture(scope="module")
def server(patched: None) -> Iterator[SyncServer]:
    s = SyncServer()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("data", GARBAGE)
def test_a_grpc_server_serves_a_call_carrying_malformed_baggage(
    data: bytes, server: SyncServer
) -> None:
    with grpc.insecure_channel(server.target) as channel:
        got = sync_call(channel, "UU", b"peek", metadata=((DEFAULT_METADATA_KEY, data),))
    assert got == [b""]  # the handler started with no baggage
    assert limits.rejections() == {"malformed": 1}
