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
the final baggage back with ``Connection.send_bytes`` (nothing if unchanged; trimmed to
:data:`_PIPE_LIMIT` so that the write never blocks on a full pipe before the parent reads),
prefixed by the child's foldable component (:mod:`ctxplane.transit.remote`). ``join()``, once
the process has exited, reads them without blocking (``poll``), closes the read end and joins
them into the caller - folding the child's component on the first join by the process's
starter; a later ``join()`` changes nothing.

*Spawned children patch themselves*: a ``spawn`` / ``forkserver`` child is a fresh
interpreter where ctxplane may not be active, so ``_bootstrap`` would not be wrapped.
Unpickling the carrier (which happens while the process object is unpickled, before
``_bootstrap`` is looked up and called) imports this module and :func:`patch` es it
(``_Carrier.__setstate__``). A ``fork`` child inherits the parent's patched classes.

**Pool.** ``apply_async`` (hence ``apply``) and ``_map_async`` (hence ``map``,
``map_async``, ``starmap``, ``starmap_async``) send the caller's baggage bytes with each call
and run the function through top-level picklable wrappers (:func:`_run_with_baggage`,
:func:`_run_item`) that execute it with that baggage active in a fresh execution and return
a :class:`~._carry.Carried` (result, baggage bytes, foldable component). The result objects'
``_set`` (run by the pool's result-handler thread) unwraps it - callbacks and ``get()`` see
the plain result - and keeps the rest; ``get()`` joins it into the caller once the result is
ready (each call is a child record: folded on the first ``get()`` by the submitter).
``imap`` / ``imap_unordered`` (any ``chunksize``) send the bytes the same way and return a
:class:`_JoiningIterator`, which yields the plain results and joins each result's baggage
into the caller as the caller takes it. Calls whose worker raised carry no baggage back.
Pool and ProcessPoolExecutor worker processes themselves are not branched (their tasks are).
ctxplane's own failures on either side are contained: the target runs, the app goes on.
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
from ..transit.remote import Worker, remote_children
from . import _carry
from ._carry import Carried, run_carried
from ._util import Originals, pool_machinery, problem

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
    and the child's record never leave the parent. Unpickling it patches the child (see the
    module docstring).
    """

    __slots__ = ("data", "reader", "received", "record", "writer")

    def __init__(
        self,
        data: bytes,
        reader: multiprocessing.connection.Connection | None,
        writer: multiprocessing.connection.Connection | None,
        record: _t.Execution | None = None,
    ) -> None:
        self.data = data
        self.reader = reader
        self.writer = writer
        self.record = record
        self.received: tuple[bytes, bytes | None] | None = None

    def __getstate__(self) -> tuple[bytes, multiprocessing.connection.Connection | None]:
        return self.data, self.writer

    def __setstate__(
        self, state: tuple[bytes, multiprocessing.connection.Connection | None]
    ) -> None:
        self.data, self.writer = state
        self.reader = None
        self.received = None
        self.record = None
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
    branched = _carry.branch()
    if branched is None:
        original(self)
        return
    data, (record,) = branched
    try:
        reader, writer = multiprocessing.Pipe(duplex=False)
    except Exception:
        problem("process branch")
        _carry.join((record,), ())
        original(self)
        return
    carrier = _Carrier(data, reader, writer, record)
    setattr(self, _ATTR, carrier)
    try:
        original(self)
    except BaseException:
        _close(reader)
        carrier.reader = None
        _carry.join((record,), ())  # never started: observed now, by its creator
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
    worker = Worker()
    try:
        worker.start(carrier.data)
    except Exception:
        problem("process start")  # the target runs without the parent's baggage
        _close(writer)
        return int(original(self, *args, **kwargs))
    try:
        return int(original(self, *args, **kwargs))
    finally:
        try:
            data, fold = worker.finish(_PIPE_LIMIT)
            if data and writer is not None:
                # one message: the fold marker's length (0 or 8), the marker, the baggage
                writer.send_bytes(bytes((len(fold or b""),)) + (fold or b"") + data)
        except Exception:
            problem("process end")
        finally:
            _close(writer)


def _received(message: bytes) -> tuple[bytes, bytes | None] | None:
    n = message[0] if message else -1
    if n not in (0, 8) or len(message) <= n + 1:
        return None
    return message[n + 1 :], (message[1 : n + 1] if n else None)


def _join(self: multiprocessing.process.BaseProcess, timeout: float | None = None) -> None:
    _saved.original(multiprocessing.process.BaseProcess, "join")(self, timeout)
    carrier: _Carrier | None = self.__dict__.get(_ATTR)
    if carrier is None or self.exitcode is None:
        return
    try:
        with _lock:
            reader, carrier.reader = carrier.reader, None
            if reader is not None:
                try:
                    if reader.poll():
                        carrier.received = _received(reader.recv_bytes())
                except (OSError, EOFError):
                    pass
                finally:
                    _close(reader)
            got = carrier.received
        if carrier.record is not None:
            _carry.join((carrier.record,), () if got is None else (got,))
        elif got is not None:
            _t.join(Baggage.from_bytes(got[0]))
    except Exception:
        problem("process join")


# -- Pool --------------------------------------------------------------------------------

_REC = "_ctxplane_records"


def _run_with_baggage(data: bytes, fn: Any, args: Any, kwargs: Any) -> Carried:
    """Worker side: run ``fn`` with the caller's baggage active in a fresh execution (a
    pool worker runs many tasks: each gets its own counter component)."""
    return run_carried(data, fn, args, kwargs)


def _run_item(data: bytes, fn: Any, *args: Any) -> Carried:
    """Worker side of ``map`` / ``starmap``: one item, like :func:`_run_with_baggage`."""
    return run_carried(data, fn, args, {})


def _apply_async(
    self: Any, func: Any, args: Any = (), kwds: Any = None, *rest: Any, **kw: Any
) -> Any:
    original = _saved.original(multiprocessing.pool.Pool, "apply_async")
    branched = _carry.branch()
    if branched is None:
        return original(self, func, args, kwds or {}, *rest, **kw)
    data, records = branched
    try:
        wrapped = (data, func, tuple(args), dict(kwds or {}))
        result = original(self, _run_with_baggage, wrapped, {}, *rest, **kw)
    except BaseException:
        _carry.join(records, ())  # never ran: observed now, by its creator
        raise
    result.__dict__[_REC] = records
    return result


def _map_async(self: Any, func: Any, iterable: Any, mapper: Any, *rest: Any, **kw: Any) -> Any:
    original = _saved.original(multiprocessing.pool.Pool, "_map_async")
    if not hasattr(iterable, "__len__"):
        iterable = list(iterable)  # as the pool itself does: one record per item
    branched = _carry.branch(len(iterable))
    if branched is None:
        return original(self, func, iterable, mapper, *rest, **kw)
    data, records = branched
    try:
        wrapped = functools.partial(_run_item, data, func)
        result = original(self, wrapped, iterable, mapper, *rest, **kw)
    except BaseException:
        _carry.join(records, ())
        raise
    result.__dict__[_REC] = records
    return result


class _JoiningIterator:
    """What a patched ``imap`` / ``imap_unordered`` returns: the pool's iterator, yielding
    plain results and joining each result's baggage into the caller as it is taken.

    The iterator is one pending child of the caller until it is exhausted (results not taken
    yet may be taken by anyone); each result taken is a child of the caller, observed then."""

    __slots__ = ("_inner", "_whole")

    def __init__(self, inner: Any, whole: _t.Execution | None) -> None:
        self._inner = inner
        self._whole = whole

    def __iter__(self) -> _JoiningIterator:
        return self

    def __next__(self) -> Any:
        return self._take(next, self._inner)

    def next(self, timeout: float | None = None) -> Any:
        """``IMapIterator.next(timeout)``, as the pool's iterator offers it."""
        return self._take(type(self._inner).next, self._inner, timeout)

    def _take(self, step: Any, *args: Any) -> Any:
        try:
            value = step(*args)
        except StopIteration:
            whole, self._whole = self._whole, None
            if whole is not None:
                _carry.join((whole,), ())
            raise
        if type(value) is not Carried:
            return value
        whole = self._whole
        if whole is not None and whole.creator is not None:
            try:
                rec = remote_children(1, whole.creator)[0]
            except Exception:
                problem("process pool branch")
            else:
                _carry.join((rec,), ((value.data, value.fold),))
        return value.result


