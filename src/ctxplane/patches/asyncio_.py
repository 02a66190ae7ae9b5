"""Branch and join across asyncio: tasks, gather, TaskGroup, shield, executors, callbacks.

Mechanism, chosen deliberately: ``asyncio.Task`` is an immutable C type, so its methods cannot
be patched in place, and Python 3.11 gives no access to a task's context. ctxplane therefore

* patches ``create_task`` on the event loop classes (``asyncio.BaseEventLoop`` and, when
  present, ``uvloop.Loop``) - the one path every task goes through: ``asyncio.create_task``,
  ``ensure_future``, ``gather`` and ``TaskGroup`` (which calls ``loop.create_task`` directly).
  It copies the context itself and passes it as ``context=``, so the copy the task would have
  made anyway is the one ctxplane keeps (the **branch**);
* creates tasks of :class:`JoiningTask`, a Python subclass of ``asyncio.Task`` that is its own
  execution record (slots, no frame of its own until it needs one: the branch allocates
  nothing but the task) and whose ``__await__``, ``result()`` and ``exception()`` **join** the
  child's final baggage into the awaiting context, at the moment of observation. An app's own
  task factory is kept and called with a branched context; its tasks are remembered (weakly)
  so that the Python-level join points below still join them;
* patches the Python-level join points that do not go through those methods in the observer:
  ``_GatheringFuture`` (gather), ``TaskGroup.__aexit__``, ``shield`` and ``wrap_future`` (both
  return futures that join when awaited; patched in place, see below, so that names bound
  before activation are covered too). ``run_in_executor`` and ``to_thread`` need nothing more:
  the executor's patched ``submit`` branches (into the context ``to_thread`` made) and
  ``wrap_future`` joins. It also branches callbacks scheduled with ``call_soon`` /
  ``call_later`` / ``call_at`` / I/O readiness (branch only: nothing flows back). On
  asyncio's own loops that is done in ``asyncio.events.Handle.__init__`` (replaced by an
  equivalent that also branches), which every callback goes through, so a task's own steps
  cost nothing extra; on uvloop the scheduling methods are wrapped.

When ``ctxplane._speedups`` is in use, tasks are of its compiled twin of ``JoiningTask`` and
``BaseEventLoop.create_task`` branches in C (``patches/_ctask.py``); ``JoiningTask`` stays the
reference, and every join that is not the identity case goes through the same Python functions.

The subclass costs a few percent per task on its own (the C task takes slower paths for
subclasses) and the ``__await__`` generator a few more: measured in
``benchmarks/bench_transit.py``.

Cancelled and failed children still join what they had done.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.events
import asyncio.format_helpers
import asyncio.futures
import asyncio.taskgroups
import asyncio.tasks
import asyncio.threads
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import logging
import sys
import threading
import types
import weakref
from collections.abc import Callable, Generator
from typing import Any

from ..transit import context as _t
from . import _ctask
from ._util import context_run_target, problem

__all__ = ["JoiningTask", "is_patched", "patch", "unpatch"]

_Future = asyncio.Future
_Task = asyncio.Task
_task_await = _Task.__await__
_task_result = _Task.result
_task_exception = _Task.exception
_get_running_loop = asyncio.events._get_running_loop
_get_ident = threading.get_ident
_BaseEventLoop: Any = asyncio.base_events.BaseEventLoop  # (Any: isinstance must not narrow)
# the running task of a loop: the dict ``asyncio.current_task`` reads (a Python function on 3.11)
_current_task: Callable[[Any], Any]
if isinstance(getattr(asyncio.tasks, "_current_tasks", None), dict):
    _current_task = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
else:  # newer Pythons keep the running task elsewhere: the public function, one call more
    _current_task = asyncio.current_task
_copy_context = contextvars.copy_context
_frame_var = _t._frame
_join_execution = _t.join_execution
_CTX = "_ctxplane_ctx"

# Tasks made by an app's task factory: task -> (context, start frame)
_foreign: weakref.WeakKeyDictionary[asyncio.Future[Any], tuple[contextvars.Context, Any]] = (
    weakref.WeakKeyDictionary()
)


def _observing() -> bool:
    """Not inside a callback run by an event loop (see ``transit.context.observing``)."""
    loop = _get_running_loop()
    return loop is None or _current_task(loop) is not None


def _observes(loop: Any) -> bool:
    """:func:`_observing` for code that reads a result of a task of ``loop``, without the
    ``getpid`` system call that ``_get_running_loop`` makes: when ``loop`` is one of asyncio's
    own and runs in this thread, the code observes unless no task of it is running (a
    callback). Elsewhere (uvloop, other threads, no loop) the general test."""
    if isinstance(loop, _BaseEventLoop) and loop._thread_id == _get_ident():
        return _current_task(loop) is not None
    return _observing()


def _join_child(fut: Any) -> None:
    """Join a finished child (task or future) into the current context, if it is ours and
    the running code observes."""
    if type(fut) is _task_type:
        if _observing():
            fut._join()
        return
    if type(fut) is JoiningFuture:  # an executor call, a shielded task
        fut._ctxplane_join()
        return
    state = getattr(fut, _CTX, None)
    if state is None:
        if not _foreign:
            return
        try:
            state = _foreign.get(fut)
        except TypeError:
            return
        if state is None:
            return
    try:
        _t.join_context(state[0], state[1])
    except Exception:
        problem("asyncio join")


def _join_all(children: Any) -> None:
    """Join finished children observed together (gather, TaskGroup exit): ours in one batch
    (one merge, one fold), the others one by one. The caller is the observer (an await)."""
    if _task_type is not JoiningTask:  # the compiled task type: its batch join
        try:
            _ctask.join_tasks(children)
        except Exception:
            problem("asyncio batch join")
        return
    ours: list[tuple[Any, Any, Any]] = []
    for child in children:
        if type(child) is JoiningTask:
            ours.append((child, child._cp_ctx.get(_frame_var, None), child._cp_start))
        else:
            _join_child(child)
    if ours:
        try:
            _t.join_executions(ours, False)
        except Exception:
            problem("asyncio batch join")


def _as_base_repr(r: str, name: str, base: str) -> str:
    prefix = "<" + name
    return "<" + base + r[len(prefix) :] if r.startswith(prefix) else r


class JoiningTask(asyncio.Task[Any]):
    """An ``asyncio.Task`` that is its own execution record and joins its final baggage into
    whoever observes it. Made only by the patched ``create_task``."""

    # The record's fields that every task sets are slots; the ones most tasks never change are
    # class-level defaults, shadowed in the task's own __dict__ only when they change.
    __slots__ = ("_cp_ctx", "_cp_start", "claimed", "creator")
    _cp_ctx: contextvars.Context
    _cp_start: _t.Frame
    creator: _t.ExecutionRecord | None
    claimed: bool
    own: bytes | None = None
    pending: int = 0
    escaped: bool = False
    folded_into: tuple[_t.ExecutionRecord, int] | None = None

    def _join(self) -> None:
        try:
            _t.join_execution(self, self._cp_ctx.get(_frame_var, None), self._cp_start, False)
        except Exception:
            problem("asyncio task join")

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            return (yield from _task_await(self))
        finally:
            if self.done():  # an await is always in the observer (a coroutine)
                try:  # self._join(), inlined
                    _join_execution(self, self._cp_ctx.get(_frame_var, None), self._cp_start, False)
                except Exception:
                    problem("asyncio task join")

    __iter__ = __await__

    def __repr__(self) -> str:
        # asyncio's repr names the class: read as the Task this stands for (logs, debug mode)
        return _as_base_repr(_Task.__repr__(self), "JoiningTask", "Task")

    def result(self) -> Any:
        try:
            return _task_result(self)
        finally:
            # _observes(self._loop), inlined: gather and TaskGroup call this from callbacks
            # per child
            if self.done():
                loop: Any = self._loop
                if (
                    _current_task(loop) is not None
                    if isinstance(loop, _BaseEventLoop) and loop._thread_id == _get_ident()
                    else _observing()
                ):
                    self._join()

    def exception(self) -> BaseException | None:
        try:
            return _task_exception(self)
        finally:
            if self.done():
                loop: Any = self._loop
                if (
                    _current_task(loop) is not None
                    if isinstance(loop, _BaseEventLoop) and loop._thread_id == _get_ident()
                    else _observing()
                ):
                    self._join()


# The type create_task makes: JoiningTask, or its compiled twin (patches/_ctask.py) when
# ctxplane._speedups is in use; chosen by patch().
_task_type: Any = JoiningTask


class JoiningFuture(asyncio.Future[Any]):
    """A future standing for a child execution (executor call, shielded task): awaiting it or
    reading its result joins the child's final baggage."""

    _ctxplane_ctx: tuple[contextvars.Context, Any] | None = None
    _ctxplane_source: Any = None
    _ctxplane_cf: Any = None

    def _ctxplane_join(self) -> None:
        try:
            if self._ctxplane_ctx is not None:
                _t.join_context(*self._ctxplane_ctx)
            elif self._ctxplane_source is not None:
                _join_child(self._ctxplane_source)
            elif self._ctxplane_cf is not None:
                from . import futures  # an executor's future carries the child's baggage

                futures.join_future(self._ctxplane_cf)
        except Exception:
            problem("asyncio future join")

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            return (yield from super().__await__())
        finally:
            if self.done():
                self._ctxplane_join()

    __iter__ = __await__

    def __repr__(self) -> str:
        return _as_base_repr(super().__repr__(), "JoiningFuture", "Future")

    def result(self) -> Any:
        try:
            return super().result()
        finally:
            if self.done():
                self._ctxplane_join()


