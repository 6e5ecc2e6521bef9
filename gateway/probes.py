"""Unauthenticated probes for the orchestrator: ``/healthz`` (the process answers) and ``/readyz`` (it can serve).

They reveal nothing but "ok" / "ready" / "not_ready"; which readiness check failed goes to the log only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from gateway.logs import new_request_id
from gateway.pipeline.asgi import Receive, Scope, Send, send_json

log = logging.getLogger("gateway.app")


async def health(scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, 200, json.dumps({"status": "ok"}).encode(), new_request_id())


class Readiness:
    """Ready when the lifespan has started and every check passes. Checks are blocking calls (a database ping, a
    Redis ping), run on worker threads."""

    def __init__(self, checks: dict[str, Callable[[], bool]]) -> None:
        self._checks = checks
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        results = {"started": self.started}
        for name, check in self._checks.items():
            results[name] = await asyncio.to_thread(check)
        failing = [name for name, ok in results.items() if not ok]
        if failing:
            log.warning("not ready", extra={"request_id": request_id, "reason": ",".join(failing)})
            await send_json(send, 503, json.dumps({"status": "not_ready"}).encode(), request_id)
        else:
            await send_json(send, 200, json.dumps({"status": "ready"}).encode(), request_id)
