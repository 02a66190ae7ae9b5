"""Branch at ``Process.start`` / ``Pool.apply_async`` / ``Pool.map`` and join at
``Process.join`` / ``AsyncResult.get``, across real processes.

Only ctxplane's own bytes cross the process boundary as baggage: the sender calls
:meth:`~ctxplane.baggage.Baggage.to_bytes`, the receiver
:meth:`~ctxplane.baggage.Baggage.from_bytes`; nothing received is unpickled *as baggage*.

**Process.** ``BaseProcess.start`` records, on the process object, a :class:`_Carrier`
holding the parent's serialized baggage and the write end of a one-way
``multiprocessing.Pipe(duplex=False)`` (the read end stays in the parent: it is not part of
the carrier's pickled state). The carrier travels with the process object: pickled with it
for ``spawn`` / ``forkserver`` (the pipe's write end is duplicated into the child by
multiprocessing's own connection reduction), copied by ``fork``. The parent closes its copy
of the write end right after ``start``. In the child, the wrapped ``BaseProcess._bootstrap``
runs the whole bootstrap - hence ``run()``, also when a subclass overrides it - with that
baggage active in a fresh execution (its own counter component), and in a ``finally`` sends
the final baggage bytes back with ``Connection.send_bytes`` (nothing if unchanged; trimmed
to :data:`_PIPE_LIMIT` so that the write never blocks on a full pipe before the parent
reads). ``join()``, once the process has exited, reads those bytes without blocking
(``poll``), closes the read end and joins them into the caller; a later ``join()`` joins the
same bytes again, which changes nothing.

*Spawned children patch themselves*: a ``spawn`` / ``forkserver`` child is a fresh
interpreter where ctxplane may not be active, so ``_bootstrap`` would not be wrapped.
Unpickling the carrier (which happens while the process object is unpickled, before
``_bootstrap`` is looked up and called) imports this module and :func:`patch` es it
(``_Carrier.__setstate__``). A ``fork`` child inherits the parent's patched classes.

**Pool.** ``apply_async`` (hence ``apply``) and ``_map_async`` (hence ``map``,
``map_async``, ``starmap``, ``starmap_async``) send the caller's baggage bytes with each call
and run the function through top-level picklable wrappers (:func:`_run_with_baggage`,
:func:`_run_item`) that execute it with that baggage active in a fresh execution and return
a :class:`_Carried` ``(result, baggage bytes)``. The result objects' ``_set`` (run by the
pool's result-handler thread) unwraps it - callbacks and ``get()`` see the plain result -
and keeps the bytes; ``get()`` joins them into the caller once the result is ready.
``imap`` / ``imap_unordered`` (any ``chunksize``) send the bytes the same way and return a
:class:`_JoiningIterator`, which yields the plain results and joins each result's baggage
into the caller as the caller takes it. Calls whose worker raised carry no baggage back.
Pool worker processes themselves are not branched (their tasks are).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import multiprocessing.pool
import multiprocessing.process
import threading
from typing import Any

from ..baggage import Baggage
from ..transit import context as _t
from ._util import Originals, pool_machinery

__all__ = ["is_patched", "patch", "unpatch"]

_saved = Originals()
_ATTR = "_ctxplane_carrier"
_BYTES = "_ctxplane_bytes"
_PIPE_LIMIT = 32 * 1024
"""Largest baggage a child sends back (bytes): well under a pipe's buffer, so the child's
write completes before the parent reads (the parent reads at ``join()``, after exit)."""

_lock = threading.Lock()


class _Carrier:
    """What a started process carries: the parent's baggage bytes and the result pipe.

    Picklable (for ``spawn`` / ``forkserver``): the state is ``(data, writer)``; the reader
    never leaves the parent. Unpickling it patches the child (see the module docstring).
    """

    __slots__ = ("data", "reader", "received", "writer")

    def __init__(
        self,
        data: bytes,
        reader: multiprocessing.connection.Connection | None,
        writer: multiprocessing.connection.Connection | None,
    ) -> None:
        self.data = data
        self.reader = reader
        self.writer = writer
        self.received: bytes | None = None

    def __getstate__(self) -> tuple[bytes, multiprocessing.connection.Connection | None]:
        return self.data, self.writer

    def __setstate__(
        self, state: tuple[bytes, multiprocessing.connection.Connection | None]
    ) -> None:
        self.data, self.writer = state
        self.reader = None
        self.received = None
        patch()


def _close(conn: multiprocessing.connection.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


def _skip(proc: Any) -> bool:
    # Pool and ProcessPoolExecutor workers are not branched: each task they run is.
    return pool_machinery(proc)


def _start(self: multiprocessing.process.BaseProcess) -> None:
    original = _saved.original(multiprocessing.process.BaseProcess, "start")
    if _skip(self):
        original(self)
        return
    reader, writer = multiprocessing.Pipe(duplex=False)
    carrier = _Carrier(_t.serialize(), reader, writer)
    setattr(self, _ATTR, carrier)
    try:
        original(self)
    except BaseException:
        _close(reader)
        carrier.reader = None
        raise
    finally:
        # The child has its own copy (forked, or duplicated while pickling): drop ours.
        _close(writer)
        carrier.writer = None


def _bootstrap(self: multiprocessing.process.BaseProcess, *args: Any, **kwargs: Any) -> int:
    original = _saved.original(multiprocessing.process.BaseProcess, "_bootstrap")
    carrier: _Carrier | None = self.__dict__.get(_ATTR)
    if carrier is None:
        return int(original(self, *args, **kwargs))
    _close(carrier.reader)  # a forked child inherited the parent's read end
    carrier.reader = None
    writer, carrier.writer = carrier.writer, None
    start = Baggage.from_bytes(carrier.data)
    token = _t._frame.set(_t.Frame(start, _t.Execution()))
    try:
        return int(original(self, *args, **kwargs))
    finally:
        end = _t.current()
        _t._frame.reset(token)
        if writer is not None:
            try:
                if end is not start:
                    writer.send_bytes(end.to_bytes(_PIPE_LIMIT))
            except OSError:
                pass
            finally:
                _close(writer)


def _join(self: multiprocessing.process.BaseProcess, timeout: float | None = None) -> None:
    _saved.original(multiprocessing.process.BaseProcess, "join")(self, timeout)
    carrier: _Carrier | None = self.__dict__.get(_ATTR)
    if carrier is None or self.exitcode is None:
        return
    with _lock:
        reader, carrier.reader = carrier.reader, None
        if reader is not None:
            try:
                if reader.poll():
                    carrier.received = reader.recv_bytes()
            except (OSError, EOFError):
                pass
            finally:
                _close(reader)
        data = carrier.received
    if data:
        _t.join(Baggage.from_bytes(data))


# -- Pool --------------------------------------------------------------------------------


class _Carried:
    """A pool task's result next to the worker's final baggage bytes (picklable)."""

    __slots__ = ("data", "result")

    def __init__(self, result: Any, data: bytes) -> None:
        self.result = result
        self.data = data

    def __getstate__(self) -> tuple[Any, bytes]:
        return self.result, self.data

    def __setstate__(self, state: tuple[Any, bytes]) -> None:
        self.result, self.data = state


def _run_with_baggage(data: bytes, fn: Any, args: Any, kwargs: Any) -> _Carried:
    """Worker side: run ``fn`` with the caller's baggage active in a fresh execution (a
    pool worker runs many tasks: each gets its own counter component)."""
    start = Baggage.from_bytes(data)
    token = _t._frame.set(_t.Frame(start, _t.Execution()))
    try:
        result = fn(*args, **kwargs)
        end = _t.current()
    finally:
        _t._frame.reset(token)
    return _Carried(result, b"" if end is start else end.to_bytes())


def _run_item(data: bytes, fn: Any, *args: Any) -> _Carried:
    """Worker side of ``map`` / ``starmap``: one item, like :func:`_run_with_baggage`."""
    return _run_with_baggage(data, fn, args, {})


def _apply_async(
    self: Any, func: Any, args: Any = (), kwds: Any = None, *rest: Any, **kw: Any
) -> Any:
    original = _saved.original(multiprocessing.pool.Pool, "apply_async")
    wrapped = (_t.serialize(), func, tuple(args), dict(kwds or {}))
    return original(self, _run_with_baggage, wrapped, {}, *rest, **kw)


def _map_async(self: Any, func: Any, iterable: Any, mapper: Any, *rest: Any, **kw: Any) -> Any:
    original = _saved.original(multiprocessing.pool.Pool, "_map_async")
    wrapped = functools.partial(_run_item, _t.serialize(), func)
    return original(self, wrapped, iterable, mapper, *rest, **kw)


class _JoiningIterator:
    """What a patched ``imap`` / ``imap_unordered`` returns: the pool's iterator, yielding
    plain results and joining each result's baggage into the caller as it is taken."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __iter__(self) -> _JoiningIterator:
        return self

    def __next__(self) -> Any:
        return _unwrap(next(self._inner))

    def next(self, timeout: float | None = None) -> Any:
        """``IMapIterator.next(timeout)``, as the pool's iterator offers it."""
        return _unwrap(self._inner.next(timeout))