def _copy_state(src: asyncio.Future[Any], dst: asyncio.Future[Any]) -> None:
    if dst.done():
        return
    if src.cancelled():
        dst.cancel()
        return
    exc = src.exception()
    if exc is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())


def _follow(src: asyncio.Future[Any], dst: JoiningFuture) -> JoiningFuture:
    """Make ``dst`` complete as ``src`` does; cancelling ``dst`` cancels ``src``."""
    src.add_done_callback(functools.partial(_copy_state, dst=dst))

    def _cancel_src(d: asyncio.Future[Any]) -> None:
        if d.cancelled():
            src.cancel()

    dst.add_done_callback(_cancel_src)
    return dst


# -- originals and wrappers -----------------------------------------------------------------

_originals: dict[tuple[Any, str], Any] = {}
_ABSENT = object()  # a name the owner did not have (unpatch deletes it)


def _save(owner: Any, name: str) -> Any:
    key = (owner, name)
    if key not in _originals:
        _originals[key] = owner.__dict__.get(name, _ABSENT)
        if _originals[key] is _ABSENT and hasattr(owner, name):
            _originals[key] = getattr(owner, name)
    return _originals[key]


# task factory -> whether it takes ``context=``
_factory_kinds: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _takes_context(factory: Any) -> bool:
    """Whether an app's task factory accepts ``context=`` (asyncio passes it only when a
    context is given; older factories are ``factory(loop, coro)``). Warns once per factory
    that does not: its tasks branch but never join."""
    with contextlib.suppress(KeyError, TypeError):
        return _factory_kinds[factory]
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        params = None  # unknown: the form that cannot fail
    takes = params is not None and any(
        p.kind is p.VAR_KEYWORD or (p.name == "context" and p.kind is not p.POSITIONAL_ONLY)
        for p in params
    )
    if not takes:
        logging.getLogger("ctxplane.patches").warning(
            "task factory %r takes no context argument: its tasks start from their creator's"
            " baggage, but what they do is never joined back",
            factory,
        )
    with contextlib.suppress(TypeError):
        _factory_kinds[factory] = takes
    return takes


