"""ctxplane demo: a counter and a set updated in gathered tasks, threads and a process pool,
read by the parent after its awaits. Run it under ``ctxplane-run python examples/demo.py``:
there is no ctxplane code in the app's control flow beyond declaring its bag."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import ctxplane
from ctxplane import COUNTER, STRING, Bag, field, set_of


class Visits(Bag, index=100):
    """What every unit of work records: one count and its name."""

    count = field(1, COUNTER)
    where = field(2, set_of(STRING))


def record(name: str) -> None:
    Visits.increment("count")
    Visits.add("where", name)


async def handler(i: int) -> None:
    record(f"task-{i}")
    await asyncio.sleep(0.001)
    await asyncio.to_thread(record, f"thread-of-task-{i}")


def in_process(name: str) -> str:
    record(name)
    return name


async def main() -> None:
    record("main")
    await asyncio.gather(*(handler(i) for i in range(3)))
    t = threading.Thread(target=record, args=("plain-thread",))
    t.start()
    t.join()
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        await loop.run_in_executor(pool, in_process, "process")
    bag = Visits.current()
    print(f"count={int(bag.count)} (expected 9)")
    print("where=" + ", ".join(sorted(bag.where)))
    print(f"baggage: {len(ctxplane.serialize())} bytes")


if __name__ == "__main__":
    asyncio.run(main())