def _unwrap(value: Any) -> Any:
    if type(value) is _Carried:
        if value.data:
            _t.join(Baggage.from_bytes(value.data))
        return value.result
    return value


def _make_imap(name: str) -> Any:
    def imap(self: Any, func: Any, iterable: Any, chunksize: int = 1) -> Any:
        original = _saved.original(multiprocessing.pool.Pool, name)
        wrapped = functools.partial(_run_item, _t.serialize(), func)
        return _JoiningIterator(original(self, wrapped, iterable, chunksize))

    imap.__name__ = imap.__qualname__ = name
    return imap


def _keep(result: Any, data: bytes) -> None:
    if data:
        result.__dict__.setdefault(_BYTES, []).append(data)


def _apply_set(self: Any, i: Any, obj: Any) -> None:
    success, value = obj
    if success and type(value) is _Carried:
        _keep(self, value.data)
        obj = (True, value.result)
    _saved.original(multiprocessing.pool.ApplyResult, "_set")(self, i, obj)


def _map_set(self: Any, i: Any, success_result: Any) -> None:
    success, value = success_result
    if success and isinstance(value, list):
        plain = []
        for item in value:
            if type(item) is _Carried:
                _keep(self, item.data)
                plain.append(item.result)
            else:
                plain.append(item)
        success_result = (True, plain)
    _saved.original(multiprocessing.pool.MapResult, "_set")(self, i, success_result)


