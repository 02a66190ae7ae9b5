"""Micro-benchmarks of the baggage core, each against a floor.

Run with ``python benchmarks/bench_baggage.py``. The floor is ``sorted(set(a) | set(b))`` on
two sorted 20-atom lists: the cheapest way Python offers to "merge" two atom lists, timed
right next to every variant so that the ratio is robust to machine noise. Variants and the
floor are interleaved (the order rotates every round) and each figure is the median over
rounds of a ``timeit`` run sized to take about 20 ms.
"""

from __future__ import annotations

import random
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

try:
    from ctxplane.baggage import Baggage, atoms, bdl
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from ctxplane.baggage import Baggage, atoms, bdl

ROUNDS = 15
TARGET_SECONDS = 0.02
XTRACE_BB = """
package brown.xtrace;
bag XTraceBaggage {
    fixed64 taskId = 1;
    set<fixed64> parentEventIds = 2;
}
"""


def _number_for(fn: Callable[[], object]) -> int:
    """How many calls make one timeit run of about TARGET_SECONDS."""
    n, elapsed = timeit.Timer(fn).autorange()
    return max(1, int(n * TARGET_SECONDS / max(elapsed, 1e-9)))


def main() -> None:
    rng = random.Random(42)
    xtrace = bdl.compile(XTRACE_BB, {"XTraceBaggage": 7}).XTraceBaggage

    # two sorted 20-atom lists of data atoms, half of them shared
    shared = [b"\x00" + rng.randbytes(8) for _ in range(10)]
    a = sorted(shared + [b"\x00" + rng.randbytes(8) for _ in range(10)])
    b = sorted(shared + [b"\x00" + rng.randbytes(8) for _ in range(10)])
    assert len(set(a)) == len(set(b)) == 20

    task = rng.getrandbits(63)
    parents_a = frozenset(rng.getrandbits(63) for _ in range(10))
    parents_b = frozenset(rng.getrandbits(63) for _ in range(10))
    bag_a = xtrace(taskId=task, parentEventIds=parents_a)
    bag_b = xtrace(taskId=task, parentEventIds=parents_b)
    ctx = Baggage.of(bag_a)
    ctx_same = Baggage.from_bytes(ctx.to_bytes())  # an equal value, another object
    assert ctx_same == ctx and ctx_same is not ctx

    def floor() -> object:
        return sorted(set(a) | set(b))

    def merge() -> object:
        return atoms.merge(a, b)

    def serialize_parse() -> object:
        # a fresh bag each time (no cached atoms), then a fresh parse of its bytes
        data = Baggage.of(xtrace(taskId=task, parentEventIds=parents_a)).to_bytes()
        return Baggage.from_bytes(data).get(xtrace)

    def typed_join() -> object:
        return bag_a.join(bag_b)

    def join_same_object() -> object:
        return ctx.join(ctx)

    def join_equal_value() -> object:
        return ctx.join(ctx_same)

    # sanity: the variants compute what they claim
    assert merge() == tuple(floor())
    assert serialize_parse() == bag_a
    assert typed_join().parentEventIds == parents_a | parents_b
    assert join_same_object() is ctx and join_equal_value() is ctx

    variants: list[tuple[str, Callable[[], object]]] = [
        ("merge of two sorted 20-atom lists", merge),
        ("XTrace 10 parents: Baggage.of().to_bytes() + from_bytes().get()", serialize_parse),
        ("XTrace 10 parents: typed join of two bags", typed_join),
        ("Baggage.join of identical values (same object)", join_same_object),
        ("Baggage.join of identical values (equal, distinct)", join_equal_value),
    ]
    numbers = {name: _number_for(fn) for name, fn in variants}
    floor_number = _number_for(floor)
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    floors: dict[str, list[float]] = {name: [] for name, _ in variants}
    for r in range(ROUNDS):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for name, fn in order:
            times[name].append(timeit.Timer(fn).timeit(numbers[name]) / numbers[name])
            floors[name].append(timeit.Timer(floor).timeit(floor_number) / floor_number)

    print(f"ctxplane baggage benchmarks (Python {sys.version.split()[0]}; median of {ROUNDS} "
          f"interleaved timeit runs)")
    print("floor = sorted(set(a) | set(b)) on the same two sorted 20-atom lists, timed "
          "alongside each variant\n")
    header = f"{'benchmark':<66} {'us/op':>9} {'floor us':>9} {'x floor':>8}"
    print(header)
    print("-" * len(header))
    for name, _ in variants:
        t = statistics.median(times[name]) * 1e6
        f = statistics.median(floors[name]) * 1e6
        print(f"{name:<66} {t:>9.3f} {f:>9.3f} {t / f:>8.2f}")


if __name__ == "__main__":
    main()
