"""Per-call cost of ctxplane's gRPC patch, against bare grpc and OpenTelemetry's instrumentation.

Unary-unary calls over 127.0.0.1, client and server in one process (so both sides' costs
count), sync ``grpc`` and ``grpc.aio``. Variants, each in its own long-lived subprocess (the
patches and instrumentations are process-global):

* ``bare``       - no instrumentation; the handler echoes the request;
* ``bare+md``    - no instrumentation, but the client sends the same 10-field baggage bytes as
  explicit metadata: what carrying those bytes in gRPC metadata costs by itself;
* ``ctx-1way``   - ctxplane patched; the caller has a 10-field baggage, active in the handler
  (which, like bare's, only echoes; outside the timed loop a check call verifies it arrived).
  Nothing comes back: the handler did not change it;
* ``ctx-2way``   - the same, but the handler switches to a changed baggage (the 10 fields plus
  one more set element, a value made once at start), so a changed baggage comes back in
  trailing metadata and is joined into the caller every call: the transport cost both ways
  (the caller resets to the 10-field baggage before each call);
* ``ctx-2way-upd`` - as ``ctx-2way`` but the handler makes the change itself each call
  (``update_bag``): adds the baggage core's cost of rewriting a bag to the transport's, and
  the returned value is a new object every call (no encoding cache);
* ``otel``       - ``opentelemetry-instrumentation-grpc`` (client and server instrumentors),
  a ``TracerProvider`` with no span processor/exporter (spans are created, ended, dropped).

Rounds are interleaved (every variant once per round, one at a time, the others idle) and
the median of the rounds is reported, as calls/s and as cost per call relative to bare, in
wall time and in the process's CPU time per call (all threads: client, server, grpc core),
which is steadier than wall time on a shared machine.
Targets: ctxplane <= 1.05x bare per call, and its added cost below OpenTelemetry's.

Usage: ``python benchmarks/bench_grpc.py [--rounds N] [--calls N]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("bare", "bare+md", "ctx-1way", "ctx-2way", "ctx-2way-upd", "otel")
FLAVOURS = ("sync", "aio")

# -- the child: one variant, serving and calling in one process ------------------------------

CHILD = r'''
import asyncio, json, sys, time
from concurrent import futures

variant, flavour = sys.argv[1], sys.argv[2]

if variant.startswith("ctx"):
    from ctxplane.patches import grpc_
    grpc_.patch()
elif variant == "otel":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())  # no span processor: nothing exported
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient, GrpcAioInstrumentorServer,
        GrpcInstrumentorClient, GrpcInstrumentorServer,
    )
    if flavour == "sync":
        GrpcInstrumentorClient().instrument(); GrpcInstrumentorServer().instrument()
    else:
        GrpcAioInstrumentorClient().instrument(); GrpcAioInstrumentorServer().instrument()

import grpc, grpc.aio
from ctxplane.baggage import BOOL, DOUBLE, INT32, INT64, STRING, Bag, Baggage, field, set_of
from ctxplane.transit import context


class Bench(Bag, index=252):
    tenant = field(1, STRING)
    user = field(2, STRING)
    request_id = field(3, STRING)
    region = field(4, STRING)
    route = field(5, STRING)
    priority = field(6, INT32)
    deadline_ms = field(7, INT64)
    sampled = field(8, BOOL)
    weight = field(9, DOUBLE)
    tags = field(10, set_of(STRING))


BASE = Baggage.of(Bench(
    tenant="acme", user="user-4711", request_id="0af7651916cd43dd8448eb211c80319c",
    region="eu-west-1", route="/checkout", priority=3, deadline_ms=1712345678901,
    sampled=True, weight=0.25, tags=frozenset({"canary", "mobile"}),
))

TWO_WAY = variant.startswith("ctx-2way")
MD = (("ctxplane-baggage-bin", BASE.to_bytes()),) if variant == "bare+md" else None
BACK = BASE.with_bag(BASE.get(Bench).replace(tags=frozenset({"canary", "mobile", "served"})))


def work(request):
    if request == b"check":  # outside the timed loop: did the baggage arrive?
        bag = context.get_bag(Bench)
        assert bag is not None and bag.tenant == "acme", "baggage did not arrive"
    if variant == "ctx-2way":
        context.set_current(BACK)
    elif variant == "ctx-2way-upd":
        bag = context.get_bag(Bench)
        context.update_bag(Bench, tags=bag.tags | {"served"})


def handler(request, ctx):
    work(request)
    return request


async def ahandler(request, ctx):
    work(request)
    return request


def generic(fn):
    return grpc.method_handlers_generic_handler(
        "b.S", {"U": grpc.unary_unary_rpc_method_handler(fn)})


def check_round_trip(response=None):
    if variant.startswith("ctx"):
        assert response == b"check"
    if TWO_WAY:
        assert "served" in context.get_bag(Bench).tags, "baggage did not come back"


def run_sync(n_calls):
    server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[generic(handler)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    m = ch.unary_unary("/b.S/U")
    use = variant.startswith("ctx")

    def measure(n):
        set_current = context.set_current
        t, c = time.perf_counter(), time.process_time()
        if use:
            for _ in range(n):
                set_current(BASE)
                m(b"x")
        else:
            for _ in range(n):
                m(b"x", metadata=MD)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        check_round_trip(m(b"check") if use else None)
        return [n / dt, dc / n]

    measure(300)
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(measure(n_calls)), flush=True)
    ch.close(); server.stop(None)


async def run_aio(n_calls):
    server = grpc.aio.server(handlers=[generic(ahandler)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    m = ch.unary_unary("/b.S/U")
    use = variant.startswith("ctx")

    async def measure(n):
        set_current = context.set_current
        t, c = time.perf_counter(), time.process_time()
        if use:
            for _ in range(n):
                set_current(BASE)
                await m(b"x")
        else:
            for _ in range(n):
                await m(b"x", metadata=MD)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        check_round_trip((await m(b"check")) if use else None)
        return [n / dt, dc / n]

    await measure(300)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        print(json.dumps(await measure(n_calls)), flush=True)
    await ch.close(); await server.stop(None)


n = int(sys.argv[3])
if flavour == "sync":
    run_sync(n)
else:
    asyncio.run(run_aio(n))
'''


class Child:
    """One variant in its own process; ``measure()`` runs one round there."""

    def __init__(self, variant: str, flavour: str, calls: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
        env["GRPC_VERBOSITY"] = "ERROR"
        self.name = f"{flavour}/{variant}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, variant, flavour, str(calls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._expect("ready")

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"{self.name} died:\n{err[-3000:]}")
        return line.strip()

    def _expect(self, word: str) -> None:
        line = self._readline()
        if line != word:
            raise RuntimeError(f"{self.name}: expected {word!r}, got {line!r}")

    def measure(self) -> tuple[float, float]:
        """One round: (calls per second, CPU seconds per call)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        rate, cpu = json.loads(self._readline())
        return float(rate), float(cpu)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and variant")
    args = parser.parse_args()

    t0 = time.perf_counter()
    children = {
        (flavour, variant): Child(variant, flavour, args.calls)
        for flavour in FLAVOURS
        for variant in VARIANTS
    }
    results: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in children}
    try:
        for r in range(args.rounds):
            order = list(children)
            if r % 2:
                order.reverse()  # no variant always right after another
            for key in order:
                results[key].append(children[key].measure())
    finally:
        for child in children.values():
            child.close()

    def wall_us(key: tuple[str, str]) -> float:
        return 1e6 / statistics.median(rate for rate, _ in results[key])

    def cpu_us(key: tuple[str, str]) -> float:
        return 1e6 * statistics.median(cpu for _, cpu in results[key])

    print(
        f"gRPC unary-unary over 127.0.0.1, client+server in one process; "
        f"{args.rounds} interleaved rounds x {args.calls} calls, median"
    )
    print(
        f"{'':6} {'variant':12} {'calls/s':>8} {'wall us':>8} {'x bare':>7} {'+us':>7}"
        f" {'cpu us':>8} {'x bare':>7} {'+us':>7}"
    )
    for flavour in FLAVOURS:
        bare = (flavour, "bare")
        for variant in VARIANTS:
            key = (flavour, variant)
            w, c = wall_us(key), cpu_us(key)
            print(
                f"{flavour:6} {variant:12} {1e6 / w:8.0f} {w:8.1f} {w / wall_us(bare):7.3f}"
                f" {w - wall_us(bare):+7.1f} {c:8.1f} {c / cpu_us(bare):7.3f}"
                f" {c - cpu_us(bare):+7.1f}"
            )
        otel = (flavour, "otel")
        for variant in VARIANTS[2:-1]:
            key = (flavour, variant)
            shares = [
                (f(key) - f(bare)) / (f(otel) - f(bare)) if f(otel) > f(bare) else float("nan")
                for f in (wall_us, cpu_us)
            ]
            print(
                f"{flavour:6} {variant:12} added cost / OpenTelemetry's added cost:"
                f" wall {shares[0]:.2f}, cpu {shares[1]:.2f}"
            )
    spread = {
        f"{f}/{v}": round((max(r for r, _ in rs) - min(r for r, _ in rs))
                          / statistics.median(r for r, _ in rs), 3)
        for (f, v), rs in results.items()
    }
    print("wall-time spread (max-min)/median:", json.dumps(spread))
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
