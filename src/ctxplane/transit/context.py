"""The transit layer: the active baggage of the current execution, and branch / join.

The active baggage is an immutable :class:`~ctxplane.baggage.Baggage` held in a
:class:`contextvars.ContextVar`, inside a small immutable :class:`Frame` that also names the
execution's own counter component. Python copies a context into a child task, but nothing
flows back; ctxplane makes execution **branch** when it forks (the child gets the parent's
baggage and a fresh counter identity) and **join** when the parent *observes* the child (the
child's final baggage is merged into the parent's, in the parent's context, at that moment).

Rules the patches rely on:

* A branch hands the same immutable ``Baggage`` object to the child: nothing is copied.
* A join of a child whose frame is still the one it was given is an identity check: no merge.
  A join of a baggage equal to or contained in the parent's returns the parent's own object.
  Joining the same child twice changes nothing (the merge is idempotent).
* Counter increments go to the current execution's own component, created lazily on the first
  increment, so concurrent branches never share a component and joins (per-component maximum)
  never double-count. A forked process renews its identity.

Executions are records, not objects the user sees: an :class:`Execution` for a thread, a
pool task, a callback, a server handler; for an asyncio task created by the asyncio patch, the
task object itself (it carries the same fields, :class:`ExecutionRecord`), so that a branch
at ``create_task`` allocates nothing but the task and a join of a task that changed nothing
touches no frame. Such a task does not get a frame of its own at the branch: it inherits its
creator's frame, and :func:`current_execution` recognises it (the frame names the task's
creator, and the running task is that child) - see :func:`set_task_source`.

Compaction (keeping counters to a bounded number of components under structured concurrency):
a join *folds* the child's own component into the observer's own component - the count moves,
the child's component disappears - only when all of these hold:

1. the observer is the execution that created the child (it branched it),
2. this is the first observation of the child (any later one is a plain join),
3. the child is finished and observed every execution it branched itself (none pending),
4. nothing the child (or anything it created) branched was observed by anyone else first.

Otherwise no copy of the child's components could be told apart from a second count, so the
join is the plain per-component maximum. A child observed by a non-creator marks its creator
chain "escaped" (never folded from then on); a stale copy of an already folded component that
shows up later (a task awaited a second time, by someone else) is replaced by the component it
was folded into, at a count that already includes it. Counts are therefore exact in every
case, and compact where concurrency is structured (gather, TaskGroup, await, Thread.join,
Future.result).

Callbacks (``call_soon``, timers, I/O readiness) branch but are never joined: their changes
stay theirs. They get an execution of their own whose creator is the scheduler (so stale copies
they pass on in-band are redirected like any other), but they do not count among the
scheduler's pending children - otherwise every task that sleeps or waits on I/O could never be
folded. Children observed together (gather, TaskGroup exit) are joined in one batch
(:func:`join_executions`): the same rule, one merge and one fold pass. Children that run in
another process (pool calls, processes) get the same records and rule
(:mod:`ctxplane.transit.remote`); a caller remembers the remote components it folded
(:func:`join_returned`), so a response joined twice counts once.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from ..baggage import Bag, Baggage, BaggageError
from ..baggage import counters as _counters
from ..baggage import fields as _fields
from ..baggage.lexvarint import decode_unsigned_reverse

__all__ = [
    "Execution",
    "ExecutionRecord",
    "Frame",
    "branch",
    "branch_callback_context",
    "branch_context",
    "current",
    "current_execution",
    "deserialize",
    "foldable",
    "join",
    "join_context",
    "join_execution",
    "join_executions",
    "join_returned",
    "new_execution",
    "own_frame",
    "serialize",
    "set_current",
    "set_observing",
    "set_task_source",
    "use",
]

B = TypeVar("B", bound=Bag)


class ExecutionRecord(Protocol):
    """What the compaction rule keeps per execution (an :class:`Execution` or a task)."""

    own: bytes | None
    creator: ExecutionRecord | None
    pending: int
    escaped: bool
    claimed: bool
    folded_into: tuple[ExecutionRecord, int] | None


class Execution:
    """One execution (a task, a thread, a callback...): its own counter component and what
    the compaction rule needs to know about it. Mutable; never sent anywhere."""

    __slots__ = ("__weakref__", "claimed", "creator", "escaped", "folded_into", "own", "pending")

    def __init__(self, creator: ExecutionRecord | None = None) -> None:
        self.own: bytes | None = None
        self.creator = creator
        self.pending = 0  # children branched and not yet observed by this execution
        self.escaped = False  # copies of this execution's components may reach others
        self.claimed = False  # observed at least once
        self.folded_into: tuple[ExecutionRecord, int] | None = None


class Frame:
    """What the ContextVar holds: the active baggage and the execution it belongs to."""

    __slots__ = ("baggage", "ex")  # (_csrc/record.c makes frames slot by slot, too)

    def __init__(self, baggage: Baggage, ex: ExecutionRecord | None = None) -> None:
        self.baggage = baggage
        self.ex = ex

    @property
    def own(self) -> bytes | None:
        """The execution's own counter component id, if it has one yet."""
        return self.ex.own if self.ex is not None else None

    def __repr__(self) -> str:
        own = self.own.hex() if self.own else None
        return f"Frame({self.baggage!r}, own={own})"


