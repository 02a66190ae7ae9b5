"""ctxplane demo, in two parts.

1. One process: a counter and a set updated in gathered tasks, threads and a process pool,
   read by the parent after its awaits.
2. Two services: starts ``server.py`` (aiohttp, 127.0.0.1, free port) as a subprocess, runs
   ``client.py`` against it, and shows what came back from the server; then stops the server.

Under ``ctxplane-run`` both parts are traced (this process, its process-pool worker and the
server write one trace file: ``CTXPLANE_TRACE_FILE`` if set, else ``trace.jsonl`` in a new
``ctxplane-demo-*`` directory under the system's temporary directory), and the demo ends by
writing the trace's HTML view (``ctxplane view``) beside it and printing both paths.

Run it from anywhere with ``ctxplane-run python examples/demo.py``. Without ``ctxplane-run`` it
runs too, but nothing joins back: the output says so. The client and server have no ctxplane
calls beyond declaring and using their bag (``visits.py``); this file adds a span around each
part and an event per visit, which cost nothing while tracing is off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import sys
import tempfile
import threading
from pathlib import Path

import client
from visits import Visits

import ctxplane

HERE = Path(__file__).resolve().parent
DEADLINE = 30.0  # seconds, for each part
NOT_ACTIVE = "ctxplane is not active (run it under ctxplane-run)"


def record(name: str) -> None:
    """Count one unit of work and add its name (and, when tracing is on, record an event)."""
    Visits.increment("count")
    Visits.add("where", name)
    ctxplane.event("visit", where=name)


async def handler(i: int) -> None:
    record(f"task-{i}")
    await asyncio.sleep(0.001)
    await asyncio.to_thread(record, f"thread-of-task-{i}")


def in_process(name: str) -> str:
    record(name)
    return name


async def one_process() -> None:
    """Part 1: tasks, threads and a process pool, all joined back into this task."""
    async with ctxplane.span("demo: one process"):  # the trace's root, when tracing is on
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
    env = {**os.environ, "CTXPLANE_SERVICE_NAME": "server"}  # its name in the trace
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "server.py"), stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert server.stdout is not None
        line = await server.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"server.py did not print its port (got {line!r})")
        port = int(line)
        print(f"== two services: client.py calls server.py on 127.0.0.1:{port} ==")
        async with ctxplane.span("demo: two services"):
            bag = await client.main(port)
    finally:
        await stop(server)
    from_server = ", ".join(sorted(w for w in bag.where if w.startswith("server:")))
    if from_server:
        print(f"came back from the server: count +{int(bag.count) - 1}, where += {from_server}")
    else:
        reason = "" if ctxplane.is_active() else f": {NOT_ACTIVE}"
        print(f"nothing came back from the server{reason}")


def start_tracing() -> Path | None:
    """Under ctxplane-run, trace this run into a file (this process, and through the
    environment the server and the process-pool worker); the file's path, or None."""
    if not ctxplane.is_active():
        return None
    from ctxplane import tracing

    configured = os.environ.get("CTXPLANE_TRACE_FILE", "").strip()
    if configured and tracing.is_on():
        return Path(configured)  # activation started tracing as the environment says
    path = Path(tempfile.mkdtemp(prefix="ctxplane-demo-")) / "trace.jsonl"  # this run's own
    os.environ["CTXPLANE_TRACE_FILE"] = str(path)  # the server records into it too
    tracing.start([tracing.FileSink(str(path))], service="demo")
    return path


def write_view(trace_file: Path) -> None:
    """Write the trace's HTML view beside it (as ``ctxplane view`` does) and print the paths."""
    from ctxplane import tracing
    from ctxplane.tracing.reader import load_traces
    from ctxplane.tracing.viewer import write_html

    tracing.flush()
    traces = load_traces([trace_file])
    page = write_html(traces, trace_file.with_suffix(".html"))
    events = sum(len(t) for t in traces)
    print(f"== the trace: {len(traces)} traces, {events} events ==")
    print(f"trace file: {trace_file}")
    print(f"view it:    {page}")


def main() -> int:
    """Run both parts, each bounded by DEADLINE; 0 on success, 1 if a part failed."""
    trace_file = start_tracing()
    try:
        asyncio.run(asyncio.wait_for(one_process(), DEADLINE))
        # The client starts from empty baggage, like a fresh request: a new context, not part
        # 1's baggage (asyncio.run joins a finished main task back into the caller).
        contextvars.Context().run(asyncio.run, asyncio.wait_for(two_services(), DEADLINE))
        if trace_file is not None:
            write_view(trace_file)
    except Exception as exc:
        print(f"demo failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
