"""Bench only: stock LiteLLM proxy alone (configuration b), one uvicorn worker with the same server options as
`gateway serve`, reading its config from the file named by CONFIG_FILE_PATH (the harness writes it).

    CONFIG_FILE_PATH=/tmp/x/config.yaml python bench/litellm_alone.py --port 4000 [--trimmed]

``--trimmed`` (configuration e) applies, once LiteLLM has started, what the gateway's boot does to the LiteLLM it
mounts: the per-request trims of ``trim_per_request_work`` and ``gc.freeze()``. Comparing (e) with (b) isolates what
the trims save; (d) with (e), what the gateway's own pipeline costs.
"""

from __future__ import annotations

import argparse
import gc
import os
from typing import Any

import uvicorn

from gateway.boot.litellm_mount import QUIET_ENV, trim_per_request_work


def trimmed(app: Any) -> Any:
    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def on_send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                trim_per_request_work()
                gc.collect()
                gc.freeze()
            await send(message)

        await app(scope, receive, on_send)

    return wrapper


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--trimmed", action="store_true")
    args = parser.parse_args()
    os.environ.update(QUIET_ENV)
    from litellm.proxy import proxy_server

    app = trimmed(proxy_server.app) if args.trimmed else proxy_server.app
    uvicorn.run(app, host="127.0.0.1", port=args.port, lifespan="on", log_config=None,
                access_log=False, server_header=False, proxy_headers=False, ws="none")
