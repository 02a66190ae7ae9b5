"""The X-Trace bag: where an event's parents travel, byte-compatible with tracingplane-java.

``bag XTraceBaggage { fixed64 taskId = 1; set<fixed64> parentEventIds = 2; }`` at level-0
index 7 (:data:`XTRACE_INDEX`). The task id is the low 64 bits of the W3C trace id; the parent
set holds the ids of the events that happened immediately before the code that reads it.
Joining two baggages unions the sets (an atom merge), so the first event after a join has
every joined branch's last event as a parent.

The recorder reads and writes this bag at the atom level (:func:`read`, :func:`replace`): the
typed bag is used only for segments that are not in the simple form this module writes (a
foreign writer's extra fields, a merge that repeated the header...).
"""

from __future__ import annotations

from ..baggage import Baggage, bdl

__all__ = ["XTRACE_INDEX", "XTraceBaggage", "read", "replace", "task_of_trace", "with_task"]

XTRACE_INDEX = 7
"""The level-0 bag index of the X-Trace bag (as in the Tracing Plane's X-Trace)."""

_SOURCE = """
package brown.xtrace;

bag XTraceBaggage {
    fixed64 taskId = 1;
    set<fixed64> parentEventIds = 2;
}
"""

XTraceBaggage: type = bdl.compile(_SOURCE, {"XTraceBaggage": XTRACE_INDEX}).XTraceBaggage
"""The typed bag (compiled from the BDL source above; fields read as Java signed longs)."""

_MASK = (1 << 64) - 1
HEADER: bytes = XTraceBaggage._bag_header  # type: ignore[attr-defined]
_F1 = b"\xf0\x01"
_F2 = b"\xf0\x02"
_F8 = b"\xf8"


def task_atom(task: int) -> bytes:
    """The data atom of a fixed64 value (the task id, or one parent id)."""
    return b"\x00" + (task & _MASK).to_bytes(8, "big")


def _is_level0_header(a: bytes) -> bool:
    return bool(a) and a[0] & 0xFA == 0xF8


def segment(b: Baggage) -> tuple[int, int] | None:
    """Where the bag's atoms are in ``b``: ``(start, end)`` of its level-0 segment, or None."""
    atoms = b._atoms  # (the attribute behind Baggage.atoms: this runs at every event)
    if HEADER not in atoms:
        return None
    start = atoms.index(HEADER)
    end = start + 1
    n = len(atoms)
    # every level-0 header is >= b"\xf8" and the bag's own atoms (its field headers, fixed64
    # data atoms) are below it: a C comparison per atom, the bit test only for candidates
    while end < n:
        a = atoms[end]
        if a >= _F8 and _is_level0_header(a):
            break
        end += 1
    return start, end


def read(b: Baggage) -> tuple[int, tuple[int, ...], tuple[int, int]] | None:
    """``(task id, parent ids, segment)`` of the X-Trace bag in ``b`` (ids unsigned), or None
    when ``b`` holds none. The segment is ``(start, end)`` for :func:`replace`; ``(-1, -1)``
    when the bag is not in the simple form (it is then rewritten whole)."""
    seg = segment(b)
    if seg is None:
        return None
    start, end = seg
    atoms = b._atoms
    # the simple form: F1, one task atom, then F2 and parent atoms (any number), or nothing
    n = end - start
    if (
        n >= 3
        and atoms[start + 1] == _F1
        and (n == 3 or (n >= 5 and atoms[start + 3] == _F2))
        and HEADER not in atoms[end:]
    ):
        t = atoms[start + 2]
        parents = atoms[start + 4 : end]
        if len(t) == 9 and t[0] == 0:
            ids = []
            for p in parents:
                if len(p) != 9 or p[0] != 0:
                    break
                ids.append(int.from_bytes(p[1:], "big"))
            else:
                return int.from_bytes(t[1:], "big"), tuple(ids), seg
    bag = b.get(XTraceBaggage)
    if bag is None:
        return None
    task = bag.taskId
    return (
        (task or 0) & _MASK,
        tuple(sorted(p & _MASK for p in bag.parentEventIds)),
        (-1, -1),
    )


def replace(b: Baggage, seg: tuple[int, int], task: int, event: int) -> Baggage:
    """``b`` with its X-Trace bag set to ``{taskId: task, parentEventIds: {event}}``; ``seg``
    is what :func:`read` returned for ``b``."""
    content = (HEADER, _F1, task_atom(task), _F2, task_atom(event))
    start, end = seg
    if start < 0:
        return b.with_bag(XTraceBaggage(taskId=task, parentEventIds={event}))
    atoms = b.atoms
    return Baggage(atoms[:start] + content + atoms[end:])


def with_task(b: Baggage, task: int) -> Baggage:
    """``b`` with a new X-Trace bag for ``task`` and no parents yet (a trace starts, or
    arrives without one): the reference's encoding of ``{taskId: task}``."""
    if HEADER in b.atoms:
        return b.with_bag(XTraceBaggage(taskId=task))
    return b._insert_segment((HEADER, _F1, task_atom(task)))


def without(b: Baggage) -> Baggage:
    """``b`` without the X-Trace bag (an unsampled request must carry none)."""
    if HEADER not in b.atoms:
        return b
    return b.with_bag(XTraceBaggage())


def task_of_trace(trace_id: str) -> int:
    """The X-Trace task id of a W3C trace id (32 hex digits): its low 64 bits."""
    return int(trace_id[16:], 16)
