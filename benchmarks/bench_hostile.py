"""Hostile inputs cost about what ordinary ones do: each parser on a hostile input, timed
against the same parser on an ordinary input of its kind.

Run with ``python benchmarks/bench_hostile.py``. The tests check the *work* these parsers do
on hostile input (values and characters read, bytes allocated, members kept) without a
clock; this measures the time. Variants and their ordinary floor are interleaved (the order
rotates every round); each figure is the median over rounds of a ``timeit`` run sized to take
about 20 ms.
"""

from __future__ import annotations

import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

try:
    from ctxplane.baggage import Baggage, atoms
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from ctxplane.baggage import Baggage, atoms
from ctxplane.wire import tracecontext, w3c
from ctxplane.wire.http import decode_header, encode_header
from ctxplane.wire.limits import DEFAULT_POLICY, reset_rejections

ROUNDS = 11
TARGET_SECONDS = 0.02
MB = 1 << 20
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TID, PID = TP[3:35], TP[36:52]


def _number_for(fn: Callable[[], object]) -> int:
    n, elapsed = timeit.Timer(fn).autorange()
    return max(1, int(n * TARGET_SECONDS / max(elapsed, 1e-9)))


def _w3c_inbound(values: list[str]) -> Callable[[], object]:
    def run() -> object:  # what the aiohttp patch does with an inbound W3C baggage header
        members = tracecontext.inbound_members(values, DEFAULT_POLICY)
        return tracecontext.inbound_ids(Baggage.empty(), TID, PID, 1, (), members)

    return run


def main() -> None:
    import logging

    logging.disable(logging.WARNING)  # the rejections' warnings are not what is measured
    small = Baggage.from_bytes(bytes.fromhex("02f801") + b"\x02\x00\x07")
    header = encode_header(small) or ""
    # inputs built once, outside the timed calls
    tiny_members = [",".join(f"m{i:04d}=1" for i in range(2000))]
    most_members = [",".join(f"member{i:02d}=value{i:02d}" for i in range(64))]  # W3C's 64
    long_tp = [TP + "-" + "a" * MB]
    many_ts = ["a=1"] * MB
    long_header = "A" * MB
    bomb = b"\x01\xaa\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01xyz"
    # name -> (hostile, ordinary)
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "W3C baggage: 16 KB, 2,000 tiny members vs 64 members": (
            _w3c_inbound(tiny_members),
            _w3c_inbound(most_members),
        ),
        "traceparent: a 1 MB value": (
            lambda: w3c.parse_traceparent(long_tp),
            lambda: w3c.parse_traceparent([TP]),
        ),
        "tracestate: 1 M values": (
            lambda: w3c.parse_tracestate(many_ts),
            lambda: w3c.parse_tracestate(["a=1,b=2"]),
        ),
        "ctxplane header: a 1 MB value": (
            lambda: decode_header(long_header),
            lambda: decode_header(header),
        ),
        "atoms: a length prefix of 2^63": (
            lambda: atoms.deserialize(bomb),
            lambda: atoms.deserialize(b"\x01\xaa\x01\xbb"),
        ),
    }
    names = list(pairs)
    numbers = {n: (_number_for(pairs[n][0]), _number_for(pairs[n][1])) for n in names}
    hostile: dict[str, list[float]] = {n: [] for n in names}
    ordinary: dict[str, list[float]] = {n: [] for n in names}
    for r in range(ROUNDS):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            (h, o), (hn, on) = pairs[n], numbers[n]
            hostile[n].append(timeit.Timer(h).timeit(hn) / hn)
            ordinary[n].append(timeit.Timer(o).timeit(on) / on)
            reset_rejections()
    print(f"ctxplane hostile-input benchmarks (Python {sys.version.split()[0]}; median of "
          f"{ROUNDS} interleaved timeit runs)\n")
    head = f"{'hostile input':<62} {'us':>9} {'ordinary us':>12} {'x':>7}"
    print(head)
    print("-" * len(head))
    for n in names:
        h = statistics.median(hostile[n]) * 1e6
        o = statistics.median(ordinary[n]) * 1e6
        print(f"{n:<62} {h:>9.1f} {o:>12.1f} {h / o:>7.1f}")


if __name__ == "__main__":
    main()
