"""Step: the in-process handoff to LiteLLM — one ASGI call, no network hop.

LiteLLM gets a copy of the scope with: the verified principal under ``PRINCIPAL_SCOPE_KEY`` (the only thing our
custom_auth bridge accepts), allow-listed request headers with a placeholder Authorization, no query string, and the
body we already read. On the way back its headers pass the response allow-list, and an error answer is replaced by
ours: LiteLLM's error bodies carry exception text, upstream messages and sometimes internal URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
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


@dataclasses.dataclass(frozen=True)
class LiteLLM:
    """LiteLLM's proxy as the gateway holds it: its ASGI app, the lifespan state its handlers read from
    ``scope["state"]`` (filled when its lifespan starts), and whether its router is up (for readiness)."""

    app: ASGIApp
    state: dict[str, Any]
    ready: Callable[[], bool]


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
# The Responses API's own error event (OpenAI's ``error`` stream event), with the gateway's text.
RESPONSE_STREAM_ERROR = {"type": "error", "code": "upstream_error", "message": "The model provider failed.",
                         "param": None}
# LiteLLM was about to send something the pre-flight did not approve; the provider was not called.
MISMATCH = Denial(400, "request_mismatch",
                  "The request was not sent: the model backend read it differently from the gateway.")


def _response_event_error(event: dict[str, Any]) -> bytes | None:
    """A Responses API event that carries the provider's error text, in the gateway's words (None: not one): the
    ``error`` event, and a failed response's ``error``."""
    if event.get("type") == "error":
        return b"data: " + json.dumps({**RESPONSE_STREAM_ERROR,
                                       "sequence_number": event.get("sequence_number", 0)}).encode()
    response = event.get("response")
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        response["error"] = {"code": "server_error", "message": "The model provider failed."}
        return b"data: " + json.dumps(event).encode()
    return None


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
            replaced = _response_event_error(event) if isinstance(event, dict) else None
            if replaced is not None:
                lines[i] = replaced
            elif not isinstance(event, dict) or "error" in event:
                lines[i] = STREAM_ERROR
    return b"\n".join(lines)


