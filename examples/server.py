"""aiohttp service: records each visit in the caller's baggage. Prints its port, then serves."""

import asyncio
import contextlib
import signal

from aiohttp import web
from visits import Visits


async def hello(request: web.Request) -> web.Response:
    """Count this visit and name it; the caller gets both back with the response."""
    name = request.match_info["name"]
    Visits.increment("count")
    Visits.add("where", f"server:{name}")
    return web.Response(text=f"hello {name}")


async def main() -> None:
    """Serve on 127.0.0.1, on a free port printed as the first line, until terminated
    (SIGTERM stops it cleanly, so that exit handlers run, e.g. a trace file's last flush)."""
    app = web.Application()
    app.router.add_get("/hello/{name}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    stopped = asyncio.Event()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
