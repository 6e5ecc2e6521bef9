"""Step: read the request body once, bounded by the policy's size limit, and parse it as a JSON object."""

from __future__ import annotations

import json
from typing import Any

from gateway.pipeline.asgi import Receive, Scope, header
from gateway.pipeline.errors import Denial


class ClientGone(Exception):
    """The client disconnected before the body was complete."""


def too_large() -> Denial:
    return Denial(413, "request_too_large", "Request body too large.")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large()
        except ValueError:
            raise Denial(400, "invalid_request", "Invalid Content-Length.") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Denial(400, "invalid_request", "Request body must be a JSON object.") from None
    if not isinstance(value, dict):
        raise Denial(400, "invalid_request", "Request body must be a JSON object.")
    return value


def replay(raw: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body to the next app, then passes the real connection's messages
    through (so a client disconnect still reaches a streaming response)."""
    sent = False

    async def replayed() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replayed
