"""Step: read the request body once, bounded by the policy's size limit, and parse it as a JSON object.

The body LiteLLM receives is never the client's bytes: it is :func:`canonical_json` of the approved object, sent
with a Content-Type the handoff sets. A client that declares anything but JSON is refused before any other work,
because LiteLLM chooses its parser from the Content-Type (a form-encoded declaration would make it read fields out of
JSON strings; threat-model TM-E5).
"""

from __future__ import annotations

import json
import math
from typing import Any

from gateway.pipeline.asgi import Receive, Scope, header
from gateway.pipeline.errors import Denial


class ClientGone(Exception):
    """The client disconnected before the body was complete."""


def unsupported_media_type() -> Denial:
    return Denial(415, "unsupported_media_type", "The request body must be JSON (Content-Type: application/json).")


def check_content_type(scope: Scope) -> None:
    """At most one Content-Type, and it must be ``application/json`` (optionally ``; charset=utf-8``). A missing one
    is accepted: the body itself must still parse as a JSON object."""
    declared = [value for name, value in scope.get("headers", ()) if name == b"content-type"]
    if not declared:
        return
    if len(declared) > 1:
        raise unsupported_media_type()
    media, _, parameters = declared[0].decode("latin-1").partition(";")
    if media.strip().lower() != "application/json":
        raise unsupported_media_type()
    for parameter in parameters.split(";"):
        if not parameter.strip():
            continue
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise unsupported_media_type()


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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON (RFC 8259): no NaN or Infinity, no number that overflows to infinity, valid UTF-8."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Denial(400, "invalid_request", "Request body must be a JSON object.") from None
    if not isinstance(value, dict):
        raise Denial(400, "invalid_request", "Request body must be a JSON object.")
    return value


def canonical_json(body: dict[str, Any]) -> bytes:
    """The one representation LiteLLM receives: compact UTF-8 JSON of the approved object. A string that cannot be
    UTF-8 (a lone surrogate escape such as ``"\\ud800"``) is the client's error, not a later 5xx."""
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        raise Denial(400, "invalid_request", "Request body must be valid UTF-8 JSON.") from None


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
