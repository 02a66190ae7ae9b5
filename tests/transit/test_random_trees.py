"""Random trees of concurrent work, counted exactly: every unit of work increments the counter
once, and whatever mix of branch and join constructs connects them, the root ends with the
exact total (and only a bounded number of components where every child is observed by its
creator). Seeded, bounded in depth, width and time."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import random
import threading
from typing import Any

import pytest
from conftest import Hops, state

DEPTH = 3
WIDTH = 4


def bump() -> None:
    Hops.increment("count")


class Plan:
    """Counts the units of work a random tree will do, to know the expected total."""

    def __init__(self) -> None:
        self.units = 0


async def node(rng: random.Random, depth: int, plan: Plan, pool: cf.ThreadPoolExecutor) -> None:
    bump()
    plan.units += 1
    if depth >= DEPTH:
        return
    width = rng.randint(0, WIDTH)
    kind = rng.choice(["gather", "taskgroup", "await", "wait", "as_completed", "thread", "pool",
                       "handoff", "sleep", "wait_for", "shield"])  # fmt: skip
    children = [node(random.Random(rng.random()), depth + 1, plan, pool) for _ in range(width)]
    if kind == "gather":
        await asyncio.gather(*children)
    elif kind == "taskgroup":
        async with asyncio.TaskGroup() as tg:
            for c in children:
                tg.create_task(c)
    elif kind == "await":
        for c in children:
            await asyncio.create_task(c)
    elif kind == "wait":
        tasks = [asyncio.create_task(c) for c in children]
        if tasks:
            done, _ = await asyncio.wait(tasks)
            for t in done:
                t.result()
    elif kind == "as_completed":
        for fut in asyncio.as_completed([asyncio.create_task(c) for c in children]):
            await fut
    elif kind == "wait_for":
        for c in children:
            await asyncio.wait_for(c, timeout=30)
    elif kind == "shield":
        for c in children:
            await asyncio.shield(asyncio.create_task(c))
    elif kind == "sleep":
        tasks = [asyncio.create_task(c) for c in children]
        await asyncio.sleep(0.0005)
        for t in tasks:
            await t
    elif kind == "handoff":
        # a child's task is awaited by a third task, which the parent awaits
        tasks = [asyncio.create_task(c) for c in children]

        async def third() -> None:
            for t in tasks:
                await t

        await asyncio.create_task(third())
    elif kind == "thread":
        for c in children:
            c.close()
        for _ in range(width):
            t = threading.Thread(target=bump)
            plan.units += 1
            t.start()
            t.join(timeout=30)
    else:  # pool
        for c in children:
            c.close()
        futs = [pool.submit(bump) for _ in range(width)]
        plan.units += width
        for f in futs:
            f.result(timeout=30)


def _run(loop_kind: str, main: Any) -> Any:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        from ctxplane.patches import asyncio_

        asyncio_.patch_uvloop(uvloop)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize("seed", range(100))
def test_random_tree_counts_exactly(seed: int, loop_kind: str) -> None:
    plan = Plan()

    async def main() -> int:
        with cf.ThreadPoolExecutor(2) as pool:
            await node(random.Random(seed), 0, plan, pool)
        return state()[0]

    total = _run(loop_kind, main)
    assert total == plan.units
    bag = Hops.current()
    assert int(bag.count) == plan.units  # after asyncio.run's own join, too