def _make_imap(name: str) -> Any:
    def imap(self: Any, func: Any, iterable: Any, chunksize: int = 1) -> Any:
        original = _saved.original(multiprocessing.pool.Pool, name)
        branched = _carry.branch()
        if branched is None:
            return original(self, func, iterable, chunksize)
        data, (whole,) = branched
        wrapped = functools.partial(_run_item, data, func)
        return _JoiningIterator(original(self, wrapped, iterable, chunksize), whole)

    imap.__name__ = imap.__qualname__ = name
    return imap


def _keep(result: Any, item: Carried) -> None:
    result.__dict__.setdefault(_BYTES, []).append((item.data, item.fold))


def _apply_set(self: Any, i: Any, obj: Any) -> None:
    success, value = obj
    if success and type(value) is Carried:
        _keep(self, value)
        obj = (True, value.result)
    _saved.original(multiprocessing.pool.ApplyResult, "_set")(self, i, obj)


def _map_set(self: Any, i: Any, success_result: Any) -> None:
    success, value = success_result
    if success and isinstance(value, list):
        plain = []
        for item in value:
            if type(item) is Carried:
                _keep(self, item)
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
            records = self.__dict__.get(_REC)
            if records:
                _carry.join(records, list(self.__dict__.get(_BYTES, ())))


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