_EMPTY_FRAME = Frame(Baggage.empty())
_frame: contextvars.ContextVar[Frame] = contextvars.ContextVar("ctxplane_frame")
_get = _frame.get
_set = _frame.set
_lock = threading.Lock()


def current() -> Baggage:
    """The active baggage of the current execution (empty if none was set)."""
    return _get(_EMPTY_FRAME).baggage


def set_current(baggage: Baggage) -> None:
    """Make ``baggage`` the active baggage of the current execution."""
    f = _get(_EMPTY_FRAME)
    if f.baggage is not baggage:
        _set(Frame(baggage, f.ex))


@contextmanager
def use(baggage: Baggage) -> Iterator[Baggage]:
    """Run a block with ``baggage`` active, restoring the previous baggage afterwards.

    Works in sync and async code (a ``with`` inside a coroutine affects only that task).
    """
    token = _set(Frame(baggage, _get(_EMPTY_FRAME).ex))
    try:
        yield baggage
    finally:
        _frame.reset(token)


@contextmanager
def new_execution(baggage: Baggage) -> Iterator[Baggage]:
    """Run a block as a new execution that starts from ``baggage``: its own counter
    identity, nothing shared with the caller (a server handler, a worker's task)."""
    token = _set(Frame(baggage, Execution()))
    try:
        yield baggage
    finally:
        _frame.reset(token)


def branch() -> Baggage:
    """The baggage to hand to a new execution (for custom executors and transports).

    Baggage is immutable, so this is the active value itself; the new execution must run
    :func:`use` or :func:`set_current` with it, and gets its own counter identity there.
    """
    return current()


def join(*others: Baggage) -> Baggage:
    """Merge other executions' baggage into the active baggage; returns the result."""
    f = _get(_EMPTY_FRAME)
    joined = f.baggage.join(*others)
    if joined is not f.baggage:
        _set(Frame(joined, f.ex))
        if _join_hook is not None:
            _join_hook()
    return joined


def serialize(limit: int | None = None) -> bytes:
    """The active baggage as bytes (trimmed with the overflow marker above ``limit``)."""
    return current().to_bytes(limit)


def deserialize(data: bytes) -> Baggage:
    """Parse bytes and join them into the active baggage; returns the result.

    Malformed bytes (bad framing, an atom no baggage holds) raise :class:`BaggageError` and
    leave the active baggage as it was. (Transports parse what peers send leniently instead:
    dropped and counted, :mod:`ctxplane.wire.limits`.)
    """
    from ..wire.limits import check_atoms  # not at import: it loads logging

    b = Baggage.from_bytes(data, strict=True)
    problem = check_atoms(b.atoms)
    if problem is not None:
        raise BaggageError(f"malformed baggage: {problem}")
    return join(b)


# -- primitives for patches ---------------------------------------------------------------

# Where the running lazy task execution comes from, installed by the asyncio patch (this module
# does not import asyncio): the running loop, the running task of a loop, and the task type
# that is its own execution record. Plain C calls, so that hot paths make no Python call.
_running_loop: Callable[[], Any] = type(None)  # returns None: no loop
_task_of: Callable[[Any], Any] = {}.get
_lazy_type: Any = None  # a type (Any: mypy would narrow tasks to object)


