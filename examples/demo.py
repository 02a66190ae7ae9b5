"""ctxplane demo, in two parts.

1. One process: a counter and a set updated in gathered tasks, threads and a process pool,
   read by the parent after its awaits.
2. Two services: starts ``server.py`` (aiohttp, 127.0.0.1, free port) as a subprocess, runs
   ``client.py`` against it, and shows what came back from the server; then stops the server.

Run it from anywhere with ``ctxplane-run python examples/demo.py``. Without ``ctxplane-run`` it
runs too, but nothing joins back: the output says so. The app code has no ctxplane calls beyond
declaring and using its bag (``visits.py``).

Under ``ctxplane-run`` the demo is traced: every process of it (this one, the process-pool
worker, the server) appends its events to one trace file, ``ctxplane-run -t PATH``'s or else
``ctxplane-demo-trace.jsonl`` in the working directory; the last line names it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import sys
import threading
from pathlib import Path

import client
from visits import Visits

import ctxplane

HERE = Path(__file__).resolve().parent
DEADLINE = 30.0  # seconds, for each part
NOT_ACTIVE = "ctxplane is not active (run it under ctxplane-run)"


def record(name: str) -> None:
    """Count one unit of work and add its name."""
    Visits.increment("count")
    Visits.add("where", name)
    ctxplane.event("visit", name=name)  # an event of the trace (nothing when not traced)


async def handler(i: int) -> None:
    record(f"task-{i}")
    await asyncio.sleep(0.001)
    await asyncio.to_thread(record, f"thread-of-task-{i}")


def in_process(name: str) -> str:
    record(name)
    return name


async def one_process() -> None:
    """Part 1: tasks, threads and a process pool, all joined back into this task."""
    record("main")
    await asyncio.gather(*(handler(i) for i in range(3)))
    t = threading.Thread(target=record, args=("plain-thread",))
    t.start()
    t.join()
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        await loop.run_in_executor(pool, in_process, "process")
    bag = Visits.current()
    print("== one process: gathered tasks, threads, a process pool ==")
    print(f"count={int(bag.count)} (expected 9)")
    print("where=" + ", ".join(sorted(bag.where)))
    print(f"baggage: {len(ctxplane.serialize())} bytes")
    if not ctxplane.is_active():
        print(f"nothing joined back: {NOT_ACTIVE}")


async def stop(server: asyncio.subprocess.Process) -> None:
    """Terminate the server; kill it if it has not exited after 5 s."""
    if server.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            server.terminate()
        try:
            await asyncio.wait_for(server.wait(), 5)
        except TimeoutError:
            server.kill()
            await server.wait()


async def two_services() -> None:
    """Part 2: start server.py, run the client against it, stop the server whatever happens."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "server.py"),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "CTXPLANE_SERVICE_NAME": "demo-server"},
    )
    try:
        assert server.stdout is not None
        line = await server.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"server.py did not print its port (got {line!r})")
        port = int(line)
        print(f"== two services: client.py calls server.py on 127.0.0.1:{port} ==")
        bag = await client.main(port)
    finally:
        await stop(server)
    from_server = ", ".join(sorted(w for w in bag.where if w.startswith("server:")))
    if from_server:
        print(f"came back from the server: count +{int(bag.count) - 1}, where += {from_server}")
    else:
        reason = "" if ctxplane.is_active() else f": {NOT_ACTIVE}"
        print(f"nothing came back from the server{reason}")


def start_trace() -> Path | None:
    """Under ctxplane-run: the trace file of this run (``-t PATH``'s, else a fresh
    ``ctxplane-demo-trace.jsonl`` here, which the server and the pool worker inherit)."""
    if not ctxplane.is_active():
        return None
    from ctxplane import tracing

    path = os.environ.get("CTXPLANE_TRACE_FILE", "")
    if not path or not tracing.is_on():
        path = str(Path.cwd() / "ctxplane-demo-trace.jsonl")
        Path(path).unlink(missing_ok=True)
        os.environ["CTXPLANE_TRACE_FILE"] = path
        tracing.start([tracing.FileSink(path)], service="demo")
    return Path(path)


def trace_summary(path: Path) -> str:
    """What the trace file holds, once every process has exited."""
    from ctxplane import tracing

    tracing.flush()
    lines = [line for line in path.read_text().splitlines() if line]
    pids = {line.split('"pid":', 1)[1].split(",", 1)[0] for line in lines if '"pid":' in line}
    return f"trace: {path} ({len(lines)} events from {len(pids)} processes)"


def main() -> int:
    """Run both parts, each bounded by DEADLINE; 0 on success, 1 if a part failed."""
    trace = start_trace()
    try:
        with ctxplane.span("demo: one process"):
            asyncio.run(asyncio.wait_for(one_process(), DEADLINE))
        # The client starts from empty baggage, like a fresh request: a new context, not part
        # 1's baggage (asyncio.run joins a finished main task back into the caller).
        contextvars.Context().run(asyncio.run, asyncio.wait_for(two_services(), DEADLINE))
    except Exception as exc:
        print(f"demo failed: {exc!r}", file=sys.stderr)
        return 1
    if trace is not None:
        print(trace_summary(trace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
