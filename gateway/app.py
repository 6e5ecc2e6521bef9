"""The gateway's ASGI app: one port, the route table's endpoints (:mod:`gateway.routes`), nothing else reachable.

Everything is built by the composition root (:mod:`gateway.compose`); this module only dispatches and runs the
lifespan.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Mapping, Sequence

from gateway.logs import new_request_id
from gateway.metrics import REQUESTS
from gateway.pipeline.asgi import ASGIApp, Message, Receive, Scope, Send
from gateway.pipeline.errors import not_found, send_denial
from gateway.pipeline.security_headers import allowed_origin, send_preflight, with_security_headers
from gateway.probes import Readiness
from gateway.routes import Endpoint, is_preflight, metric_label, resolve

log = logging.getLogger("gateway.app")

Lifespan = Callable[[], contextlib.AbstractAsyncContextManager[None]]


class StartupRefused(Exception):
    """Raised by a lifespan part that must keep the gateway from starting; the message is safe to log."""


def counted(send: Send, route: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            REQUESTS.labels(route=route, status=str(message["status"])).inc()
        await send(message)

    return wrapped


class GatewayApp:
    def __init__(self, *, endpoints: Mapping[Endpoint, ASGIApp], readiness: Readiness,
                 lifespans: Sequence[Lifespan], cors_origins: frozenset[str]) -> None:
        missing = set(Endpoint) - set(endpoints)
        if missing:
            raise ValueError(f"no handler for {sorted(missing)}")
        self._endpoints = dict(endpoints)
        self._readiness = readiness
        self._lifespans = list(lifespans)
        self._cors_origins = cors_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            # No websockets: close before accepting.
            await send({"type": "websocket.close", "code": 1008})
            return
        method, path = scope["method"], scope["path"]
        cors_origin = allowed_origin(scope, self._cors_origins) if path.startswith("/v1/") else None
        if cors_origin is not None and is_preflight(method, path):
            await send_preflight(with_security_headers(send, None), cors_origin)
            return
        send = counted(with_security_headers(send, cors_origin), metric_label(method, path))
        endpoint = resolve(method, path)
        if endpoint is None:
            await send_denial(send, not_found(), new_request_id())
            return
        await self._endpoints[endpoint](scope, receive, send)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        stack = contextlib.AsyncExitStack()
        try:
            for part in self._lifespans:
                await stack.enter_async_context(part())
        except StartupRefused as refused:
            log.critical(str(refused))
            await stack.aclose()
            await send({"type": "lifespan.startup.failed", "message": "startup refused"})
            return
        except BaseException:
            log.exception("startup failed")
            await stack.aclose()
            await send({"type": "lifespan.startup.failed", "message": "startup failed"})
            return
        # Everything built so far (LiteLLM's proxy alone is ~700k objects) lives as long as the process. Freezing it
        # keeps the collector's full passes from walking it again: each such pass took ~360 ms here, stalling every
        # request in flight (docs/benchmarks.md). The collection first frees what the startup left (copies of
        # LiteLLM's config among it, which hold secrets); what boot froze after LiteLLM's import is not walked again.
        gc.collect()
        gc.freeze()
        self._readiness.started = True
        await send({"type": "lifespan.startup.complete"})
        await receive()
        self._readiness.started = False
        try:
            await stack.aclose()
        except BaseException:
            log.exception("shutdown failed")
            await send({"type": "lifespan.shutdown.failed", "message": "shutdown failed"})
            return
        await send({"type": "lifespan.shutdown.complete"})
