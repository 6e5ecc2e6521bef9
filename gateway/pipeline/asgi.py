"""ASGI type aliases and small helpers shared by the pipeline steps (pure ASGI, no BaseHTTPMiddleware)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Where the verified principal travels inside the ASGI scope handed to LiteLLM. A scope entry is a Python object
# placed by this process; no byte on the wire can create one (threat-model TM-T3).
PRINCIPAL_SCOPE_KEY = "gateway.principal"


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case bytes), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def bearer_token(scope: Scope) -> str | None:
    """The token from ``Authorization: Bearer …`` — the only carrier of keys we accept."""
    raw = header(scope, b"authorization")
    if raw is None:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    scheme, _, token = text.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def json_headers(body: bytes, request_id: str) -> list[tuple[bytes, bytes]]:
    """The headers of every JSON answer the gateway writes itself (not LiteLLM's, which pass an allow-list).
    ``Cache-Control: no-store`` is added to every answer by :func:`gateway.pipeline.security_headers.with_security_headers`."""
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]


async def send_json(send: Send, status: int, body: bytes, request_id: str,
                    extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with an encoded JSON ``body``; ``extra_headers`` go after the standard ones."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*json_headers(body, request_id), *(extra_headers or ())]})
    await send({"type": "http.response.body", "body": body})
