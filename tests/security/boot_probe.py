"""Boots the gateway in this process (as ``gateway serve`` would, without opening a port), runs the app's ASGI
lifespan startup (which starts LiteLLM), and prints what an attacker inside the process could see: the environment
and LiteLLM's custom_auth, plus what the boot switched off in LiteLLM and whether the boot heap was frozen. Run by
test_isolation.py in a child process; its output is compared with the canary secrets there.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys

LOCAL = ("127.0.0.1", "::1", "localhost")
looked_up: list[str] = []
_getaddrinfo = socket.getaddrinfo


def _recording_getaddrinfo(host, *args, **kwargs):  # socket.getaddrinfo's signature
    # Every outbound connection starts with a lookup (or a literal address, which getaddrinfo also sees).
    if host not in LOCAL and not (isinstance(host, str) and host.startswith("127.")):
        looked_up.append(str(host))
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _recording_getaddrinfo


async def main() -> None:
    from booted import running_gateway  # this folder: the probe runs as a script

    async with running_gateway():
        import litellm
        from litellm.proxy import proxy_server
        from litellm.proxy.auth import user_api_key_auth

        report = {
            "environ": dict(os.environ),
            "custom_auth": getattr(proxy_server.user_custom_auth, "__module__", None),
            "router_models": sorted(proxy_server.llm_router.model_names) if proxy_server.llm_router else [],
            "worker_config_left": "WORKER_CONFIG" in os.environ,
            "callbacks": {name: sorted(c if isinstance(c, str) else type(c).__name__ for c in getattr(litellm, name))
                          for name in ("callbacks", "_async_success_callback", "_async_failure_callback")},
            "last_callback": type(litellm.callbacks[-1]).__name__,
            "seed_request_destinations": user_api_key_auth._seed_request_destinations.__name__,
            "gc_frozen": gc.get_freeze_count(),
            "non_local_lookups": looked_up,
        }
    sys.stdout.write("PROBE-REPORT " + json.dumps(report) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