class ErrorReplacement:
    """Send-wrapper: LiteLLM's error answers never reach the client.

    An error status is held back with its body, which is swallowed; once it is complete the client gets ours instead
    (``400 request_mismatch`` when the approval check refused the call, else :func:`client_error_for`). Error events
    inside a stream that already started are replaced line by line.
    """

    def __init__(self, send: Send, *, meter: Meter, approval: Approval, principal: Principal, request_id: str,
                 audit: AuditLog) -> None:
        self._send = send
        self._meter = meter
        self._approval = approval
        self._principal = principal
        self._request_id = request_id
        self._audit = audit
        self.failed_status: int | None = None
        self.streaming = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = int(message["status"])
            if status >= 400:
                self.failed_status = status
                self._meter.failed(status, dispatched=self._approval.dispatched)
                return
            self.streaming = dict(message.get("headers", ())).get(b"content-type", b"").startswith(
                b"text/event-stream")
        elif self.failed_status is not None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await self._answer_error(self.failed_status)
            return
        elif self.streaming and message["type"] == "http.response.body":
            message = {**message, "body": sanitize_stream_chunk(message.get("body", b""))}
        await self._send(message)

    async def refuse(self) -> None:
        """LiteLLM raised before the provider call, having sent nothing: answer as a refusal (like the approval
        check's; its own ban list raises for ``api_base``, for one)."""
        if self._approval.mismatch is None:
            self._approval.mismatch = "litellm_refused"
        self.failed_status = 500
        self._meter.failed(500, dispatched=False)
        await self._answer_error(500)

    async def _answer_error(self, status: int) -> None:
        extra = {"request_id": self._request_id, "key_id": self._principal.key_id}
        if self._approval.mismatch is not None:
            denial = MISMATCH
            log.warning("handoff refused: LiteLLM's call differs from the approval",
                        extra={**extra, "reason": f"handoff_mismatch:{self._approval.mismatch}"})
            await asyncio.to_thread(self._audit.try_record, "handoff_mismatch", actor=self._principal.key_id,
                                    reason=self._approval.mismatch, request_id=self._request_id)
        else:
            denial = client_error_for(status)
            log.warning("model backend error", extra={**extra, "reason": f"litellm_status_{status}"})
        body = error_body(denial)
        await self._send({"type": "http.response.start", "status": denial.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await self._send({"type": "http.response.body", "body": body})


def scrubbed_headers(send: Send, request_id: str) -> Send:
    """Send-wrapper: the response headers pass an allow-list (:func:`scrub_response`) and get the request id."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": scrub_response(list(message.get("headers", ())), request_id)}
        await send(message)

    return wrapped


class Metering:
    """Send-wrapper: the meter observes the answer, and :meth:`settle` is where the request's reservation closes.

    A stream's headers go out before its cost is known and report the credit left after the worst-case reservation
    (a lower bound of what will be left). A plain answer is held until it is complete and settled, so its header is
    exact. Settlement happens once, at the first of: the plain answer complete, or the handoff over.
    """

    def __init__(self, send: Send, meter: Meter) -> None:
        self._send = send
        self._meter = meter
        self._streaming = False
        self._held_start: Message | None = None
        self._held_body: list[bytes] = []
        self._complete = False
        self.began = False  # LiteLLM began a successful answer

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and int(message["status"]) < 400:
            self.began = True
            self._meter.started()
            headers = list(message.get("headers", ()))
            if dict(headers).get(b"content-type", b"").startswith(b"text/event-stream"):
                self._streaming = True
                headers.append((REMAINING_HEADER, str(self._meter.available).encode()))
                message = {**message, "headers": headers}
            else:
                self._held_start = message
                return
        elif message["type"] == "http.response.body" and self._streaming:
            self._meter.observe_stream(message.get("body", b""), bool(message.get("more_body", False)))
        elif message["type"] == "http.response.body" and self._held_start is not None:
            self._held_body.append(message.get("body", b""))
            if not message.get("more_body", False):
                self._complete = True
                self._meter.observe_json(b"".join(self._held_body))
                await self.settle()
            return
        await self._send(message)

    async def settle(self) -> None:
        """Close the reservation (once; later calls do nothing), then release a held answer, if it is complete, with
        the credit left. An incomplete one (LiteLLM failed mid-answer) is never sent."""
        remaining = await self._meter.finish_off_loop()
        start, self._held_start = self._held_start, None
        if start is None or not self._complete:
            return
        headers = [*start["headers"], (REMAINING_HEADER, str(
            remaining if remaining is not None else self._meter.available).encode())]
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": b"".join(self._held_body)})


# What LiteLLM adds to an answer that OpenAI's schema does not have (1.106.12): its own fields, and nulls where the
# schema wants a string or an object. Removed so that clients see OpenAI's shape (docs/api.md).
LITELLM_FIELDS = frozenset({"provider_specific_fields", "cost"})
NOT_NULLABLE = frozenset({"system_fingerprint", "completion_tokens_details", "prompt_tokens_details", "service_tier",
                          # Responses API objects: nulls LiteLLM's types add where OpenAI's schema has none.
                          "user", "defer_loading", "namespace"})
# A Response object's fields that echo the request, which OpenAI always sends (the schema requires them) and LiteLLM
# leaves out of some stream events (``response.failed`` above all): the request's value, or OpenAI's default.
RESPONSE_ECHOED: dict[str, Any] = {"instructions": None, "tools": [], "tool_choice": "auto", "temperature": 1.0,
                                   "top_p": 1.0, "parallel_tool_calls": True}
# Always null or empty here: nothing is stored, so no metadata labels a response (the field is refused).
RESPONSE_EMPTY: dict[str, Any] = {"error": None, "incomplete_details": None, "metadata": {}, "output": []}


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()
                if k not in LITELLM_FIELDS and not (v is None and k in NOT_NULLABLE)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def response_shape(data: dict[str, Any], response_id: str | None, model: str | None,
                   request: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Responses API object in OpenAI's shape, named by the gateway: the id is the gateway's own for this request
    (LiteLLM's names its deployment and encrypts the provider's id; the gateway keeps no responses to find by either)
    and the model is the policy's name (stream events carried the upstream model's). The fields that echo the
    request are the approved request's where LiteLLM left them out or null; each function tool states ``parameters``
    and ``strict`` (null when unset), which the spec's FunctionTool requires."""
    for name, default in RESPONSE_EMPTY.items():
        data.setdefault(name, default)
    request = request or {}
    for name, default in RESPONSE_ECHOED.items():
        if data.get(name) is None:
            data[name] = request.get(name, default)
    for tool in data["tools"] if isinstance(data["tools"], list) else []:
        # A function tool always states these two (null when unset); an echo of a request that left them out, or a
        # provider behind LiteLLM's bridge that drops them, would otherwise break the client's parsing.
        if isinstance(tool, dict) and tool.get("type") == "function":
            tool.setdefault("parameters", None)
            tool.setdefault("strict", None)
    if response_id is not None:
        data["id"] = response_id
    if model is not None:
        data["model"] = model
    return data


def openai_shape(data: Any) -> Any:
    """One answer object (plain, or one stream event) in OpenAI's shape: LiteLLM's additions removed, and the fields
    OpenAI always sends (null when empty) that LiteLLM drops put back: a chat message's ``refusal`` (LiteLLM moves it
    into its own field) and ``content``, a choice's ``logprobs`` and their ``refusal``, a stream choice's
    ``finish_reason``."""
    if not isinstance(data, dict):
        return data
    kind = data.get("object")
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if kind == "chat.completion":
            choice.setdefault("logprobs", None)
            if isinstance(choice["logprobs"], dict):
                choice["logprobs"].setdefault("content", None)
                choice["logprobs"].setdefault("refusal", None)
            message = choice.get("message")
            if isinstance(message, dict):
                moved = message.get("provider_specific_fields")
                message.setdefault("refusal", moved.get("refusal") if isinstance(moved, dict) else None)
                message.setdefault("content", None)
        elif kind == "chat.completion.chunk":
            choice.setdefault("finish_reason", None)
        elif kind == "text_completion":
            choice.setdefault("logprobs", None)
    return _clean(data)


def _json(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A provider's lone surrogate escape ("\ud800") has no UTF-8 form: kept escaped, never a 5xx.
        return json.dumps(value, separators=(",", ":")).encode("ascii")


class SpecShape:
    """Send-wrapper: successful answers in OpenAI's shape.

    LiteLLM's own fields and its nulls where the schema has none are removed (plain answers and stream events). A
    stream's usage event, which the gateway always asks the provider for (settlement needs it), reaches the client
    only if the client asked for it, and then as OpenAI sends it: ``choices: []``. Error answers are the gateway's
    own and pass unchanged.
    """

    def __init__(self, send: Send, *, usage_requested: bool, response_id: str | None = None,
                 model: str | None = None, request: Mapping[str, Any] | None = None) -> None:
        self._send = send
        self._usage_requested = usage_requested
        self._response_id = response_id  # Responses API: the id and model name the client is given
        self._model = model
        self._request = request  # Responses API: the approved request, whose settings a Response echoes
        self._start: Message | None = None
        self._held: list[bytes] = []
        self._streaming = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if int(message["status"]) >= 400:
                await self._send(message)
                return
            headers = list(message.get("headers", ()))
            self._streaming = dict(headers).get(b"content-type", b"").startswith(b"text/event-stream")
            if self._streaming:
                await self._send(message)
            else:
                self._start = message
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        if self._streaming:
            await self._send({**message, "body": self._stream_chunk(message.get("body", b""))})
            return
        if self._start is None:  # an error answer's body
            await self._send(message)
            return
        self._held.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self._held)
        with contextlib.suppress(ValueError):  # not JSON: passed as it is
            data = openai_shape(json.loads(body))
            if isinstance(data, dict) and data.get("object") == "response":
                data = response_shape(data, self._response_id, self._model, self._request)
            body = _json(data)
        headers = [(k, v) for k, v in self._start.get("headers", ()) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        start, self._start = self._start, None
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    def _stream_chunk(self, chunk: bytes) -> bytes:
        events = chunk.split(b"\n\n")
        kept = []
        for event in events:
            # The event's data line (a block may start with other lines, such as an ``event:`` or a blank line).
            lines = event.split(b"\n")
            at = next((i for i, line in enumerate(lines) if line.startswith(b"data: {")), None)
            if at is None:
                kept.append(event)
                continue
            try:
                data = json.loads(lines[at][6:])
            except ValueError:
                kept.append(event)
                continue
            if isinstance(data, dict) and isinstance(data.get("usage"), dict) and not any(
                    isinstance(c, dict) and (c.get("delta") or c.get("finish_reason")) for c in data.get("choices") or []):
                # The usage event (LiteLLM sends it with an empty delta): the client's only if it asked.
                if not self._usage_requested:
                    continue
                data["choices"] = []
            elif isinstance(data, dict) and str(data.get("type", "")).startswith("response."):
                # A Responses API event: LiteLLM adds the model name to each; OpenAI's events do not have it.
                data.pop("model", None)
                if isinstance(data.get("response"), dict):
                    data["response"] = response_shape(openai_shape(data["response"]), self._response_id,
                                                      self._model, self._request)
            elif isinstance(data, dict) and data.get("usage") is None:
                data.pop("usage", None)
            lines[at] = b"data: " + _json(openai_shape(data))
            kept.append(b"\n".join(lines))
        return b"\n\n".join(kept)


def llm_scope(scope: Scope, principal: Principal, raw_body: bytes, llm_state: dict[str, Any]) -> Scope:
    """The scope LiteLLM gets: the principal as a Python object, allow-listed headers, no query string."""
    inner = dict(scope)
    inner["headers"] = scrub_request(scope, len(raw_body))
    inner["query_string"] = b""
    inner["state"] = {**(scope.get("state") or {}), **llm_state}
    inner[PRINCIPAL_SCOPE_KEY] = principal
    return inner


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
    meter: Meter,
    approval: Approval,
    audit: AuditLog,
    usage_requested: bool = False,
) -> None:
    """Call LiteLLM with the approved body; its answer passes error replacement, the header allow-list, metering and
    the spec shape (in that order) on its way to the client. Settles the request's reservation before returning.
    ``usage_requested``: the client asked for a stream's usage event (``stream_options.include_usage``)."""
    response_id = "resp_" + request_id.removeprefix("req_") if approval.mode == "responses" else None
    metering = Metering(SpecShape(send, usage_requested=usage_requested, response_id=response_id,
                                  model=approval.model, request=approval.body if response_id else None), meter)
    errors = ErrorReplacement(scrubbed_headers(metering, request_id), meter=meter, approval=approval,
                              principal=principal, request_id=request_id, audit=audit)
    # The approval rides in the context of this task; LiteLLM's call runs in it (or in tasks that copy it).
    meter.attach(approval)
    token = CURRENT.set(approval)
    try:
        await llm_app(llm_scope(scope, principal, raw_body, llm_state), replay(raw_body, receive), errors)
    except Exception:
        # LiteLLM's error middleware re-raises some exceptions after (or instead of) answering. One raised before the
        # provider call, on a request that passed the pre-flight, means LiteLLM refused what it read.
        if approval.dispatched or errors.failed_status is not None or metering.began:
            raise
        await errors.refuse()
    finally:
        CURRENT.reset(token)
        await metering.settle()
