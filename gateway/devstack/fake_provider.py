"""PROVIDER STAND-IN, NOT A REAL LLM: a tiny OpenAI-compatible server for `gateway dev` and the tests.

It answers chat completions (plain and SSE streaming, with a final usage chunk when asked), text completions,
embeddings, Responses API calls (plain, and streamed as OpenAI's event sequence ending in ``response.completed`` with
usage; a ``function_call`` item when function tools are offered) and the model list with canned, deterministic content, and records every request it receives (method,
path, query, headers, JSON body) so tests can assert on exactly what reached "the provider".

Two more wire protocols, each checking its credential as the real service does: Anthropic's Messages API
(``POST /v1/messages``: ``x-api-key`` and ``anthropic-version`` headers, text or ``tool_use`` content blocks, usage
with the prompt-cache fields, and its SSE event sequence; a wrong key gets Anthropic's 401 ``authentication_error``
body) and Azure OpenAI (``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` with an ``api-key``
header, answered in OpenAI's chat shapes; a wrong key gets Azure's 401) and Google AI Studio's Gemini API
(``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse`` with an ``x-goog-api-key``
header: text or ``functionCall`` parts, ``usageMetadata`` with thinking tokens; a wrong key gets Google's 400
``API_KEY_INVALID``, a key in the URL's query Google's 403), AWS Bedrock's Converse API
(``POST /model/{modelId}/converse`` and ``/converse-stream``, SigV4-signed: the signature is recomputed with the secret
of the access key id it names; text or ``toolUse`` blocks, ``usage``, ConverseStream in event-stream framing; an
unknown key gets AWS's 403 ``UnrecognizedClientException``, a bad signature its ``InvalidSignatureException``;
:mod:`gateway.devstack.standin_bedrock`) and, given service accounts, Google Cloud's Vertex AI
(an OAuth token endpoint checking the service account's signed assertion, and generateContent under
``/v1/projects/{project}/locations/{location}/publishers/google/models/{model}`` with the bearer token it issued:
:mod:`gateway.devstack.standin_vertex`). ``POST /standin-redirect/<path>`` answers 307 to ``/<path>``: a provider
endpoint that redirects.

Recorded requests can be read at ``GET /_standin/requests`` and cleared with ``DELETE /_standin/requests``.
An upstream model named ``standin-error-500`` answers 500, ``standin-echo-error`` answers 400 with an error that echoes
the Authorization header and URL it received; ``standin-slow-<ms>`` waits that many milliseconds before
answering (and between stream chunks). A chat request whose first message is ``standin-status:<code>`` answers that
status for that request alone (with ``Retry-After: 3600`` on a 429): an upstream error one client's request causes;
``standin-status:400:context_window`` and ``standin-status:400:content_policy`` answer OpenAI's 400 for a prompt over
the context window and for a content-policy refusal. ``standin-stream-break`` streams its first chunk, then drops the
connection (a stream that fails mid-way, after the provider began billing).
A streamed Responses API call whose input is ``standin-stream-error`` fails after its first event with an ``error``
event that echoes the Authorization header it received.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.devstack.standin_anthropic import REPLY, anthropic_error, anthropic_events, anthropic_message
from gateway.devstack.standin_bedrock import (
    aws_credentials,
    bedrock_error,
    check_signature,
    converse_answer,
    converse_events,
)
from gateway.devstack.standin_gemini import BAD_KEY_MESSAGE, gemini_error, gemini_reply
from gateway.devstack.standin_vertex import ServiceAccounts, accounts_from_json, vertex_routes


class Recorder:
    def __init__(self, keep: int | None = None) -> None:
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._keep = keep

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(entry)
            if self._keep is not None and len(self._requests) > self._keep:
                del self._requests[0]

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()


# The provider account's own rate-limit figures, as OpenAI sends them on every answer; recognisable values, so tests
# can tell that they never reach a client (the gateway sends each key's own figures instead).
PROVIDER_LIMITS = {"x-ratelimit-limit-requests": "424242", "x-ratelimit-remaining-requests": "424241",
                   "x-ratelimit-reset-requests": "42ms", "x-ratelimit-limit-tokens": "4242424242",
                   "x-ratelimit-remaining-tokens": "4242424200", "x-ratelimit-reset-tokens": "42ms",
                   # Load-balancer affinity, as some providers' front ends set it: a client must not replay it.
                   "set-cookie": "standin-affinity=replica-7; Path=/"}


def _called_tool(body: dict[str, Any]) -> str | None:
    """The function the stand-in calls: the first tool's, unless tool_choice declines (none) or names another."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return str(choice["function"].get("name"))
    return str(tools[0]["function"].get("name"))


