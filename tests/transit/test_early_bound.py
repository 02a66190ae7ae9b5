"""Names bound before activation are covered (issue 8, point 2): a program that does
``from asyncio import to_thread, shield, ...`` (and the same for concurrent.futures, threading
and multiprocessing) *above* ``import ctxplane.auto`` gets every join, because ctxplane patches
classes, loop methods and function objects in place rather than module attributes.

Each construct counts once in a child execution; the program prints what came back per
construct. A fresh interpreter per run (the order of imports is the point)."""

from __future__ import annotations

import json

from test_import_order import python

PROGRAM = '''
from asyncio import (
    TaskGroup, as_completed, create_task, ensure_future, gather, run, shield, to_thread,
    wait, wait_for, wrap_future, get_running_loop,
)
from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor
from multiprocessing import get_context
from threading import Thread, Timer
import ctxplane.auto
import json
from ctxplane.baggage import COUNTER, Bag, field

class Hops(Bag, index=250):
    count = field(1, COUNTER)

def bump():
    Hops.increment("count")

async def abump():
    bump()

def count():
    return int(Hops.current().count)

async def main(pool, procs, mp):
    got = {}
    async def check(name, coro):
        before = count()
        await coro
        got[name] = count() - before
    async def tg():
        async with TaskGroup() as g:
            g.create_task(abump())
    async def waited():
        done, _ = await wait([create_task(abump())])
        for t in done:
            t.result()
    async def completed():
        for f in as_completed([create_task(abump())]):
            await f
    loop = get_running_loop()
    await check("create_task", create_task(abump()))
    await check("ensure_future", ensure_future(abump()))
    await check("gather", gather(abump()))
    await check("TaskGroup", tg())
    await check("wait", waited())
    await check("as_completed", completed())
    await check("wait_for", wait_for(abump(), 30))
    await check("shield", shield(abump()))
    await check("to_thread", to_thread(bump))
    await check("run_in_executor", loop.run_in_executor(None, bump))
    await check("run_in_executor_processes", loop.run_in_executor(procs, bump))
    await check("wrap_future", wrap_future(pool.submit(bump)))
    def sync(name, fn):
        before = count()
        fn()
        got[name] = count() - before
    sync("submit_result", lambda: pool.submit(bump).result(timeout=30))
    sync("process_submit_result", lambda: procs.submit(bump).result(timeout=30))
    def thread():
        t = Thread(target=bump)
        t.start()
        t.join(30)
    def timer():
        t = Timer(0, bump)
        t.start()
        t.join(30)
    def process():
        p = mp.Process(target=bump)
        p.start()
        p.join(30)
    sync("Thread", thread)
    sync("Timer", timer)
    sync("Process", process)
    with mp.Pool(1) as p:
        sync("Pool.apply", lambda: p.apply(bump))
        sync("Pool.map", lambda: p.map(bump_item, [1]))
        sync("Pool.apply_async", lambda: p.apply_async(bump).get(30))
        sync("Pool.map_async", lambda: p.map_async(bump_item, [1]).get(30))
        sync("Pool.starmap", lambda: p.starmap(bump_item, [(1,)]))
        sync("Pool.imap", lambda: list(p.imap(bump_item, [1])))
        sync("Pool.imap_unordered", lambda: list(p.imap_unordered(bump_item, [1])))
    return got

def bump_item(_):
    bump()

if __name__ == "__main__":
    mp = get_context("fork")
    with ThreadPoolExecutor(2) as pool, ProcessPoolExecutor(1, mp_context=mp) as procs:
        print(json.dumps(run(main(pool, procs, mp))))
'''

CONSTRUCTS = [
    "create_task", "ensure_future", "gather", "TaskGroup", "wait", "as_completed", "wait_for",
    "shield", "to_thread", "run_in_executor", "run_in_executor_processes", "wrap_future",
    "submit_result", "process_submit_result", "Thread", "Timer", "Process", "Pool.apply",
    "Pool.map", "Pool.apply_async", "Pool.map_async", "Pool.starmap", "Pool.imap",
    "Pool.imap_unordered",
]


def test_every_construct_bound_before_activation_joins(tmp_path: object) -> None:
    import pathlib

    script = pathlib.Path(str(tmp_path)) / "early.py"
    script.write_text(PROGRAM)
    proc = python(str(script))
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == dict.fromkeys(CONSTRUCTS, 1)