def _make_create_task(original: Callable[..., Any], base_events: bool) -> Callable[..., Any]:
    own_frame = _t.own_frame

    def create_task(
        self: Any, coro: Any, *, name: str | None = None, context: contextvars.Context | None = None
    ) -> Any:
        factory = self._task_factory if base_events else self.get_task_factory()
        if factory is None:
            if base_events:
                self._check_closed()
            try:
                # own_frame() (before the copy: the child inherits this frame), with the
                # common case inlined: a task of ours whose frame already names it
                f = _frame_var.get(None)
                if (
                    f is None
                    or _get_running_loop() is not self
                    or f.ex is not _current_task(self)
                    or f.ex is None
                ):
                    f = own_frame()
                given = context is not None
                if context is None:
                    context = _copy_context()
            except Exception:
                problem("asyncio branch")
                return original(self, coro, name=name, context=context)
            task = _task_type(coro, loop=self, name=name, context=context)
            task._cp_ctx = context
            parent = f.ex
            if given:
                # a context the caller chose may be shared by several tasks: the task gets a
                # frame naming itself there, so that no task takes another's frame for its own
                f = _t.Frame(f.baggage, task)
                context.run(_frame_var.set, f)
            task._cp_start = f
            # the task's record: a fresh execution branched by ``parent`` (the other fields are
            # class defaults)
            task.creator = parent
            task.claimed = False
            parent.pending += 1  # type: ignore[union-attr]
            tb = task._source_traceback
            if base_events and tb:
                del tb[-1]
            return task
        try:
            ctx, start = _t.branch_context(context)
        except Exception:
            problem("asyncio branch")
            return original(self, coro, name=name, context=context)
        if context is None and not _takes_context(factory):
            # factory(loop, coro), the form asyncio calls when no context is given: its task
            # copies the branched context, which 3.11 cannot read back (branch, no join)
            return ctx.run(original, self, coro, name=name)
        task = original(self, coro, name=name, context=ctx)
        with contextlib.suppress(TypeError):
            _foreign[task] = (ctx, start)
        return task

    create_task.__wrapped__ = original  # type: ignore[attr-defined]
    return create_task


