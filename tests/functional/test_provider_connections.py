"""The gateway talks to providers through one pooled HTTP client it owns: requests reuse connections, none leaks.

LiteLLM's text-completion handler would otherwise build a new SDK client with its own aiohttp session per request and
never close it (one open connection per request until the garbage collector runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.support import RunningGateway, StandIn


def _connections_to(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to local port ``port`` (from /proc, no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def test_provider_connections_are_pooled_not_leaked(gateway: RunningGateway, standin: StandIn) -> None:
    assert gateway.process.process is not None
    pid = gateway.process.process.pid
    bearer = {"Authorization": f"Bearer {gateway.customer_key}"}
    standin.recorder.clear()
    with httpx.Client(base_url=gateway.base_url, headers=bearer, timeout=30) as client:
        for _ in range(12):
            assert client.post("/v1/completions", json={"model": "text-model", "prompt": "Hi",
                                                        "max_tokens": 5}).status_code == 200
            assert client.post("/v1/chat/completions", json={"model": "chat-model", "max_tokens": 5, "messages": [
                {"role": "user", "content": "Hi"}]}).status_code == 200
    # Sequential requests on a keep-alive pool need one or two connections, not one per request...
    ports = {call["client_port"] for call in standin.recorder.all() if call["path"] == "/v1/completions"}
    assert len(ports) <= 2, len(ports)
    # ...and the gateway holds no more open than that.
    assert _connections_to(pid, standin.port) <= 4
    # One client serves every tenant: the affinity cookie the stand-in sets is never sent back.
    assert [call["headers"].get("cookie") for call in standin.recorder.all() if "cookie" in call["headers"]] == []