def _logprobs(body: dict[str, Any]) -> dict[str, Any]:
    requested = body.get("top_logprobs")
    top = requested if isinstance(requested, int) else 0
    content = []
    for i, word in enumerate(REPLY.split(" ")):
        token = word if i == 0 else " " + word
        entry = {"token": token, "logprob": -0.25 * (i + 1), "bytes": list(token.encode())}
        content.append({**entry, "top_logprobs": [entry] * min(top, 1)})
    return {"content": content, "refusal": None}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# OpenAI's 400 answers for a prompt over the model's context window and for a content-policy refusal (LiteLLM maps
# them to ContextWindowExceededError and ContentPolicyViolationError).
CLIENT_ERRORS: dict[str, dict[str, Any]] = {
    "context_window": {"message": "This model's maximum context length is 8192 tokens. However, your messages "
                                  "resulted in 9000 tokens. Please reduce the length of the messages.",
                       "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"},
    "content_policy": {"message": "Your request was rejected as a result of our safety system.",
                       "type": "invalid_request_error", "param": None, "code": "content_policy_violation"},
}


def _status_trigger(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    messages = body.get("messages")
    first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
    match = re.fullmatch(r"standin-status:(\d{3})(?::(context_window|content_policy))?", str(first.get("content")))
    if not match:
        return None
    error: dict[str, Any] = CLIENT_ERRORS.get(match.group(2) or "", {"message": "stand-in status",
                                                                   "type": "invalid_request_error"})
    return int(match.group(1)), error


def _called_responses_tool(body: dict[str, Any]) -> str | None:
    """The Responses API's function tools are flat (``{"type": "function", "name": ...}``); same rule as chat."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return str(choice.get("name"))
    return str(tools[0].get("name"))


def _responses_usage(body: dict[str, Any], output: int) -> dict[str, Any]:
    # Input tokens grow with the input, so a test can tell the provider's figure from a constant.
    prompt = 9 + len(json.dumps(body.get("input", ""))) // 8
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + output}


def _response_object(body: dict[str, Any], status: str, output: list[dict[str, Any]],
                     usage: dict[str, Any] | None, created: int) -> dict[str, Any]:
    """A Response object as OpenAI answers it: every field present, the request's settings echoed."""
    # Function tools come back with OpenAI's defaults filled in.
    tools = [{"description": None, "strict": True, **tool} for tool in body.get("tools") or []
             if isinstance(tool, dict)]
    return {
        "id": "resp_standin", "object": "response", "created_at": created, "status": status,
        "completed_at": created if status == "completed" else None,
        "background": False, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None, "model": body.get("model", "unknown"), "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0), "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"), "tools": tools, "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"), "usage": usage,
        "user": None, "metadata": {}, "safety_identifier": body.get("safety_identifier"),
        "prompt_cache_key": None,
    }


def _responses_events(body: dict[str, Any], created: int, delay: float, tool: str | None) -> AsyncIterator[str]:
    """OpenAI's stream for one output item: created, in_progress, output_item.added, then for a message
    content_part.added, the output_text deltas, output_text.done, content_part.done (for a function call the
    arguments' delta and done), output_item.done, completed (with usage)."""

    async def events() -> AsyncIterator[str]:
        sequence = 0

        def event(kind: str, **fields: Any) -> str:
            nonlocal sequence
            payload = {"type": kind, "sequence_number": sequence, **fields}
            sequence += 1
            return f"event: {kind}\ndata: {json.dumps(payload)}\n\n"

        words = REPLY.split(" ")
        yield event("response.created", response=_response_object(body, "in_progress", [], None, created))
        yield event("response.in_progress", response=_response_object(body, "in_progress", [], None, created))
        if tool is not None:
            item: dict[str, Any] = {"id": "fc_standin", "type": "function_call", "status": "in_progress",
                                    "call_id": "call_standin", "name": tool, "arguments": ""}
            yield event("response.output_item.added", output_index=0, item=item)
            yield event("response.function_call_arguments.delta", item_id="fc_standin", output_index=0, delta="{}")
            yield event("response.function_call_arguments.done", item_id="fc_standin", output_index=0,
                        name=tool, arguments="{}")
            done_item = {**item, "status": "completed", "arguments": "{}"}
            output = 1
        else:
            item_id = "msg_standin"
            item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            yield event("response.output_item.added", output_index=0, item=item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield event("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part=part)
            for i, word in enumerate(words):
                if delay:
                    await asyncio.sleep(delay)
                yield event("response.output_text.delta", item_id=item_id, output_index=0, content_index=0,
                            delta=word + (" " if i < len(words) - 1 else ""), logprobs=[])
            yield event("response.output_text.done", item_id=item_id, output_index=0, content_index=0, text=REPLY,
                        logprobs=[])
            done_part = {**part, "text": REPLY}
            yield event("response.content_part.done", item_id=item_id, output_index=0, content_index=0,
                        part=done_part)
            done_item = {**item, "status": "completed", "content": [done_part]}
            output = len(words)
        yield event("response.output_item.done", output_index=0, item=done_item)
        yield event("response.completed", response=_response_object(
            body, "completed", [done_item], _responses_usage(body, output), created))

    return events()


# Azure OpenAI's answer to a missing or wrong api-key.
AZURE_401 = {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. "
                                                 "Make sure to provide a valid key for an active subscription and use "
                                                 "a correct regional API endpoint for your resource."}}


def _accepted(presented: str | None, credentials: Collection[str] | None) -> bool:
    if not presented:
        return False
    if credentials is None:
        return True
    return any(hmac.compare_digest(presented.encode(), key.encode()) for key in credentials)


def build_app(recorder: Recorder | None = None, credentials: Collection[str] | None = None,
              service_accounts: ServiceAccounts | None = None) -> Starlette:
    """``credentials``: the keys the Anthropic, Azure and Gemini protocols accept (as the real services check theirs),
    and the AWS credentials (JSON objects, as Vault holds them) whose signatures the Bedrock protocol accepts; None
    accepts any non-empty key and any well-formed signature. The OpenAI-compatible protocol accepts any key, and
    records it. ``service_accounts``: the accounts Vertex AI's token endpoint knows
    (:mod:`gateway.devstack.standin_vertex`); none, no Vertex AI protocol."""
    recorder = recorder or Recorder()
    aws_keys = aws_credentials(credentials)

    async def record(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        entry = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            # Which connection it came on: a client that pools connections reuses a few ports.
            "client_port": request.client.port if request.client else None,
        }
        recorder.add(entry)
        return entry

    async def chat(request: Request) -> Response:
        entry = await record(request)
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        return await answer_chat(request, body, body.get("model", "unknown"))

    async def azure_chat(request: Request) -> Response:
        # Azure OpenAI: the deployment in the path names the model, the API version is a query parameter, and the
        # key travels in the api-key header. The answers are OpenAI's chat shapes.
        entry = await record(request)
        if not _accepted(request.headers.get("api-key"), credentials):
            return JSONResponse(AZURE_401, status_code=401)
        if not request.query_params.get("api-version"):
            return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, status_code=404)
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        return await answer_chat(request, body, request.path_params["deployment"])

    async def anthropic_messages(request: Request) -> Response:
        entry = await record(request)
        if not _accepted(request.headers.get("x-api-key"), credentials):
            return JSONResponse(anthropic_error("authentication_error", "invalid x-api-key"), status_code=401)
        if not request.headers.get("anthropic-version"):
            return JSONResponse(anthropic_error("invalid_request_error", "anthropic-version: header is required"),
                                status_code=400)
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        model = str(body.get("model", "unknown"))
        if model == "standin-error-500":
            return JSONResponse(anthropic_error("api_error", "Internal server error"), status_code=500)
        if model == "standin-echo-error":
            echoed = f"bad request from {request.headers.get('x-api-key')} at {request.url}"
            return JSONResponse(anthropic_error("invalid_request_error", echoed), status_code=400)
        slow = re.fullmatch(r"standin-slow-(\d+)", model)
        delay = int(slow.group(1)) / 1000 if slow else 0.0
        if body.get("stream"):
            return StreamingResponse(anthropic_events(body, delay), media_type="text/event-stream")
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse(anthropic_message(body))

    async def gemini_generate(request: Request) -> Response:
        # Google AI Studio: the model and the method in the path ("standin-chat:generateContent"), the key in the
        # x-goog-api-key header. The gateway must never send the key in the URL, where logs and error texts carry it:
        # this stand-in refuses a key= query parameter outright.
        entry = await record(request)
        model, _, method = str(request.path_params["target"]).partition(":")
        if "key" in request.query_params:
            return JSONResponse(gemini_error(403, "PERMISSION_DENIED", "API keys are not accepted in the URL here."),
                                status_code=403)
        if not _accepted(request.headers.get("x-goog-api-key"), credentials):
            return JSONResponse(gemini_error(400, "INVALID_ARGUMENT", BAD_KEY_MESSAGE, "API_KEY_INVALID"),
                                status_code=400)
        return await gemini_reply(request, entry, model, method, model,
                                  f"bad request from {request.headers.get('x-goog-api-key')} at {request.url}")

    async def bedrock_converse(request: Request) -> Response:
        # AWS Bedrock: the model id in the path (percent-encoded by the client), the call signed with SigV4 over the
        # raw path, the signed headers and the body.
        entry = await record(request)
        model_id = str(request.path_params["model_id"])
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        url = f"{request.url.scheme}://{request.headers.get('host', '')}{raw_path.decode('latin-1')}"
        if request.url.query:
            url += "?" + request.url.query
        refused = check_signature(request.method, url, entry["headers"], await request.body(), aws_keys)
        if refused is not None:
            status, headers, error = bedrock_error(*refused)
            return JSONResponse(error, status_code=status, headers=headers)
        if request.path_params["action"] not in ("converse", "converse-stream"):
            return JSONResponse({"message": "Unknown operation"}, status_code=404)
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        if model_id == "standin-error-500":
            status, headers, error = bedrock_error("InternalServerException", "The server encountered an error.")
            return JSONResponse(error, status_code=status, headers=headers)
        if model_id == "standin-echo-error":
            echoed = f"bad request from {request.headers.get('authorization')} at {request.url}"
            status, headers, error = bedrock_error("ValidationException", echoed)
            return JSONResponse(error, status_code=status, headers=headers)
        slow = re.fullmatch(r"standin-slow-(\d+)", model_id)
        delay = int(slow.group(1)) / 1000 if slow else 0.0
        if request.path_params["action"] == "converse-stream":
            return StreamingResponse(converse_events(body, model_id, delay),
                                     media_type="application/vnd.amazon.eventstream")
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse(converse_answer(body, model_id))

    async def redirect(request: Request) -> Response:
        # A provider endpoint that redirects elsewhere (here: to the stand-in's own real path). A client that
        # followed it would send the provider key on to wherever the redirect points.
        await record(request)
        query = f"?{request.url.query}" if request.url.query else ""
        return Response(status_code=307, headers={"location": f"/{request.path_params['rest']}{query}"})

    async def answer_chat(request: Request, body: dict[str, Any], model: Any) -> Response:
        if model == "standin-error-500":
            return JSONResponse({"error": {"message": "stand-in failure", "type": "server_error"}}, status_code=500)
        triggered = _status_trigger(body)
        if triggered is not None:
            status, error = triggered
            headers = {"retry-after": "3600"} if status == 429 else {}
            return JSONResponse({"error": error}, status_code=status, headers=headers)
        if model == "standin-echo-error":
            # A hostile or careless provider: its error echoes the credential it received and its own URL.
            credential = request.headers.get("authorization") or request.headers.get("api-key")
            echoed = f"bad request from {credential} at {request.url}"
            return JSONResponse({"error": {"message": echoed, "type": "invalid_request_error"}}, status_code=400)
        created = int(time.time())
        slow = re.fullmatch(r"standin-slow-(\d+)", str(model))
        delay = int(slow.group(1)) / 1000 if slow else 0.0
        requested = body.get("n")
        n = requested if isinstance(requested, int) and 1 <= requested <= 8 else 1
        tool = _called_tool(body)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            async def events() -> AsyncIterator[str]:
                words = REPLY.split(" ")
                base = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": created, "model": model,
                        "service_tier": "default", "system_fingerprint": "fp_standin"}
                for i, word in enumerate(words):
                    if delay:
                        await asyncio.sleep(delay)
                    for index in range(n):  # the choices interleave, as OpenAI streams them
                        delta = {"content": word + (" " if i < len(words) - 1 else ""),
                                 **({"role": "assistant", "refusal": None} if i == 0 else {})}
                        chunk = {**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                      "finish_reason": None}]}
                        yield f"data: {json.dumps(chunk)}\n\n"
                    if model == "standin-stream-break":
                        raise ConnectionAbortedError("stand-in: the stream breaks after its first chunk")
                for index in range(n):
                    final = {**base, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                                  "finish_reason": "stop"}]}
                    yield f"data: {json.dumps(final)}\n\n"
                if include_usage:
                    usage = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": created,
                             "model": model, "choices": [], "usage": _usage(9, len(words) * n)}
                    yield f"data: {json.dumps(usage)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream", headers=PROVIDER_LIMITS)
        if delay:
            await asyncio.sleep(delay)
        # As OpenAI answers: refusal and logprobs present (null when not asked), annotations empty; n choices; a call
        # of the first function tool when tools are offered (and not declined); token logprobs when asked.
        choices = []
        for index in range(n):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool else REPLY, "refusal": None,
                                       "annotations": []}
            if tool:
                message["tool_calls"] = [{"id": f"call_standin_{index}", "type": "function",
                                          "function": {"name": tool, "arguments": "{}"}}]
            choices.append({"index": index, "message": message, "finish_reason": "tool_calls" if tool else "stop",
                            "logprobs": _logprobs(body) if body.get("logprobs") and not tool else None})
        return JSONResponse(
            {
                "id": "chatcmpl-standin", "object": "chat.completion", "created": created, "model": model,
                "choices": choices, "usage": _usage(9, 7 * n), "service_tier": "default",
                "system_fingerprint": "fp_standin",
            },
            headers=PROVIDER_LIMITS,
        )

    async def completions(request: Request) -> Response:
        entry = await record(request)
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        return JSONResponse(
            {
                "id": "cmpl-standin", "object": "text_completion", "created": int(time.time()),
                "model": body.get("model", "unknown"),
                "choices": [{"index": 0, "text": REPLY, "finish_reason": "stop", "logprobs": None}],
                "usage": _usage(5, 7),
            }
        )

    async def embeddings(request: Request) -> Response:
        entry = await record(request)
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        inputs = body.get("input", "")
        count = len(inputs) if isinstance(inputs, list) else 1
        return JSONResponse(
            {
                "object": "list", "model": body.get("model", "unknown"),
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(count)],
                "usage": {"prompt_tokens": 3 * count, "total_tokens": 3 * count},
            }
        )

    async def responses(request: Request) -> Response:
        entry = await record(request)
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        model = str(body.get("model", "unknown"))
        if model == "standin-error-500":
            return JSONResponse({"error": {"message": "stand-in failure", "type": "server_error"}}, status_code=500)
        created = int(time.time())
        slow = re.fullmatch(r"standin-slow-(\d+)", model)
        delay = int(slow.group(1)) / 1000 if slow else 0.0
        tool = _called_responses_tool(body)
        if body.get("stream") and body.get("input") == "standin-stream-error":
            # A provider that fails mid-stream, echoing the credential it received in its error event.
            leaked = f"failed for {request.headers.get('authorization')} at {request.url}"

            async def failing() -> AsyncIterator[str]:
                yield f"data: {json.dumps({'type': 'response.created', 'sequence_number': 0, 'response': _response_object(body, 'in_progress', [], None, created)})}\n\n"
                yield f"data: {json.dumps({'type': 'error', 'sequence_number': 1, 'code': 'server_error', 'message': leaked, 'param': None})}\n\n"

            return StreamingResponse(failing(), media_type="text/event-stream")
        if body.get("stream"):
            return StreamingResponse(_responses_events(body, created, delay, tool), media_type="text/event-stream",
                                     headers=PROVIDER_LIMITS)
        if delay:
            await asyncio.sleep(delay)
        output: list[dict[str, Any]]
        if tool is not None:
            output = [{"id": "fc_standin", "type": "function_call", "status": "completed", "call_id": "call_standin",
                       "name": tool, "arguments": "{}"}]
        else:
            output = [{"id": "msg_standin", "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": REPLY, "annotations": [], "logprobs": []}]}]
        usage = _responses_usage(body, 7)
        return JSONResponse(_response_object(body, "completed", output, usage, created), headers=PROVIDER_LIMITS)

    async def models(request: Request) -> Response:
        await record(request)
        return JSONResponse({"object": "list", "data": []})

    async def recorded(request: Request) -> Response:
        if request.method == "DELETE":
            recorder.clear()
            return JSONResponse({"cleared": True})
        return JSONResponse(recorder.all())

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/embeddings", embeddings, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/responses", responses, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/messages", anthropic_messages, methods=["POST"]),
            Route("/openai/deployments/{deployment}/chat/completions", azure_chat, methods=["POST"]),
            Route("/v1beta/models/{target}", gemini_generate, methods=["POST"]),
            Route("/model/{model_id}/{action:str}", bedrock_converse, methods=["POST"]),
            Route("/standin-redirect/{rest:path}", redirect, methods=["POST"]),
            Route("/_standin/requests", recorded, methods=["GET", "DELETE"]),
            *(vertex_routes(record, service_accounts) if service_accounts is not None else []),
        ]
    )
    app.state.recorder = recorder
    return app


def main() -> None:
    """``python -m gateway.devstack.fake_provider --port N``: serve the stand-in on 127.0.0.1."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Provider stand-in (NOT a real LLM).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keep", type=int, default=None,
                        help="record only the last N requests (benchmarks: a list growing by millions of entries "
                             "makes the stand-in's own garbage collection a latency spike of every configuration)")
    parser.add_argument("--credentials-from-stdin", action="store_true",
                        help="read the keys the Anthropic, Azure and Gemini protocols accept as one JSON list on stdin, "
                             "then, on an optional second line, the service accounts Vertex AI's token endpoint knows "
                             "(public keys only)")
    args = parser.parse_args()
    credentials, accounts = None, None
    if args.credentials_from_stdin:
        credentials = [str(key) for key in json.loads(sys.stdin.readline())]
        line = sys.stdin.readline()
        accounts = accounts_from_json(line) if line.strip() else None
    uvicorn.run(build_app(Recorder(keep=args.keep), credentials, accounts), host="127.0.0.1", port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
