"""The compiled ``record`` against ``record_pure`` (the reference) on random baggage: the same
return values, the same new baggage, the same buffered events and execution-unit state, from
the same random draws, whatever the X-Trace bag looks like (the simple form the recorder
writes, forms only the typed bag reads, none at all) and with the buffer full."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxplane.baggage import Baggage
from ctxplane.baggage.protocol import OVERFLOW_MARKER
from ctxplane.tracing import recorder, xtrace
from ctxplane.transit import context
from ctxplane.wire import tracecontext as tc

pytestmark = pytest.mark.skipif(
    recorder.record is recorder.record_pure, reason="the compiled speedups are not in use"
)

H, F1, F2 = xtrace.HEADER, xtrace._F1, xtrace._F2
TASK = 0x1234_5678_9ABC_DEF0
u64 = st.integers(0, 2**64 - 1)
data_atom = st.binary(max_size=12).map(lambda b: b"\x00" + b)


def _atom(v: int) -> bytes:
    return b"\x00" + v.to_bytes(8, "big")


@st.composite
def xtrace_segment(draw: st.DrawFn) -> list[bytes]:
    """An X-Trace segment in one of the forms a peer or a merge can leave."""
    task = _atom(draw(st.sampled_from([TASK, draw(u64)])))
    parents = [_atom(p) for p in draw(st.lists(u64, max_size=4))]
    form = draw(st.sampled_from(
        ["simple", "simple", "simple", "task only", "empty set", "extra field", "short task",
         "short parent", "header again", "absent"]
    ))
    if form == "simple":
        return [H, F1, task, F2, *parents] if parents else [H, F1, task]
    if form == "task only":
        return [H, F1, task]
    if form == "empty set":
        return [H, F1, task, F2]
    if form == "extra field":
        return [H, F1, task, F2, *parents, b"\xf0\x03", b"\x00x"]
    if form == "short task":
        return [H, F1, b"\x00\x01\x02", F2, *parents]
    if form == "short parent":
        return [H, F1, task, F2, b"\x00\x05", *parents]
    if form == "header again":
        return [H, F1, task, H, F2, *parents]
    return []


@st.composite
def baggages(draw: st.DrawFn) -> Baggage:
    """A trace context, a foreign bag on either side of the X-Trace one, maybe the overflow
    marker: the baggage a sampled request carries, and worse."""
    b = Baggage.empty()
    if draw(st.booleans()):
        b = tc.inbound_ids(b, f"{0xABCD:016x}{TASK:016x}", "00f067aa0ba902b7", 3)
    atoms = list(b.atoms)
    before = [b"\xf8\x05", *draw(st.lists(data_atom, max_size=2))] if draw(st.booleans()) else []
    after = [b"\xf8\x09", *draw(st.lists(data_atom, max_size=2))] if draw(st.booleans()) else []
    seg = draw(xtrace_segment())
    atoms = before + atoms + seg + after  # (not in bag order: record does not need it)
    if draw(st.booleans()):
        atoms.append(OVERFLOW_MARKER)
    return Baggage(atoms)


def _eu_state(eu: Any) -> tuple[Any, ...]:
    return (eu.id, eu.seq, eu.kind, eu.name, eu.task, eu.last_id, eu.head, eu.tail, eu.prefix,
            None if eu.last_b is None else eu.last_b.atoms)


def _run(impls: tuple[Callable[..., int], Callable[[], None]], b: Baggage, known: bool,
         calls: list[tuple[Any, ...]], capacity: int) -> tuple[Any, ...]:
    """Run ``calls`` of ``impl`` in a fresh context starting from ``b``; what they left."""
    rec = recorder.rec
    saved = (rec.capacity, rec.dropped, dict(rec.traces), list(rec.buf))
    rec.buf.clear()
    rec.traces.clear()
    rec.dropped = 0
    if known:
        rec.traces[TASK] = f"{0xABCD:016x}{TASK:016x}"
    rec.capacity = capacity
    recorder._rng.seed(20261206)
    out: list[Any] = []

    def body() -> None:
        b.get(tc.TraceContextBag)  # a bag parsed before: kept by the new values
        context._frame.set(context.Frame(b, context.Execution()))
        impl, on_join = impls
        for typ, label, attrs, extra, in_span, how in calls:
            cur = context.current()
            if how == "hook":  # transit's join hook (a join event if several parents)
                on_join()
                eid = None
            else:
                read = None
                if how == "read" and xtrace.read(cur) is not None:
                    read = (cur, xtrace.read(cur))
                eid = impl(typ, label, attrs, extra, in_span, read)
            now = context.current()
            out.append((eid, now.atoms, sorted(t.__name__ for t in (now._bags or {}))))
        eu = recorder._eu_get(None)
        out.append(None if eu is None else _eu_state(eu))

    try:
        contextvars.Context().run(body)
        items = [(it[0].id, it[1], it[2], *it[4:]) for it in rec.buf]
        return tuple(out), items, rec.dropped, dict(rec.traces)
    finally:
        rec.capacity, rec.dropped = saved[0], saved[1]
        rec.traces.clear()
        rec.traces.update(saved[2])
        rec.buf.clear()
        rec.buf.extend(saved[3])


CALLS = st.lists(
    st.tuples(
        st.sampled_from(["user", "span-start", "span-end", "join"]),
        st.sampled_from(["e", "\u00e9v\u00e9nement"]),
        st.sampled_from([None, {"k": 1}]),
        st.sampled_from([None, (7, 0, "client"), (7, "ok")]),
        st.sampled_from([None, 0, 99]),
        st.sampled_from([None, "read", "hook"]),  # how: the bag read by the caller / the hook
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(b=baggages(), known=st.booleans(), calls=CALLS, full=st.booleans())
def test_compiled_record_is_the_reference(
    b: Baggage, known: bool, calls: list[tuple[Any, ...]], full: bool
) -> None:
    capacity = 1 if full else 65536  # full: the second event on is dropped and counted
    pure = _run((recorder.record_pure, recorder.on_join_pure), b, known, calls, capacity)
    native = _run((recorder.record, recorder.on_join), b, known, calls, capacity)
    assert native == pure


def test_events_of_a_simple_bag_are_recorded_in_c_and_chain() -> None:
    # the common case, spelled out: each event's parent is the one before it
    b = Baggage([H, F1, _atom(TASK), F2, _atom(1), _atom(2)])
    calls = [("user", "a", None, None, None, None)] * 3
    (out, items, dropped, _) = _run((recorder.record, recorder.on_join), b, True, calls, 65536)
    eids = [o[0] for o in out[:3]]
    assert [it[5] for it in items] == [(1, 2), (eids[0],), (eids[1],)]
    assert out[2][1] == (H, F1, _atom(TASK), F2, _atom(eids[2]))
    assert dropped == 0


def test_the_join_hook_records_a_join_of_several_parents_only() -> None:
    two = Baggage([H, F1, _atom(TASK), F2, _atom(1), _atom(2)])
    one = Baggage([H, F1, _atom(TASK), F2, _atom(1)])
    hook = [("join", "join", None, None, None, "hook")]
    for on in (recorder.on_join, recorder.on_join_pure):
        (_, items, _, _) = _run((recorder.record, on), two, True, hook, 65536)
        assert [(it[2], it[5]) for it in items] == [("join", (1, 2))]
        assert _run((recorder.record, on), one, True, hook, 65536)[1] == []
