"""The gRPC patch is a package by role, each file readable on a screen or two (issue 8,
point 13), and ``ctxplane.patches.grpc_`` keeps the names code outside the package uses."""

from __future__ import annotations

from pathlib import Path

import ctxplane.patches.grpc_ as grpc_

MAX_LINES = 400  # a screen or two
ROLES = {"__init__", "_common", "_kinds", "client", "aio_client", "server", "aio_server",
         "interceptors"}


def test_grpc_patch_is_a_package_of_short_files() -> None:
    root = Path(grpc_.__file__).parent
    assert root.name == "grpc_" and Path(grpc_.__file__).name == "__init__.py"
    files = {p.stem: p for p in root.glob("*.py")}
    assert set(files) >= ROLES  # more files may come, by role
    long = {name: n for name, p in files.items() if (n := len(p.read_text().splitlines()))
            > MAX_LINES}
    assert not long, long


def test_grpc_patch_keeps_its_names() -> None:
    for name in ("patch", "unpatch", "is_patched", "wrap_channel", "ServerInterceptor",
                 "AioServerInterceptor"):
        assert callable(getattr(grpc_, name)), name
    assert set(grpc_.__all__) >= {"patch", "unpatch", "is_patched", "wrap_channel"}
    # private names the tests reach through the module's name
    for name in ("_Channel", "_JoiningStream", "_ServerStream", "_AioUnaryStreamCall",
                 "_AioStreamStreamCall", "_AioStreamIterator"):
        assert isinstance(getattr(grpc_, name), type), name
    # one table of call kinds serves sync and aio channels alike
    from ctxplane.patches.grpc_ import _kinds, aio_client, client

    names = [k.name for k in _kinds.KINDS]
    assert names == ["unary_unary", "unary_stream", "stream_unary", "stream_stream"]
    for kind in names:
        assert getattr(client._Channel, kind).__name__ == kind
        assert getattr(aio_client._AioChannel, kind).__name__ == kind