def set_task_source(
    running_loop: Callable[[], Any] | None,
    task_of: Callable[[Any], Any] | None = None,
    task_type: type | None = None,
) -> None:
    """Install (or remove, with None) how to find the running task that is its own execution
    record: ``task_of(running_loop())``, when it is of ``task_type``."""
    global _running_loop, _task_of, _lazy_type
    if running_loop is None or task_of is None or task_type is None:
        _running_loop, _task_of, _lazy_type = type(None), {}.get, None
    else:
        _running_loop, _task_of, _lazy_type = running_loop, task_of, task_type


def _exec_of(f: Frame) -> ExecutionRecord | None:
    # The execution the running code belongs to: the frame's, unless the running task is a
    # lazy child whose frame is still (a descendant of) the one inherited from its creator.
    ex = f.ex
    loop = _running_loop()
    if loop is not None:
        t: Any = _task_of(loop)
        if type(t) is _lazy_type and (ex is t or ex is t.creator):
            return t  # type: ignore[no-any-return]
    return ex


def current_execution() -> ExecutionRecord | None:
    """The execution record of the running code (None before anything branched)."""
    return _exec_of(_get(_EMPTY_FRAME))


def _own_execution() -> Frame:
    """The current frame, made to name the running execution (one is created for code that
    has none yet). A parent calls this before it copies its context for a lazy child."""
    f = _get(_EMPTY_FRAME)
    ex = f.ex
    loop = _running_loop()
    if loop is not None:
        t: Any = _task_of(loop)
        if type(t) is _lazy_type:
            if ex is t:
                return f
            if ex is t.creator:
                ex = t
    if ex is None:
        ex = Execution()
    elif ex is f.ex:
        return f
    f = Frame(f.baggage, ex)
    _set(f)
    return f


own_frame = _own_execution  # public name (patches bind it: no extra call on their hot path)


def branch_context(ctx: contextvars.Context | None = None) -> tuple[contextvars.Context, Frame]:
    """A context for a new execution: a copy of the current one (or ``ctx`` itself) holding
    the child's frame. Returns the context and that frame (the join needs it back)."""
    f = _own_execution()
    parent = f.ex
    assert parent is not None
    child = Frame(f.baggage, Execution(parent))
    if ctx is None:
        ctx = contextvars.copy_context()
    ctx.run(_set, child)  # raises if ``ctx`` is entered elsewhere: nothing is pending then
    parent.pending += 1
    return ctx, child


def branch_callback_context(ctx: contextvars.Context) -> None:
    """Give a callback's context (a copy made for it) an execution of its own.

    Callbacks branch only: nothing they do is ever joined back, so they do not count as
    pending children of the scheduler (which would keep it from ever being folded). The
    creator link is kept, so that stale copies of folded components that a callback passes
    on in-band are still redirected."""
    f = ctx.get(_frame, None)
    if f is None:
        return
    parent = _exec_of(f)
    ctx.run(_set, Frame(f.baggage, Execution(parent)))


# Whether the running code can observe a child (installed by the asyncio patch): False inside
# a callback run by an event loop. Without asyncio everything observes.
_observing: Callable[[], bool] | None = None


def set_observing(check: Callable[[], bool] | None) -> None:
    """Install (or remove) the test used by :func:`observing`."""
    global _observing
    _observing = check


def observing() -> bool:
    """Whether the current code can be an observer: not a callback run by an event loop.

    asyncio's own machinery reads children's results from callbacks (gather, wait_for,
    shield, wrap_future...); a join there would land in a throw-away context copy and, worse,
    claim the child's first observation. Joins happen in the task (or thread) that observes.
    """
    check = _observing
    if check is not None:
        return check()
    aio = sys.modules.get("asyncio")
    if aio is None:
        return True
    loop = aio.events._get_running_loop()
    return loop is None or aio.tasks.current_task(loop) is not None


def _escape(ex: ExecutionRecord | None) -> None:
    """Copies of ``ex``'s components (and its creators') may now reach others: never fold."""
    while ex is not None and not ex.escaped:
        ex.escaped = True
        ex = ex.creator


