"""Patching does not depend on which ctxplane module is imported first (issue 8, point 7).

An application (or a test) that imports a patch module itself - ``from ctxplane.patches
import grpc_`` - after activation but before the library gets the library patched, with no
warning: the patch module imports its target, whose post-import hook used to find the patch
module half-initialized and skip it ("has no patch()"). Each order runs in a fresh
interpreter, with real servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

AIOHTTP = """
import asyncio, json
from aiohttp import ClientSession, web
from ctxplane.baggage import STRING, Bag, field
from ctxplane.transit import context

class Note(Bag, index=246):
    text = field(1, STRING)

async def handler(request):
    bag = context.get_bag(Note)
    return web.Response(text=bag.text if bag else "none")

async def main():
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        context.set_bag(Note(text="carried"))
        async with ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{runner.addresses[0][1]}/") as r:
                return await r.text()
    finally:
        await runner.cleanup()

print(json.dumps({"patched": patch_module.is_patched(),
                  "got": asyncio.run(asyncio.wait_for(main(), 20))}))
"""

GRPC = """
import json
from concurrent import futures
import grpc
from ctxplane.baggage import STRING, Bag, field
from ctxplane.transit import context

class Note(Bag, index=246):
    text = field(1, STRING)

def handler(request, ctx):
    bag = context.get_bag(Note)
    return (bag.text if bag else "none").encode()

pool = futures.ThreadPoolExecutor(2)
server = grpc.server(pool, handlers=[grpc.method_handlers_generic_handler(
    "t.S", {"M": grpc.unary_unary_rpc_method_handler(handler)})])
port = server.add_insecure_port("127.0.0.1:0")
server.start()
try:
    context.set_bag(Note(text="carried"))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        got = ch.unary_unary("/t.S/M")(b"", timeout=20).decode()
finally:
    server.stop(None).wait(5)
    pool.shutdown()
print(json.dumps({"patched": patch_module.is_patched(), "got": got}))
"""

ORDERS = {
    "activate, then the patch module": "import ctxplane.auto\n{imp}\n",
    "the patch module, then activate": "{imp}\nimport ctxplane.auto\n",
    "install, then the patch module": (
        "import ctxplane.patches\nctxplane.patches.install()\n{imp}\n"
    ),
}


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("name", ["aiohttp_", "grpc_"])
def test_patch_module_imported_first_still_patches(name: str, order: str) -> None:
    imp = f"from ctxplane.patches import {name} as patch_module"
    program = ORDERS[order].format(imp=imp) + (AIOHTTP if name == "aiohttp_" else GRPC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    proc = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"patched": True, "got": "carried"}
    assert "skipped" not in proc.stderr and "has no" not in proc.stderr
