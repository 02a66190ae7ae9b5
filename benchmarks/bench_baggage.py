"""Micro-benchmarks of the baggage core, each against a floor.

Run with ``python benchmarks/bench_baggage.py``. The floor is ``sorted(set(a) | set(b))`` on
two sorted 20-atom lists: the cheapest way Python offers to "merge" two atom lists, timed
right next to every variant so that the ratio is robust to machine noise. Variants and the
floor are interleaved (the order rotates every round) and each figure is the median over
rounds of a ``timeit`` run sized to take about 20 ms.

A second table compares the pure-Python codec (the reference, ``atoms.PURE``) with the compiled
one (``ctxplane._speedups``) on the same inputs, interleaved the same way: the atom merge, the
serialize + parse of the XTrace bag's atoms, and the whole typed round trip (the module's
functions swapped in turn).
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
    _pure_vs_compiled(a, b, Baggage.of(bag_a).atoms, serialize_parse)


def _pure_vs_compiled(
    a: list[bytes], b: list[bytes], x_atoms: tuple[bytes, ...], round_trip: Callable[[], object]
) -> None:
    from ctxplane import _native

    c = _native.compiled()
    if c is None:
        print("\n(ctxplane._speedups is not built: no pure vs compiled comparison)")
        return
    pure = atoms.PURE

    def swapped(impl: dict[str, Callable[..., object]]) -> Callable[[], object]:
        def run() -> object:
            saved = {k: getattr(atoms, k) for k in impl}
            for k, fn in impl.items():
                setattr(atoms, k, fn)
            try:
                return round_trip()
            finally:
                for k, fn in saved.items():
                    setattr(atoms, k, fn)

        return run

    compiled = {k: getattr(c, k) for k in pure}
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("merge of two sorted 20-atom lists",
         lambda: pure["merge"](a, b), lambda: c.merge(a, b)),
        ("XTrace 10 parents: serialize + parse of its atoms",
         lambda: pure["deserialize"](pure["serialize"](x_atoms)),
         lambda: c.deserialize(c.serialize(x_atoms))),
        ("XTrace 10 parents: typed round trip (as above)",
         swapped(pure), swapped(compiled)),
    ]  # fmt: skip
    for _, p, q in cases:
        assert p() == q()
    runs = {(name, k): fn for name, p, q in cases for k, fn in (("pure", p), ("c", q))}
    numbers = {key: _number_for(fn) for key, fn in runs.items()}
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    keys = list(runs)
    for r in range(ROUNDS):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            times[key].append(timeit.Timer(runs[key]).timeit(numbers[key]) / numbers[key])
    print("\npure Python (the reference) vs compiled (ctxplane._speedups), same run\n")
    header = f"{'benchmark':<66} {'pure us':>9} {'C us':>9} {'speed-up':>8}"
    print(header)
    print("-" * len(header))
    for name, _, _ in cases:
        p_us = statistics.median(times[(name, "pure")]) * 1e6
        c_us = statistics.median(times[(name, "c")]) * 1e6
        print(f"{name:<66} {p_us:>9.3f} {c_us:>9.3f} {p_us / c_us:>7.1f}x")


if __name__ == "__main__":
    main()