def _resolve(ex: ExecutionRecord) -> tuple[ExecutionRecord, int] | None:
    """Where a folded execution's count lives now: the last execution of its fold chain."""
    target = ex.folded_into
    while target is not None and target[0].folded_into is not None:
        target = target[0].folded_into
    return target


def _redirect(b: Baggage, ex: ExecutionRecord | None) -> Baggage:
    # A stale copy of a folded component becomes the component it was folded into.
    while ex is not None:
        if ex.own is not None and ex.folded_into is not None:
            target = _resolve(ex)
            if target is not None and target[0].own is not None:
                b = _counters.redirect_component(b, ex.own, target[0].own, target[1])
        ex = ex.creator
    return b


def join_context(ctx: contextvars.Context, start: Frame | None = None) -> None:
    """Join the final baggage of a finished child context into the current execution (the
    observer's), at the moment of observation. ``start`` is the frame
    :func:`branch_context` returned; the child's execution is the one it names.

    Compaction rule (the only place a count moves between components): the child's own
    component is folded into the observer's own component when the observer is the child's
    creator, this is the first observation of the child, and no copy of the child's components
    can still reach anyone else - every execution the child branched was observed by the child
    itself, and nothing the child created was observed by anyone else. Every other join is the
    plain merge (per-component maximum), after replacing stale copies of components that were
    already folded by the component they were folded into.
    """
    end = ctx.get(_frame)
    if end is None or not observing():
        return
    cex = start.ex if start is not None else end.ex
    if cex is None:
        if end is not start:
            _merge(_get(_EMPTY_FRAME), end.baggage)
        return
    join_execution(cex, end, start)


def _claim(cex: ExecutionRecord, observer: ExecutionRecord | None) -> tuple[bool, bool]:
    # The bookkeeping of one observation (under _lock, or in the one thread that can observe
    # the child): whether the observer is the child's
    # creator observing it first, and whether the child's own component may be folded.
    first = not cex.claimed
    cex.claimed = True
    by_creator = first and observer is not None and cex.creator is observer
    if by_creator:
        observer.pending -= 1  # type: ignore[union-attr]
    elif first or not cex.escaped:
        _escape(cex)
    fold = (
        by_creator
        and not cex.escaped
        and cex.pending == 0
        and cex.own is not None
        and cex.folded_into is None
    )
    return by_creator, fold


def join_execution(
    cex: ExecutionRecord, end: Frame | None, start: Frame | None, locked: bool = True
) -> None:
    """Join child execution ``cex``, which started from frame ``start`` and ended with frame
    ``end``, into the running execution (see :func:`join_context` for the rule). The caller
    has checked that the running code observes (:func:`observing`).

    ``locked=False`` is for children that only one thread can observe: asyncio tasks, whose
    methods are not thread-safe and run in their loop's thread (no lock is taken then)."""
    f = _get(_EMPTY_FRAME)
    observer = f.ex  # _exec_of(f), inlined: this runs at every await of a task
    loop = _running_loop()
    if loop is not None:
        t: Any = _task_of(loop)
        if type(t) is _lazy_type and (observer is t or observer is t.creator):
            observer = t
    if end is start and not locked and observer is not None and not cex.claimed:
        # the common case: a child that changed nothing, observed first by its creator
        cex.claimed = True
        if cex.creator is observer:
            observer.pending -= 1
        else:
            _escape(cex)
        return
    if locked:
        with _lock:
            by_creator, fold = _claim(cex, observer)
    else:
        by_creator, fold = _claim(cex, observer)
    if end is start or end is None:
        return
    b = end.baggage
    if not fold:
        if not by_creator:
            b = _redirect(b, cex)
        _merge(f, b)
        return
    f = _own_execution()
    ex = f.ex
    assert ex is not None and cex.own is not None
    own = _own_component()
    f = _get(_EMPTY_FRAME)
    joined = f.baggage.join(b) if b is not f.baggage else f.baggage
    folded = _counters.fold_component(joined, cex.own, own)
    with _lock:
        cex.folded_into = (ex, _component_value(folded, own))
    if folded is not f.baggage:
        _set(Frame(folded, ex))
        if _join_hook is not None:
            _join_hook()