def _get(self: Any, timeout: float | None = None) -> Any:
    original = _saved.original(multiprocessing.pool.ApplyResult, "get")
    try:
        return original(self, timeout)
    finally:
        if self.ready():
            data = self.__dict__.get(_BYTES)
            if data:
                _t.join(*(Baggage.from_bytes(d) for d in data))


def patch() -> None:
    """Install the multiprocessing branch/join points (idempotent)."""
    if _saved:
        return
    proc: Any = multiprocessing.process.BaseProcess
    _saved.replace(proc, "start", _start)
    _saved.replace(proc, "_bootstrap", _bootstrap)
    _saved.replace(proc, "join", _join)
    pool: Any = multiprocessing.pool
    _saved.replace(pool.Pool, "apply_async", _apply_async)
    _saved.replace(pool.Pool, "_map_async", _map_async)
    _saved.replace(pool.Pool, "imap", _make_imap("imap"))
    _saved.replace(pool.Pool, "imap_unordered", _make_imap("imap_unordered"))
    _saved.replace(pool.ApplyResult, "_set", _apply_set)
    _saved.replace(pool.MapResult, "_set", _map_set)
    _saved.replace(pool.ApplyResult, "get", _get)


def unpatch() -> None:
    """Restore multiprocessing (idempotent)."""
    _saved.restore()


def is_patched() -> bool:
    """Whether the multiprocessing patch is installed."""
    return bool(_saved)