def _make_call(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, *args: Any, context: contextvars.Context | None = None) -> Any:
        if context is None and _frame_var.get(None) is not None:
            context = _copy_context()
            _t.branch_callback_context(context)
        return original(self, *args, context=context)

    call.__wrapped__ = original  # type: ignore[attr-defined]
    return call


_extract_stack = asyncio.format_helpers.extract_stack
_branch_callback = _t.branch_callback_context


def _handle_init(
    self: Any, callback: Any, args: Any, loop: Any, context: contextvars.Context | None = None
) -> None:
    # ``asyncio.events.Handle.__init__`` with the branch: a callback scheduled without a
    # context runs in a copy of the scheduler's context, which gets an execution of its own.
    if context is None:
        context = _copy_context()
        if context.get(_frame_var, None) is not None:
            try:
                _branch_callback(context)
            except Exception:
                problem("callback branch")
    self._context = context
    self._loop = loop
    self._callback = callback
    self._args = args
    self._cancelled = False
    self._repr = None
    if loop.get_debug():
        self._source_traceback = _extract_stack(sys._getframe(1))
    else:
        self._source_traceback = None


def _handle_init_replaceable() -> bool:
    # Replace Handle.__init__ only if it is the one this replacement mirrors.
    init = asyncio.events.Handle.__init__
    code = getattr(init, "__code__", None)
    if code is None:
        return False
    return code.co_varnames[:5] == ("self", "callback", "args", "loop", "context") and set(
        code.co_names
    ) <= {
        "contextvars", "copy_context", "_context", "_loop", "_callback", "_args", "_cancelled",
        "_repr", "get_debug", "format_helpers", "extract_stack", "sys", "_getframe",
        "_source_traceback",
    }


def _futures_patch() -> Any:
    # the concurrent.futures patch, when installed: its executors branch at ``submit`` and
    # ``wrap_future`` (below) makes their futures join when awaited
    mod = sys.modules.get("ctxplane.patches.futures")
    return mod if mod is not None and mod.is_patched() else None