def join_executions(
    children: list[tuple[ExecutionRecord, Frame | None, Frame | None]], locked: bool = True
) -> None:
    """Join several finished children at once, as :func:`join_execution` does one by one
    (same rule, same result), with one merge and one fold pass: ``gather`` and ``TaskGroup``
    of thousands of children stay linear. Items are ``(execution, end frame, start frame)``;
    ``locked`` as for :func:`join_execution`."""
    if len(children) < 2:
        for cex, end, start in children:
            join_execution(cex, end, start, locked)
        return
    f = _get(_EMPTY_FRAME)
    observer = _exec_of(f)
    plain: list[Baggage] = []
    folding: list[ExecutionRecord] = []
    if locked:
        _lock.acquire()
    try:
        for cex, end, start in children:
            if end is start and observer is not None and not cex.claimed:
                # the common case, as in join_execution: changed nothing, first observation
                cex.claimed = True
                if cex.creator is observer:
                    observer.pending -= 1
                else:
                    _escape(cex)
                continue
            by_creator, fold = _claim(cex, observer)
            if end is start or end is None:
                continue
            if fold:
                folding.append(cex)
                plain.append(end.baggage)
            else:
                plain.append(end.baggage if by_creator else _redirect(end.baggage, cex))
    finally:
        if locked:
            _lock.release()
    if not plain:
        return
    if not folding:
        joined = f.baggage.join(*plain)
        if joined is not f.baggage:
            _set(Frame(joined, f.ex))
            if _join_hook is not None:
                _join_hook()
        return
    f = _own_execution()
    ex = f.ex
    assert ex is not None
    own = _own_component()
    f = _get(_EMPTY_FRAME)
    joined = f.baggage.join(*plain)
    srcs = frozenset(c.own for c in folding if c.own is not None)
    folded = _counters.fold_components(joined, srcs, own)
    value = _component_value(folded, own)
    with _lock:
        for c in folding:
            c.folded_into = (ex, value)
    if folded is not f.baggage:
        _set(Frame(folded, ex))
        if _join_hook is not None:
            _join_hook()


def foldable(ex: ExecutionRecord | None) -> bytes | None:
    """The own counter component of a finished execution that its remote caller may fold, or
    None: for a server handler that answers, the response is the only way its baggage goes
    back, so when it observed every execution it branched and none of them was observed by
    anyone else (the rule above), the caller can fold the component as it would a child's."""
    if ex is None or ex.own is None or ex.pending or ex.escaped or ex.folded_into is not None:
        return None
    return ex.own


# Components that join_returned folded, remembered so that a replayed response - the same
# baggage and marker arriving again, from a caching proxy say - counts once: its copy of the
# component is replaced by the one the component was folded into (as for a task awaited
# twice). Bounded: the last REMOTE_FOLDS_REMEMBERED components; a replay of an older one
# would count again. Component -> (the execution it went into, weakly; that execution's
# component; its count right after the fold).
REMOTE_FOLDS_REMEMBERED = 16384
# (an OrderedDict: dropping the oldest is O(1); a dict's ``next(iter(d))`` scans the deleted
# slots at its front, ~13 us a fold once full)
_remote_folds: OrderedDict[bytes, tuple[Callable[[], ExecutionRecord | None], bytes, int]] = (
    OrderedDict()
)


def _remember_fold(src: bytes, ex: ExecutionRecord, own: bytes, value: int) -> None:
    try:
        ref: Callable[[], ExecutionRecord | None] = weakref.ref(ex)
    except TypeError:  # a record type without weak references: kept alive (bounded)
        ref = lambda: ex  # noqa: E731
    with _lock:
        if len(_remote_folds) >= REMOTE_FOLDS_REMEMBERED:
            _remote_folds.popitem(last=False)
        _remote_folds[src] = (ref, own, value)


def _replayed(b: Baggage, observer: ExecutionRecord | None) -> Baggage:
    # copies of components folded before become the component they were folded into
    stale = [a[1:] for a in b.atoms if a[1:] in _remote_folds]
    for src in stale:
        with _lock:
            entry = _remote_folds.get(src)
            if entry is None:
                continue
            ex = entry[0]()
            dst, value = entry[1], entry[2]
            if ex is not None:
                target = _resolve(ex)
                if target is not None and target[0].own is not None:
                    dst, value = target[0].own, target[1]
                if ex is not observer:
                    _escape(ex)  # a copy of its component now reaches another execution
        b = _counters.redirect_component(b, src, dst, value)
    return b


