"""Step: the in-process handoff to LiteLLM — one ASGI call, no network hop.

LiteLLM gets a copy of the scope with: the verified principal under ``PRINCIPAL_SCOPE_KEY`` (the only thing our
custom_auth bridge accepts), allow-listed request headers with a placeholder Authorization, no query string, and the
body we already read. Its response headers are filtered through the response allow-list on the way out.
"""

from __future__ import annotations

from typing import Any

from gateway.pipeline.asgi import PRINCIPAL_SCOPE_KEY, ASGIApp, Message, Receive, Scope, Send
from gateway.pipeline.body import replay
from gateway.pipeline.headers import scrub_request, scrub_response
from gateway.principal import Principal


async def hand_off(
    llm_app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    principal: Principal,
    raw_body: bytes,
    request_id: str,
    llm_state: dict[str, Any],
) -> None:
    inner = dict(scope)
    inner["headers"] = scrub_request(scope, len(raw_body))
    inner["query_string"] = b""
    inner["state"] = {**(scope.get("state") or {}), **llm_state}
    inner[PRINCIPAL_SCOPE_KEY] = principal

    async def scrubbed_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = scrub_response(list(message.get("headers", ())), request_id)
        await send(message)

    await llm_app(inner, replay(raw_body, receive), scrubbed_send)
