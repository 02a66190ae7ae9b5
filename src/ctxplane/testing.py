"""pytest helpers for code that uses ctxplane: traces and baggage recorded in memory, and
assertions on the shape of the event DAG.

Installed as a pytest plugin (entry point ``pytest11``: ``ctxplane``), so the fixtures are
available in any test suite once ctxplane is installed:

``ctxplane_trace``
    turns tracing on for the test with an in-memory sink (every new trace sampled) and yields
    a :class:`TraceRecorder`; tracing is restored as it was afterwards.
``ctxplane_baggage``
    a :class:`BaggageLog`: call ``ctxplane_baggage.capture("name")`` where the baggage
    matters (a request handler, a worker) and assert on ``ctxplane_baggage["name"]``.

.. code-block:: python

    def test_gather_joins(ctxplane_trace):
        asyncio.run(main())                        # children call ctxplane.event("child", i=i)
        t = ctxplane_trace.trace()
        join = t.one(type="join")
        t.assert_parents(join, *t.find(label="child"), t.one(label="before"))

Nothing here imports ``ctxplane.tracing`` until a fixture is used.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .baggage import Bag, Baggage
    from .tracing.sinks import MemorySink

__all__ = ["BaggageLog", "Trace", "TraceRecorder", "ctxplane_baggage", "ctxplane_trace"]

Record = dict[str, Any]


class Trace:
    """Recorded events (dicts of ``docs/trace-format.md``) with DAG queries and assertions."""

    def __init__(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.records: list[Record] = [dict(r) for r in records]
        self.by_id: dict[str, Record] = {r["id"]: r for r in self.records}

    def __len__(self) -> int:
        return len(self.records)

    def traces(self) -> set[str]:
        """The trace ids present."""
        return {r["trace"] for r in self.records}

    def of_trace(self, trace: str) -> Trace:
        """The events of one trace."""
        return Trace([r for r in self.records if r["trace"] == trace])

    def find(
        self, label: str | None = None, type: str | None = None, **attrs: Any
    ) -> list[Record]:
        """Events with this label and/or type whose ``attrs`` include ``attrs``."""
        out = []
        for r in self.records:
            if label is not None and r["label"] != label:
                continue
            if type is not None and r["type"] != type:
                continue
            a = r.get("attrs") or {}
            if any(a.get(k) != v for k, v in attrs.items()):
                continue
            out.append(r)
        return out

    def one(self, label: str | None = None, type: str | None = None, **attrs: Any) -> Record:
        """The one event matching (see :meth:`find`); fails the test otherwise."""
        found = self.find(label, type, **attrs)
        assert len(found) == 1, f"{len(found)} events match label={label!r} type={type!r} " \
            f"{attrs}: {[(r['type'], r['label']) for r in found]}"
        return found[0]

    def parents(self, event: Mapping[str, Any]) -> list[Record]:
        """The recorded parent events of ``event`` (parents recorded elsewhere are left out)."""
        return [self.by_id[p] for p in event["parents"] if p in self.by_id]

    def ancestors(self, event: Mapping[str, Any]) -> set[str]:
        """Ids of every event that happened before ``event`` (transitively)."""
        seen: set[str] = set()
        stack = list(event["parents"])
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            r = self.by_id.get(p)
            if r is not None:
                stack.extend(r["parents"])
        return seen

    def assert_parents(self, event: Mapping[str, Any], *parents: Mapping[str, Any]) -> None:
        """``event``'s parent set is exactly the ids of ``parents``."""
        want = sorted(p["id"] for p in parents)
        got = sorted(event["parents"])
        assert got == want, (
            f"{event['type']} {event['label']!r} has parents "
            f"{[self._name(p) for p in got]}, expected {[self._name(p) for p in want]}"
        )

    def assert_before(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
        """``a`` happened before ``b``: a path of parent edges leads from ``b`` back to ``a``."""
        assert a["id"] in self.ancestors(b), f"{self._name(a['id'])} is not before " \
            f"{self._name(b['id'])}"

    def assert_concurrent(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
        """Neither of ``a`` and ``b`` happened before the other."""
        assert a["id"] not in self.ancestors(b) and b["id"] not in self.ancestors(a)

    def spans(self) -> dict[str, tuple[Record, Record | None]]:
        """Span id -> (its span-start event, its span-end event or None if still open)."""
        out: dict[str, tuple[Record, Record | None]] = {}
        for r in self.records:
            if r["type"] == "span-start":
                out[r["span"]] = (r, out.get(r["span"], (r, None))[1])
        for r in self.records:
            if r["type"] == "span-end" and r["span"] in out:
                out[r["span"]] = (out[r["span"]][0], r)
        return out

    def span(self, name: str) -> tuple[Record, Record | None]:
        """The one span called ``name``: (start, end)."""
        start = self.one(name, "span-start")
        return start, self.spans()[start["span"]][1]

    def assert_eu_sequences(self) -> None:
        """Every execution unit numbers its events 0, 1, 2... without gaps."""
        by_eu: dict[str, list[int]] = {}
        for r in self.records:
            by_eu.setdefault(r["eu"], []).append(r["seq"])
        for eu, seqs in by_eu.items():
            assert sorted(seqs) == list(range(len(seqs))), (eu, sorted(seqs))

    def _name(self, eid: str) -> str:
        r = self.by_id.get(eid)
        return f"{eid} (not recorded)" if r is None else f"{r['type']} {r['label']!r}"


class TraceRecorder:
    """What ``ctxplane_trace`` yields: the in-memory sink of the running test."""

    def __init__(self, sink: MemorySink) -> None:
        self.sink = sink

    def trace(self) -> Trace:
        """Flush and return every event recorded so far."""
        from .tracing import recorder

        recorder.flush()
        return Trace(self.sink.records)

    def clear(self) -> None:
        """Flush and forget what was recorded so far."""
        from .tracing import recorder

        recorder.flush()
        self.sink.clear()


class BaggageLog:
    """Baggage captured by name where the test wants to look at it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, list[Baggage]] = {}

    def capture(self, name: str) -> Baggage:
        """Keep the active baggage under ``name`` (call it in a handler, a task, a worker)."""
        from .transit import current

        b = current()
        with self._lock:
            self._seen.setdefault(name, []).append(b)
        return b

    def __getitem__(self, name: str) -> Baggage:
        """The last baggage captured under ``name``."""
        with self._lock:
            seen = self._seen.get(name)
        assert seen, f"no baggage was captured as {name!r}"
        return seen[-1]

    def all(self, name: str) -> list[Baggage]:
        """Every baggage captured under ``name``, in order."""
        with self._lock:
            return list(self._seen.get(name, ()))

    def bag(self, name: str, cls: type[Bag]) -> Bag | None:
        """The bag of class ``cls`` in the last baggage captured under ``name``."""
        return self[name].get(cls)


@pytest.fixture
def ctxplane_trace() -> Iterator[TraceRecorder]:
    """Tracing on for one test, into memory, every new trace sampled."""
    from .tracing import api, recorder
    from .tracing.sinks import MemorySink

    rec = recorder.recorder
    was_on = api.is_on()
    old = (list(rec.sinks), api.sampler(), rec.resource)
    sink = MemorySink()
    api.start([sink], sample="always", service="test")
    try:
        yield TraceRecorder(sink)
    finally:
        api.stop()
        if was_on:
            api.start(old[0], sample=old[1], service=old[2].name, version=old[2].version,
                      namespace=old[2].namespace)


@pytest.fixture
def ctxplane_baggage() -> BaggageLog:
    """A fresh :class:`BaggageLog`."""
    return BaggageLog()
