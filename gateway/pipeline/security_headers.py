"""Response headers every answer carries, and CORS (off unless the policy lists origins).

Pure ASGI: a wrapper around ``send`` that adds the headers to ``http.response.start``.
"""

from __future__ import annotations

from gateway.pipeline.asgi import Message, Scope, Send, header

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
CORS_EXPOSED = (b"x-request-id, x-credit-remaining-micro-usd, retry-after, x-ratelimit-limit-requests, "
                b"x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
                b"x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens")


def allowed_origin(scope: Scope, origins: frozenset[str]) -> bytes | None:
    origin = header(scope, b"origin")
    if origin is None or not origins:
        return None
    try:
        return origin if origin.decode("ascii") in origins else None
    except UnicodeDecodeError:
        return None


def with_security_headers(send: Send, cors_origin: bytes | None) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers}
            headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
            if b"cache-control" not in present:
                # The one place answers get no-store (the gateway's own, the admin app's); LiteLLM's own
                # Cache-Control passes the response allow-list and is kept.
                headers.append((b"cache-control", b"no-store"))
            if cors_origin is not None:
                headers += [(b"access-control-allow-origin", cors_origin), (b"vary", b"Origin"),
                            (b"access-control-expose-headers", CORS_EXPOSED)]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


async def send_preflight(send: Send, origin: bytes) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", b"GET, POST"),
        (b"access-control-allow-headers", b"authorization, content-type"),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
    ]})
    await send({"type": "http.response.body", "body": b""})
