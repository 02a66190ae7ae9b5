"""aiohttp client: calls server.py four times (three at once), then reads what came back."""

import asyncio
import sys

import aiohttp
from visits import Visits


async def call(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        return await response.text()


async def main(port: int) -> Visits:
    """Record the client's own visit, call the server, print and return the bag afterwards."""
    Visits.increment("count")
    Visits.add("where", "client")
    base = f"http://127.0.0.1:{port}/hello"
    async with aiohttp.ClientSession() as session:
        await call(session, f"{base}/a")  # the server's baggage is joined on return
        await asyncio.gather(*(call(session, f"{base}/{name}") for name in "bcd"))
    bag: Visits = Visits.current()
    print(f"client: count={int(bag.count)} where={', '.join(sorted(bag.where))}")
    return bag


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