def join_returned(b: Baggage, folded: bytes | None = None) -> Baggage:
    """Join baggage a call returned into the current execution (the caller, at the moment the
    response arrives), folding the callee's component ``folded`` (from :func:`foldable` on the
    callee's side) into the caller's own component. Returns the active baggage.

    A component folded once is remembered (see ``REMOTE_FOLDS_REMEMBERED``): the same
    response joined again changes nothing."""
    f = _get(_EMPTY_FRAME)
    if _remote_folds:
        b = _replayed(b, _exec_of(f))
        if folded is not None and folded in _remote_folds:
            folded = None
    # Only a component that is the callee's own can be folded: one the caller did not have
    # (a component it sent cannot be the callee's; the check may refuse a fold, never allow a
    # wrong one).
    if folded is not None and folded not in f.baggage.to_bytes():
        own = _own_component()
        f = _get(_EMPTY_FRAME)  # now naming the caller's execution
        # only the bags that brought the component back can hold it: rewrite just those
        within = _counters.bags_holding(b, folded)
        joined = _counters.fold_component(f.baggage.join(b), folded, own, within)
        if within and f.ex is not None:  # the component came back, and is folded now
            _remember_fold(folded, f.ex, own, _component_value(joined, own))
    else:
        joined = f.baggage.join(b)
    if joined is not f.baggage:
        _set(Frame(joined, f.ex))
        if _join_hook is not None:
            _join_hook()
    return joined


def _component_value(b: Baggage, own: bytes) -> int:
    # the count of ``own`` after a fold: the largest value any copy of it holds
    best = 0
    atoms = b.atoms
    for i, atom in enumerate(atoms):
        if atom[1:] == own and i + 1 < len(atoms) and atoms[i + 1][:1] == b"\x00":
            try:
                best = max(best, decode_unsigned_reverse(atoms[i + 1], 1)[0])
            except BaggageError:
                continue
    return best


def _merge(f: Frame, b: Baggage) -> None:
    if b is f.baggage or not b:
        return
    joined = f.baggage.join(b)
    if joined is not f.baggage:
        _set(Frame(joined, f.ex))
        if _join_hook is not None:
            _join_hook()


def _own_component() -> bytes:
    f = _own_execution()
    ex = f.ex
    assert ex is not None
    if ex.own is None:
        ex.own = _fields.new_component_id()
    return ex.own


def _renew_after_fork() -> None:
    f = _get(_EMPTY_FRAME)
    if f.ex is not None or _lazy_type is not None:
        _set(Frame(f.baggage, Execution()))


_fields.set_component_id_provider(_own_component)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_after_fork)


# -- tracing --------------------------------------------------------------------------------
# ctxplane.tracing installs itself here while it records (transit never imports it): patches
# test ``tracer`` (None: tracing off) before any tracing work, and a join that changed the
# active baggage calls ``_join_hook`` (never the unchanged fast paths).

tracer: Any = None
"""The active tracing module for patches (None while tracing is off)."""
_join_hook: Callable[[], None] | None = None


def set_tracer(hooks: Any, on_join: Callable[[], None] | None) -> None:
    """Install (or remove, with None) tracing: the object patches call, and the join hook."""
    global tracer, _join_hook
    tracer = hooks
    _join_hook = on_join


# -- typed access --------------------------------------------------------------------------


def get_bag(cls: type[B]) -> B | None:
    """The bag of class ``cls`` in the active baggage, or None."""
    return current().get(cls)


def set_bag(bag: Bag) -> None:
    """Replace the bag of ``bag``'s class in the active baggage."""
    set_current(current().with_bag(bag))


def update_bag(cls: type[B], **changes: Any) -> B:
    """Read the bag of ``cls`` (or an empty one), apply ``replace(**changes)``, set it back."""
    bag = current().get(cls) or cls()
    new: B = bag.replace(**changes)
    set_bag(new)
    return new
