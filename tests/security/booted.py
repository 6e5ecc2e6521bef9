"""For the probes run in a child process (boot_probe, approval_probe, secret-holder scan): boot the gateway in this
process as ``gateway serve`` would, without opening a port, and run its ASGI lifespan (which starts LiteLLM)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def running_gateway() -> AsyncIterator[Any]:
    """The started gateway (``gateway.compose.Gateway``: its app and services); its lifespan is shut down on exit."""
    from gateway.boot.serve import prepare
    from gateway.boot.settings import load_settings

    booted = prepare(load_settings())
    assert booted.gateway is not None
    app = booted.gateway.app
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield booted.gateway
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
