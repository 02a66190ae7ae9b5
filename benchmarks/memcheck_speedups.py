"""Memory checks of the compiled accelerator (``ctxplane._speedups``).

Two modes:

* default: in this interpreter, ``--tasks`` tasks (1,000,000 by default) made and observed by
  create_task+await, gather and TaskGroup - half of them changing their baggage, so both the C
  join and the Python join run - then the task type's refcount, the live tasks of that type
  and the resident memory are compared with their values after a warm-up. A leak of one
  reference per task shows as a million.
* ``--valgrind``: builds a debug variant of the extension (``-O0 -g``) into a temporary
  directory and runs a smaller workload (tasks, the atom codec and the trace file's JSON
  lines, on good and malformed input) under ``valgrind --tool=memcheck`` with
  ``PYTHONMALLOC=malloc``; reports the invalid reads/writes, uses of uninitialised values
  and definitely lost blocks whose stack passes through the extension (CPython's own
  start-up allocations are not ours).

    python benchmarks/memcheck_speedups.py [--tasks 1000000]
    python benchmarks/memcheck_speedups.py --valgrind [--tasks 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def _child(i: int) -> int:
    if i % 2:
        from ctxplane.transit import context

        context.set_current(_FIVE)  # a changed frame: the join goes through Python
    return i


_FIVE: Any = None


async def _workload(n: int) -> None:
    per = max(1, n // 3)
    for i in range(per):
        await asyncio.create_task(_child(i))
    for _ in range(per // 100):
        await asyncio.gather(*(_child(i) for i in range(100)))
    for _ in range(per // 100):
        async with asyncio.TaskGroup() as tg:
            for i in range(100):
                tg.create_task(_child(i))


def _codec_workload(rounds: int) -> None:
    from ctxplane.baggage import atoms, lexvarint

    a = tuple(bytes([i, i]) for i in range(0, 40, 2))
    b = tuple(bytes([i, i]) for i in range(1, 41, 2))
    for _ in range(rounds):
        data = atoms.serialize(atoms.merge(a, b))
        atoms.deserialize(data)
        atoms.merge(a, b, a[:5], b[3:], (b"\xff",), (), a, b, a, b)
        for bad in (b"\x80", b"\x05ab", b"\xff\xff\xff\xff\xff\xff", b"\x01\x01\xff"):
            atoms.deserialize(bad)
            with contextlib.suppress(ValueError):
                atoms.deserialize(bad, strict=True)
        for v in (0, 300, 2**40, 2**64 - 1):
            lexvarint.decode_unsigned(lexvarint.encode_unsigned(v))
            lexvarint.decode_signed_reverse(lexvarint.encode_signed_reverse(-v // 3))
        with contextlib.suppress(ValueError):
            lexvarint.decode_signed(b"\xff")


class _LinesSink:
    """A sink that takes JSON lines (so the flush thread's C formatter builds them)."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, records: Any) -> None:
        self.count += len(records)

    def export_lines(self, text: str, count: int) -> None:
        self.count += count

    def shutdown(self) -> None:
        pass


def _lines_workload(rounds: int) -> None:
    # the trace file's lines in C (lines.c): events with odd strings and attributes of every
    # kind, a join of many parents, and shapes the C code refuses (the reference takes them)
    import ctxplane
    from ctxplane.tracing import api, recorder

    odd = 'q"uote \\ \n \u00e9 \U0001f600 \x01'
    sink = _LinesSink()
    api.start([sink], service="memcheck", interval=3600)
    try:
        for r in range(rounds):
            async def child(i: int) -> None:
                ctxplane.event(f"child {i}", n=i, s=odd, b=True)

            async def fan_out() -> None:
                with ctxplane.span(odd, **{odd: odd, "f": 1.5, "none": None, "l": [1, "a"]}):
                    await asyncio.gather(*(child(i) for i in range(20)))

            asyncio.run(fan_out())
            rec = recorder.recorder
            items = list(rec.buf)
            eu, *rest = items[0]
            for bad in ([(eu, *rest[:4], 2**64 + r, *rest[5:])], [list(items[0])], ["x"]):
                with contextlib.suppress(OverflowError, TypeError):
                    recorder._format_lines(bad, rec.traces, rec._gen, rec._eu_parts,
                                           recorder._json_str, recorder._attrs_text)  # fmt: skip
            recorder.flush()
    finally:
        api.stop()


def _record_workload(n: int, out: dict[str, int]) -> None:
    # events recorded in C (record.c): every reference it takes of its arguments and of the
    # values it makes is dropped once the buffer is flushed; the label's and attributes'
    # refcounts and the live baggage values show a leak of one per event as n
    import ctxplane
    from ctxplane import Baggage
    from ctxplane.tracing import api, recorder

    label = "memcheck-record-" + str(n)  # (a str of its own: nobody else holds it)
    attrs = {"k": 1}

    def measure(when: str) -> None:
        recorder.flush()
        gc.collect()
        out[f"record_label_refs_{when}"] = sys.getrefcount(label)
        out[f"record_attrs_refs_{when}"] = sys.getrefcount(attrs)
        out[f"record_live_baggage_{when}"] = sum(1 for o in gc.get_objects()
                                                 if type(o) is Baggage)

    api.start([_LinesSink()], service="memcheck", interval=3600)
    try:
        with ctxplane.span("root"):
            for _ in range(1000):
                recorder.record("user", label, attrs)
            measure("before")
            for i in range(n):
                recorder.record("user", label, attrs)
                if i % 10000 == 0:
                    recorder.flush()
            measure("after")
    finally:
        api.stop()


def run(n: int) -> dict[str, int]:
    """The workload in this interpreter; returns the figures before and after."""
    global _FIVE
    from bench_transit import FIVE
    from ctxplane import Baggage, speedups_active
    from ctxplane.patches import asyncio_
    from ctxplane.transit import context

    _FIVE = FIVE
    asyncio_.patch()
    out: dict[str, int] = {"compiled": int(speedups_active())}

    async def main() -> None:
        await _workload(3000)  # warm-up
        cls = type(asyncio.current_task())
        gc.collect()
        out["type_refs_before"] = sys.getrefcount(cls)
        out["live_before"] = sum(1 for o in gc.get_objects() if type(o) is cls)
        out["rss_kb_before"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await _workload(n)
        gc.collect()
        out["type_refs_after"] = sys.getrefcount(cls)
        out["live_after"] = sum(1 for o in gc.get_objects() if type(o) is cls)
        out["rss_kb_after"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with context.use(Baggage.empty()):
        asyncio.run(main())
    _codec_workload(1000 if n >= 100000 else 50)
    _lines_workload(200 if n >= 100000 else 5)
    _record_workload(n if n >= 100000 else 200, out)
    return out


def _build_debug(dest: str) -> str:
    env = {**os.environ, "CTXPLANE_DEBUG_BUILD": "1", "CTXPLANE_NO_EXTENSION": ""}
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", dest,
         "--build-temp", os.path.join(dest, "tmp"), "--force"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    path = os.path.join(dest, "ctxplane", "_speedups" + suffix)
    if not os.path.exists(path):
        raise RuntimeError("the debug build made no extension (no compiler?)")
    return path


def valgrind(n: int) -> int:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        so = _build_debug(tmp)
        cmd = [
            "valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
            "--num-callers=30", sys.executable, __file__, "--child", so,
            "--tasks", str(n),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONMALLOC": "malloc"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    print(proc.stdout.strip())
    log = os.environ.get("MEMCHECK_LOG")
    if log:
        with open(log, "w") as f:
            f.write(proc.stderr)
    records = re.split(r"\n==\d+== ?\n", proc.stderr)
    # frames of the extension: its sources (debug info) or its shared object
    ours = [r for r in records
            if re.search(r"\((codec|lines|record|task|module)\.c:\d+\)|_speedups\.", r)]
    errors = [r for r in ours if re.search(r"Invalid (read|write|free)|uninitialised", r)]
    lost = [r for r in ours if "definitely lost" in r]
    summary = re.search(r"ERROR SUMMARY: .*", proc.stderr)
    print(f"valgrind memcheck: {summary.group(0) if summary else '(no summary)'}")
    kinds: dict[str, int] = {}
    for r in records:
        m = re.search(r"== (Invalid \w+|[^\n]*uninitialised[^\n]*|Conditional jump[^\n]*|"
                      r"[^\n]*(?:definitely|possibly|indirectly) lost)", r)  # fmt: skip
        if m:
            kind = re.sub(r"[\d,]+ bytes in [\d,]+ blocks", "N bytes", m.group(1))
            kinds[kind] = kinds.get(kind, 0) + 1
    print("all records by kind (CPython's own included):", kinds)
    print(f"records through the extension: {len(errors)} errors, {len(lost)} definitely lost")
    for r in errors + lost:
        print(r)
    return 1 if errors or lost or proc.returncode else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--valgrind", action="store_true")
    parser.add_argument("--child", metavar="SO")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.child:  # under valgrind: load the debug build as ctxplane._speedups
        import importlib.util

        spec = importlib.util.spec_from_file_location("ctxplane._speedups", args.child)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["ctxplane._speedups"] = module
        spec.loader.exec_module(module)
        print(run(args.tasks))
        return
    if args.valgrind:
        sys.exit(valgrind(args.tasks or 3000))
    n = args.tasks or 1_000_000
    out = run(n)
    print(out)
    leak = out["type_refs_after"] - out["type_refs_before"]
    live = out["live_after"] - out["live_before"]
    rss = out["rss_kb_after"] - out["rss_kb_before"]
    print(f"{n} tasks: type refcount {leak:+d}, live tasks {live:+d}, peak RSS {rss:+d} kB")
    rec = {k: out[f"record_{k}_after"] - out[f"record_{k}_before"]
           for k in ("label_refs", "attrs_refs", "live_baggage")}
    print(f"{n} events: label refcount {rec['label_refs']:+d}, attributes refcount "
          f"{rec['attrs_refs']:+d}, live baggage values {rec['live_baggage']:+d}")
    if not out["compiled"]:
        print("note: the compiled module is not in use: this checked the pure-Python path")
    sys.exit(1 if abs(leak) > 1 or abs(live) > 1 or any(abs(v) > 1 for v in rec.values())
             else 0)


if __name__ == "__main__":
    main()
