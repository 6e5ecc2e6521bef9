"""Step: the in-process handoff to LiteLLM — one ASGI call, no network hop.

LiteLLM gets a copy of the scope with: the verified principal under ``PRINCIPAL_SCOPE_KEY`` (the only thing our
custom_auth bridge accepts), allow-listed request headers with a placeholder Authorization, no query string, and the
body we already read. On the way back its headers pass the response allow-list, and an error answer is replaced by
ours: LiteLLM's error bodies carry exception text, upstream messages and sometimes internal URLs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from gateway.audit.log import AuditLog
from gateway.pipeline.approval import CURRENT, Approval
from gateway.pipeline.asgi import PRINCIPAL_SCOPE_KEY, ASGIApp, Message, Receive, Scope, Send
from gateway.pipeline.body import replay
from gateway.pipeline.credits import REMAINING_HEADER, Meter
from gateway.pipeline.errors import Denial, error_body
from gateway.pipeline.headers import scrub_request, scrub_response
from gateway.principal import Principal

log = logging.getLogger("gateway.handoff")


def client_error_for(status: int) -> Denial:
    """Our stable answer for an error status coming back from LiteLLM."""
    if status in (400, 422):
        return Denial(400, "invalid_request", "The request was rejected by the model backend.")
    if status == 404:
        return Denial(404, "not_found", "Not found.")
    if status == 413:
        return Denial(413, "request_too_large", "Request too large for the model backend.")
    if status == 429:
        return Denial(429, "upstream_rate_limited", "The model provider is rate limiting; retry later.",
                      error_type="rate_limit_error")
    if status in (408, 504):
        return Denial(504, "upstream_timeout", "The model provider did not answer in time.", error_type="server_error")
    return Denial(502, "upstream_error", "The model provider failed.", error_type="server_error")


STREAM_ERROR = b"data: " + error_body(client_error_for(502))
# LiteLLM was about to send something the pre-flight did not approve; the provider was not called.
MISMATCH = Denial(400, "request_mismatch",
                  "The request was not sent: the model backend read it differently from the gateway.")


def sanitize_stream_chunk(chunk: bytes) -> bytes:
    """Replace any error event inside an already-started stream with our generic one (LiteLLM's carries upstream
    text). Events are written whole by LiteLLM, one per chunk, so line-level rewriting sees complete events."""
    if b'"error"' not in chunk:
        return chunk
    lines = chunk.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"data: {") and b'"error"' in line:
            try:
                event = json.loads(line[6:])
            except ValueError:
                event = None
            if not isinstance(event, dict) or "error" in event:
                lines[i] = STREAM_ERROR
    return b"\n".join(lines)


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
    meter: Meter | None = None,
    approval: Approval | None = None,
    audit: AuditLog | None = None,
) -> None:
    inner = dict(scope)
    inner["headers"] = scrub_request(scope, len(raw_body))
    inner["query_string"] = b""
    inner["state"] = {**(scope.get("state") or {}), **llm_state}
    inner[PRINCIPAL_SCOPE_KEY] = principal
    failed_status: int | None = None
    streaming = False
    held_start: Message | None = None
    held_body: list[bytes] = []

    async def scrubbed_send(message: Message) -> None:
        nonlocal failed_status, streaming, held_start
        if message["type"] == "http.response.start":
            status = int(message["status"])
            if status >= 400:
                failed_status = status
                if meter is not None:
                    meter.failed(status, dispatched=approval is not None and approval.dispatched)
                return
            message = dict(message)
            message["headers"] = scrub_response(list(message.get("headers", ())), request_id)
            if meter is not None:
                meter.started()
                if dict(message["headers"]).get(b"content-type", b"").startswith(b"text/event-stream"):
                    # A stream's headers go out before its cost is known: report the credit left after the
                    # worst-case reservation (a lower bound of what will be left).
                    streaming = True
                    message["headers"].append((REMAINING_HEADER, str(meter.available).encode()))
                else:
                    # A plain response is held until its usage has been settled, so its header is exact.
                    held_start = message
                    return
        elif failed_status is not None:
            # Swallow LiteLLM's error body; answer with ours once it is complete.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                if approval is not None and approval.mismatch is not None:
                    denial = MISMATCH
                    log.warning("handoff refused: LiteLLM's call differs from the approval",
                                extra={"request_id": request_id, "key_id": principal.key_id,
                                       "reason": f"handoff_mismatch:{approval.mismatch}"})
                    if audit is not None:
                        await asyncio.to_thread(audit.try_record, "handoff_mismatch", actor=principal.key_id,
                                                reason=approval.mismatch, request_id=request_id)
                else:
                    denial = client_error_for(failed_status)
                    log.warning("model backend error", extra={"request_id": request_id, "key_id": principal.key_id,
                                                              "reason": f"litellm_status_{failed_status}"})
                body = error_body(denial)
                headers = scrub_response([(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())], request_id)
                await send({"type": "http.response.start", "status": denial.status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
            return
        elif message["type"] == "http.response.body" and meter is not None:
            more = bool(message.get("more_body", False))
            if streaming:
                message = {**message, "body": sanitize_stream_chunk(message.get("body", b""))}
                meter.observe_stream(message["body"], more)
            elif held_start is not None:
                held_body.append(message.get("body", b""))
                if more:
                    return
                body = b"".join(held_body)
                meter.observe_json(body)
                remaining = await meter.finish_off_loop()
                start = dict(held_start)
                start["headers"] = [*held_start["headers"], (REMAINING_HEADER, str(
                    remaining if remaining is not None else meter.available).encode())]
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
        await send(message)

    # The approval rides in the context of this task; LiteLLM's call runs in it (or in tasks that copy it).
    token = CURRENT.set(approval)
    try:
        await llm_app(inner, replay(raw_body, receive), scrubbed_send)
    except Exception:
        # LiteLLM's error middleware re-raises some exceptions after (or instead of) answering. One raised before the
        # provider call, on a request that passed the pre-flight, means LiteLLM refused what it read (its own ban
        # list raises for api_base, for one): answered as a refusal, like the approval check's, if nothing was sent.
        if approval is None or approval.dispatched or failed_status is not None or held_start is not None \
                or streaming:
            raise
        if approval.mismatch is None:
            approval.mismatch = "litellm_refused"
        failed_status = 500
        if meter is not None:
            meter.failed(500, dispatched=False)
        await scrubbed_send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        CURRENT.reset(token)
