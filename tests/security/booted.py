"""For the probes run in a child process (boot_probe, approval_probe, secret-holder scan): boot the gateway in this
process as ``gateway serve`` would, without opening a port, and run its ASGI lifespan (which starts LiteLLM)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def running_gateway() -> AsyncIterator[Any]:
    """The started ``GatewayApp``; its lifespan is shut down on exit."""
    from gateway.boot.serve import prepare
    from gateway.boot.settings import load_settings

    booted = prepare(load_settings())
    assert booted.app is not None
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(booted.app({"type": "lifespan"}, inbox.get, outbox.put))
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield booted.app
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
