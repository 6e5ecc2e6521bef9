"""Only the allow-listed routes are reachable: every route LiteLLM registers is checked through the gateway.

threat-model: TM-T3, TM-E2
"""

from __future__ import annotations

import json
import os
import re
import socket

import httpx
import pytest

from tests.support import RunningGateway

ALLOWED = {
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/responses"),  # create only: GET/DELETE /v1/responses/{id}, input_items, cancel, compact stay 404
    ("GET", "/v1/models"),
    ("GET", "/v1/models/x"),  # GET /v1/models/{id}: the gateway's own (an unknown id is 404, other keys 401)
}


def _walk(routes: list, prefix: str = ""):  # type: ignore[no-untyped-def]
    """Yield (method, path template) for every route, descending into FastAPI's lazily included routers."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from _walk(original.routes, prefix + route.include_context.prefix)
            continue
        path = getattr(route, "path", None)
        if path is None:
            continue
        if getattr(route, "app", None) is not None and getattr(route, "methods", None) is None and \
                not hasattr(route, "endpoint"):
            # A Mount (static UI files, sub-apps): probe below it.
            yield "GET", prefix + path + "/x"
            continue
        for method in getattr(route, "methods", None) or {"GET"}:
            yield method, prefix + path


def litellm_routes() -> list[tuple[str, str]]:
    """(method, concrete path) for every route in LiteLLM's proxy app, path parameters filled in."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm.proxy import proxy_server

    found = {(method, re.sub(r"\{[^}]+\}", "x", path)) for method, path in _walk(proxy_server.app.routes)}
    return sorted(found)


ROUTES = litellm_routes()


def test_the_walk_covers_litellms_surface() -> None:
    # LiteLLM 1.106.12 registers several hundred routes; a near-empty list would make the walk meaningless.
    assert len(ROUTES) > 300
    assert ("POST", "/key/generate") in ROUTES and ("POST", "/chat/completions") in ROUTES


def test_every_other_litellm_route_is_404(gateway: RunningGateway, stack) -> None:
    reached = []
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for method, path in ROUTES:
            if (method, path) in ALLOWED:
                continue
            for key in (gateway.customer_key, gateway.admin_key, stack.master_key):
                response = client.request(method, path, headers={"Authorization": f"Bearer {key}"},
                                          content=b"{}" if method not in ("GET", "HEAD") else None)
                if response.status_code != 404:
                    reached.append((method, path, response.status_code))
    assert reached == []


def raw_status(port: int, method: str, target: str, headers: dict[str, str], body: bytes) -> int:
    """Send one request with the target exactly as given (httpx would normalise dot segments client-side)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}",
             "Content-Type: application/json", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


@pytest.mark.parametrize("path", [
    "/v1/chat/completions/", "//v1/chat/completions", "/v1//chat/completions", "/v1/./chat/completions",
    "/v1/x/../chat/completions", "/V1/chat/completions", "/chat/completions", "/openai/deployments/x/chat/completions",
    "/v1/chat%2Fcompletions/x", "/v1/%2e/chat/completions", "/v1/chat/completions%00", "/v1/chat/completions;x",
    "/admin", "/v1", "/", "/docs", "/openapi.json", "/health", "/metrics", "/ui",
    "http://127.0.0.1/key/generate", "/v1/chat/completions/../../key/generate",
])
def test_path_variants_do_not_reach_litellm(gateway: RunningGateway, path: str) -> None:
    body = json.dumps({"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}).encode()
    status = raw_status(gateway.process.port, "POST", path, {"Authorization": f"Bearer {gateway.customer_key}"}, body)
    assert status in (400, 404), (path, status)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_other_methods_on_customer_routes_are_404(gateway: RunningGateway, method: str) -> None:
    response = httpx.request(method, gateway.base_url + "/v1/chat/completions",
                             headers={"Authorization": f"Bearer {gateway.customer_key}",
                                      "X-HTTP-Method-Override": "POST"}, timeout=30)
    assert response.status_code == 404
