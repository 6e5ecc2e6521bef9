"""PROVIDER STAND-IN, NOT A REAL LLM: Google AI Studio's Gemini API answers, for the stand-in's
``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``
(:mod:`gateway.devstack.fake_provider`): candidates with text or ``functionCall`` parts, ``usageMetadata`` with
thinking tokens, the SSE chunks of a streamed answer, and Google's error body."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gateway.devstack.standin_anthropic import REPLY

# Thinking tokens the stand-in reports on every answer: Gemini 2.5 models think by default and bill those tokens as
# output, reported apart from candidatesTokenCount (totalTokenCount counts both).
THOUGHTS = 3
# What Google answers for a key it does not know (HTTP 400, not 401).
BAD_KEY_MESSAGE = "API key not valid. Please pass a valid API key."


def gemini_error(code: int, status: str, message: str, reason: str | None = None) -> dict[str, Any]:
    """Google's error body: ``{"error": {"code", "message", "status", "details"}}``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]
    return {"error": error}


def gemini_prompt_tokens(body: dict[str, Any]) -> int:
    """Input tokens grow with the request's contents, so a test can tell the provider's figure from a constant."""
    return 9 + len(json.dumps(body.get("contents", ""))) // 8


def either(value: Any, camel: str) -> Any:
    """A field of a Gemini request under its JSON name (``functionDeclarations``) or its proto name
    (``function_declarations``): Google's API accepts both, and LiteLLM sends a mix of the two."""
    if not isinstance(value, dict):
        return None
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)
    return value.get(camel, value.get(snake))


def _called_gemini_tool(body: dict[str, Any]) -> str | None:
    """The function the stand-in calls: the first declared one, unless the function-calling mode is NONE or names
    others; a conversation ending in a function's response gets the answer in text."""
    declared = [f for tool in body.get("tools") or [] for f in either(tool, "functionDeclarations") or []
                if isinstance(f, dict) and f.get("name")]
    config = either(either(body, "toolConfig"), "functionCallingConfig") or {}
    contents = body.get("contents")
    last = contents[-1] if isinstance(contents, list) and contents and isinstance(contents[-1], dict) else {}
    answered = any(either(part, "functionResponse") is not None for part in last.get("parts") or [])
    if not declared or answered or config.get("mode") == "NONE":
        return None
    allowed = either(config, "allowedFunctionNames")
    if isinstance(allowed, list) and allowed:
        return str(allowed[0])
    return str(declared[0]["name"])


def _usage(body: dict[str, Any], output: int) -> dict[str, Any]:
    prompt = gemini_prompt_tokens(body)
    return {"promptTokenCount": prompt, "candidatesTokenCount": output, "thoughtsTokenCount": THOUGHTS,
            "totalTokenCount": prompt + output + THOUGHTS,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}


def gemini_answer(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A generateContent answer: one candidate with a text part, or a functionCall part when functions are offered."""
    tool = _called_gemini_tool(body)
    part: dict[str, Any] = {"functionCall": {"name": tool, "args": {}}} if tool else {"text": REPLY}
    return {"candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": _usage(body, 7), "modelVersion": model, "responseId": "standin-gemini"}


def gemini_chunks(body: dict[str, Any], model: str, delay: float) -> AsyncIterator[str]:
    """streamGenerateContent with ``alt=sse``: one ``data:`` line per chunk, each a partial answer; the prompt's
    usage rides on every chunk, the full usage and the finishReason on the last one."""

    async def chunks() -> AsyncIterator[str]:
        def chunk(parts: list[dict[str, Any]], usage: dict[str, Any], finish: str | None = None) -> str:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            answer = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
                      "responseId": "standin-gemini"}
            return f"data: {json.dumps(answer)}\n\n"

        prompt = gemini_prompt_tokens(body)
        tool = _called_gemini_tool(body)
        if tool:
            yield chunk([{"functionCall": {"name": tool, "args": {}}}], _usage(body, 1), "STOP")
            return
        words = REPLY.split(" ")
        for i, word in enumerate(words):
            if delay:
                await asyncio.sleep(delay)
            text = word + (" " if i < len(words) - 1 else "")
            if i < len(words) - 1:
                yield chunk([{"text": text}], {"promptTokenCount": prompt, "totalTokenCount": prompt})
            else:
                yield chunk([{"text": text}], _usage(body, len(words)), "STOP")

    return chunks()


async def gemini_reply(request: Request, entry: dict[str, Any], model: str, method: str, trigger: str,
                       echoed: str) -> Response:
    """The answer to a generateContent or streamGenerateContent call whose credential was accepted, for Google AI
    Studio and Vertex AI alike (they share the body). ``trigger`` is the model name the stand-in's test names are read
    from (``standin-error-500`` answers 500, ``standin-echo-error`` a 400 quoting ``echoed``, ``standin-slow-<ms>``
    waits)."""
    if method not in ("generateContent", "streamGenerateContent"):
        return JSONResponse(gemini_error(404, "NOT_FOUND", f"Method {method} not found."), status_code=404)
    body = entry["body"] if isinstance(entry["body"], dict) else {}
    if trigger == "standin-error-500":
        return JSONResponse(gemini_error(500, "INTERNAL", "Internal server error"), status_code=500)
    if trigger == "standin-echo-error":
        return JSONResponse(gemini_error(400, "INVALID_ARGUMENT", echoed), status_code=400)
    slow = re.fullmatch(r"standin-slow-(\d+)", trigger)
    delay = int(slow.group(1)) / 1000 if slow else 0.0
    if method == "streamGenerateContent":
        if request.query_params.get("alt") != "sse":
            return JSONResponse(gemini_error(400, "INVALID_ARGUMENT", "the stand-in streams SSE only (alt=sse)"),
                                status_code=400)
        return StreamingResponse(gemini_chunks(body, model, delay), media_type="text/event-stream")
    if delay:
        await asyncio.sleep(delay)
    return JSONResponse(gemini_answer(body, model))
