"""Boots the gateway in this process (as ``gateway serve`` would, without opening a port), enters the lifespan
(which starts LiteLLM), and prints what an attacker inside the process could see: the environment and LiteLLM's
custom_auth. Run by test_isolation.py in a child process; its output is compared with the canary secrets there.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys


async def main() -> None:
    from gateway.boot.serve import prepare
    from gateway.boot.settings import load_settings

    booted = prepare(load_settings())
    assert booted.app is not None
    async with booted.app._lifespan():
        from litellm.proxy import proxy_server

        report = {
            "environ": dict(os.environ),
            "custom_auth": getattr(proxy_server.user_custom_auth, "__module__", None),
            "router_models": sorted(proxy_server.llm_router.model_names) if proxy_server.llm_router else [],
            "worker_config_left": "WORKER_CONFIG" in os.environ,
        }
    sys.stdout.write("PROBE-REPORT " + json.dumps(report) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
