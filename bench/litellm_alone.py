"""Bench only: stock LiteLLM proxy alone (configuration "litellm" of `make bench`), with the same server options as
`gateway serve`, reading its config from the file named by CONFIG_FILE_PATH (the harness writes it).

    CONFIG_FILE_PATH=/tmp/x/config.yaml python bench/litellm_alone.py --port 4000 [--num_workers 2] [--trimmed]

``--num_workers N`` runs N uvicorn worker processes, as LiteLLM's own CLI does (``litellm --num_workers``, whose docs
recommend one per core); each imports the proxy and runs its startup. ``--trimmed`` (configuration "trimmed")
applies, once LiteLLM has started, what the gateway's boot does to the LiteLLM it mounts: the per-request trims of
``trim_per_request_work`` and ``gc.freeze()``. The gateway's own CPU per request is the in-process gateway's minus
this configuration's, at the same number of workers.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
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


def stock_app() -> Any:
    from litellm.proxy import proxy_server

    return proxy_server.app


def trimmed_app() -> Any:
    return trimmed(stock_app())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--trimmed", action="store_true")
    args = parser.parse_args()
    os.environ.update(QUIET_ENV)  # inherited by the workers
    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)
    # An import string and a factory, so that each worker process builds its own app (uvicorn's --workers).
    uvicorn.run("litellm_alone:trimmed_app" if args.trimmed else "litellm_alone:stock_app", factory=True,
                app_dir=here, workers=args.num_workers, host="127.0.0.1", port=args.port, lifespan="on",
                log_config=None, access_log=False, server_header=False, proxy_headers=False, ws="none")