def _make_run_in_executor(original: Callable[..., Any]) -> Callable[..., Any]:
    def run_in_executor(self: Any, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        if _futures_patch() is not None or (
            executor is not None
            and not isinstance(executor, concurrent.futures.ThreadPoolExecutor)
        ):
            # the executor's submit branches (or nothing can); wrap_future joins
            return original(self, executor, func, *args)
        if asyncio.iscoroutine(func) or asyncio.iscoroutinefunction(func):
            # the loop refuses these (asyncio in debug mode, uvloop always): let it see them
            return original(self, executor, func, *args)
        # the futures patch is off: branch here (into the context of ``partial(ctx.run, f)``,
        # which is what asyncio.to_thread passes, else a copy around ``func``)
        try:
            given = context_run_target(func)
            ctx, start = _t.branch_context(given)
        except Exception:
            problem("executor branch")
            return original(self, executor, func, *args)
        call = func if given is not None else functools.partial(ctx.run, func)
        fut = original(self, executor, call, *args)
        jf = JoiningFuture(loop=self)
        jf._ctxplane_ctx = (ctx, start)
        return _follow(fut, jf)

    run_in_executor.__wrapped__ = original  # type: ignore[attr-defined]
    return run_in_executor


# -- functions patched in place -------------------------------------------------------------
#
# ``shield`` and ``wrap_future`` return a plain (C) ``asyncio.Future`` they create themselves:
# no class or loop method they call can make awaiting it join (the C future takes no state and
# cannot change class, and making every ``loop.create_future`` a Python subclass would tax all
# of asyncio). Replacing the module attribute misses names bound before activation (``from
# asyncio import shield``, uvloop's own ``asyncio.wrap_future``). So the function object
# itself is retargeted: its ``__code__`` becomes a trampoline that calls ctxplane's version
# (published under a ``_ctxplane_*`` name in the function's own module), which calls a copy
# of the original. ``unpatch`` puts the code back.


def _shield_trampoline(arg):  # type: ignore[no-untyped-def]
    return _ctxplane_shield(arg)  # type: ignore[name-defined]  # noqa: F821


def _wrap_future_trampoline(future, *, loop=None):  # type: ignore[no-untyped-def]
    return _ctxplane_wrap_future(future, loop=loop)  # type: ignore[name-defined]  # noqa: F821


_retargeted: dict[Any, tuple[Any, str]] = {}  # function -> (its own code, published name)
_copies: dict[str, Callable[..., Any]] = {}  # published name -> copy of the original


def _retarget(fn: Any, trampoline: Any, name: str, replacement: Callable[..., Any]) -> None:
    if fn in _retargeted or fn.__code__.co_freevars:
        return
    copy = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__
    _copies[name] = copy
    fn.__globals__[name] = replacement
    _retargeted[fn] = (fn.__code__, name)
    fn.__code__ = trampoline.__code__


def _restore_retargeted() -> None:
    for fn, (code, name) in list(_retargeted.items()):
        fn.__code__ = code
        fn.__globals__.pop(name, None)
    _retargeted.clear()
    _copies.clear()


def _wrap_future(future: Any, *, loop: Any = None) -> Any:
    # asyncio.wrap_future: a future of a patched executor becomes a JoiningFuture (awaiting
    # it, or reading its result, joins the child); anything else is wrapped as before
    try:
        fp = _futures_patch()
        ours = (
            fp is not None
            and not asyncio.isfuture(future)
            and isinstance(future, concurrent.futures.Future)
            and fp.carries(future)
        )
        if ours:
            if loop is None:
                loop = asyncio.events._get_event_loop()  # type: ignore[attr-defined]
            jf = JoiningFuture(loop=loop)
            jf._ctxplane_cf = future
            asyncio.futures._chain_future(future, jf)  # type: ignore[attr-defined]
            return jf
    except Exception:
        problem("wrap_future")
    return _copies["_ctxplane_wrap_future"](future, loop=loop)


def _shield(arg: Any) -> Any:
    original = _copies["_ctxplane_shield"]
    inner = asyncio.ensure_future(arg)
    outer = original(inner)
    try:
        jf = JoiningFuture(loop=inner.get_loop())
        jf._ctxplane_source = inner
        return _follow(outer, jf)
    except Exception:
        problem("shield")
        return outer


def _gathering_await(self: Any) -> Generator[Any, None, Any]:
    try:
        return (yield from _Future.__await__(self))
    finally:
        if self.done():
            _join_all(getattr(self, "_children", ()))


def _gathering_result(self: Any) -> Any:
    try:
        return _Future.result(self)
    finally:
        if self.done():
            # _join_child per child, with _observing() asked once, not per child (the waiting
            # task's wakeup calls this from a callback: nothing of ours to join then)
            observing: bool | None = None
            for child in getattr(self, "_children", ()):
                if type(child) is _task_type:
                    if observing is None:
                        observing = _observing()
                    if observing:
                        child._join()
                else:
                    _join_child(child)


def _make_taskgroup_create_task(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_task(
        self: Any, coro: Any, *, name: str | None = None, context: Any = None
    ) -> Any:
        # remember the group's children: its exit is their join point
        if context is None:  # the only form before Python 3.12
            task = original(self, coro, name=name)
        else:
            task = original(self, coro, name=name, context=context)
        # (never through self.__dict__: on 3.11 that makes the group's attributes a real dict,
        # which slows every attribute access of the group; the class default is None)
        tasks = self._ctxplane_tasks
        if tasks is None:
            self._ctxplane_tasks = [task]
        else:
            tasks.append(task)
        return task

    create_task.__wrapped__ = original  # type: ignore[attr-defined]
    return create_task


async def _taskgroup_aexit(self: Any, et: Any, exc: Any, tb: Any) -> Any:
    original = _originals[(asyncio.taskgroups.TaskGroup, "__aexit__")]
    try:
        return await original(self, et, exc, tb)
    finally:
        tasks = self._ctxplane_tasks
        if tasks:
            self._ctxplane_tasks = None
            _join_all([t for t in tasks if t.done()])


# -- patch / unpatch ------------------------------------------------------------------------

_patched = False


def _set(owner: Any, name: str, value: Any) -> None:
    _save(owner, name)
    setattr(owner, name, value)


def _patch_loop_class(cls: Any, base_events: bool) -> None:
    create_task = _make_create_task(_save(cls, "create_task"), base_events)
    if base_events and _task_type is not JoiningTask:  # the branch in C, this one behind it
        create_task = _ctask.create_task_method(create_task)
    _set(cls, "create_task", create_task)
    if base_events and _handle_init_replaceable():
        _set(asyncio.events.Handle, "__init__", _handle_init)
        return
    for name in ("call_soon", "call_later", "call_at", "call_soon_threadsafe"):
        if hasattr(cls, name):
            _set(cls, name, _make_call(_save(cls, name)))


def patch(compiled: bool | None = None) -> None:
    """Install the asyncio branch/join points (idempotent). Tasks are of the compiled task
    type when ``ctxplane._speedups`` is in use (``compiled=False``: :class:`JoiningTask`, the
    pure-Python reference, even then)."""
    global _patched, _task_type, _get_running_loop
    if _patched:
        return
    _task_type = JoiningTask
    if compiled is not False:
        _task_type = _ctask.task_type(_join_child) or JoiningTask
    be = asyncio.base_events.BaseEventLoop
    _patch_loop_class(be, True)
    _set(be, "run_in_executor", _make_run_in_executor(_save(be, "run_in_executor")))
    if _task_type is not JoiningTask:
        _set(be, "run_forever", _ctask.run_forever_method(_save(be, "run_forever")))
        # the loop that run_forever names, without _get_running_loop's getpid per call
        _get_running_loop = _ctask.running_loop_function()
    gathering: Any = getattr(asyncio.tasks, "_GatheringFuture")  # noqa: B009 (private, typed)
    _set(gathering, "__await__", _gathering_await)
    _set(gathering, "__iter__", _gathering_await)
    _set(gathering, "result", _gathering_result)
    tg = asyncio.taskgroups.TaskGroup
    group_create_task = _make_taskgroup_create_task(_save(tg, "create_task"))
    if _task_type is not JoiningTask:  # the same, without a Python frame per child
        group_create_task = _ctask.group_create_task_method(
            group_create_task, _originals[(tg, "create_task")]
        )
    _set(tg, "create_task", group_create_task)
    _set(tg, "_ctxplane_tasks", None)  # the children a group created, set on its first
    _set(asyncio.taskgroups.TaskGroup, "__aexit__", _taskgroup_aexit)
    _retarget(asyncio.tasks.shield, _shield_trampoline, "_ctxplane_shield", _shield)
    _retarget(
        asyncio.futures.wrap_future,
        _wrap_future_trampoline,
        "_ctxplane_wrap_future",
        _wrap_future,
    )
    uvloop = sys.modules.get("uvloop")
    if uvloop is not None:
        patch_uvloop(uvloop)
    _t.set_task_source(_get_running_loop, _current_task, _task_type)
    _t.set_observing(_observing)
    _patched = True


def patch_uvloop(uvloop: Any) -> None:
    """Patch ``uvloop.Loop`` (a Python subclass of its Cython loop) the same way."""
    if (uvloop.Loop, "create_task") not in _originals:
        _patch_loop_class(uvloop.Loop, False)
        original = _save(uvloop.Loop, "run_in_executor")
        _set(uvloop.Loop, "run_in_executor", _make_run_in_executor(original))


def unpatch() -> None:
    """Restore everything :func:`patch` replaced (idempotent)."""
    global _patched, _get_running_loop
    _get_running_loop = asyncio.events._get_running_loop
    for (owner, name), original in list(_originals.items()):
        if original is _ABSENT:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
    _originals.clear()
    _restore_retargeted()
    if _patched:
        # Tasks made while patched stay their own execution records until they end.
        _t.set_observing(None)
    _patched = False


def is_patched() -> bool:
    """Whether the asyncio patch is installed."""
    return _patched
