"""PROVIDER STAND-IN, NOT A REAL LLM: the Anthropic Messages API's answers, for the stand-in's ``POST /v1/messages``
(:mod:`gateway.devstack.fake_provider`): message bodies with text or ``tool_use`` content blocks, usage with the
prompt-cache fields, the SSE event sequence of a streamed message, and Anthropic's error body."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

# The stand-in's one answer, on every protocol it speaks.
REPLY = "Hello from the provider stand-in."


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error body: ``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def _called_anthropic_tool(body: dict[str, Any]) -> str | None:
    """The tool the stand-in calls (Anthropic's flat tools, ``tool_choice`` auto/any/tool/none): same rule as chat,
    except that a conversation ending in a tool's result gets the answer in text."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    choice = body.get("tool_choice") or {}
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else {}
    answered = isinstance(last.get("content"), list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in last["content"])
    if not tools or answered or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    if isinstance(choice, dict) and choice.get("type") == "tool":
        return str(choice.get("name"))
    return str(tools[0]["name"])


# A system prompt "standin-cache" reports 3 tokens written to and 5 read from the prompt cache; "standin-cache:W:R"
# reports W and R.
CACHE_PROMPT = re.compile(r"standin-cache(?::(\d{1,6}):(\d{1,6}))?")


def _cache_tokens(body: dict[str, Any]) -> tuple[int, int]:
    system = body.get("system")
    texts = [system] if isinstance(system, str) else [
        b.get("text") for b in system if isinstance(b, dict)] if isinstance(system, list) else []
    for text in texts:
        match = CACHE_PROMPT.fullmatch(str(text))
        if match:
            return (int(match.group(1)), int(match.group(2))) if match.group(1) else (3, 5)
    return 0, 0


def _anthropic_usage(body: dict[str, Any], output: int) -> dict[str, Any]:
    # Input tokens grow with the request, so a test can tell the provider's figure from a constant. A cache system
    # prompt (CACHE_PROMPT) reports prompt-cache tokens as well (written and read), which Anthropic bills at their
    # own prices, apart from input_tokens.
    prompt = 9 + len(json.dumps(body.get("messages", ""))) // 8
    written, read = _cache_tokens(body)
    return {"input_tokens": prompt, "output_tokens": output,
            "cache_creation_input_tokens": written, "cache_read_input_tokens": read, "service_tier": "standard"}


def anthropic_message(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages API answer: a text block, or a tool_use block when tools are offered (and not declined)."""
    tool = _called_anthropic_tool(body)
    content: list[dict[str, Any]] = (
        [{"type": "tool_use", "id": "toolu_standin", "name": tool, "input": {}}] if tool
        else [{"type": "text", "text": REPLY}])
    return {"id": "msg_standin", "type": "message", "role": "assistant", "model": body.get("model", "unknown"),
            "content": content, "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
            "usage": _anthropic_usage(body, 7)}


def anthropic_events(body: dict[str, Any], delay: float) -> AsyncIterator[str]:
    """Anthropic's stream: message_start (with the input usage), one content block (text deltas, or a tool_use
    block's input_json_delta pieces) with its start and stop, message_delta (stop reason, output usage),
    message_stop."""

    async def events() -> AsyncIterator[str]:
        def event(kind: str, **fields: Any) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"

        tool = _called_anthropic_tool(body)
        words = REPLY.split(" ")
        output = 1 if tool else len(words)
        start_usage = {**_anthropic_usage(body, 1)}
        yield event("message_start", message={
            "id": "msg_standin", "type": "message", "role": "assistant", "model": body.get("model", "unknown"),
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage})
        if tool:
            yield event("content_block_start", index=0,
                        content_block={"type": "tool_use", "id": "toolu_standin", "name": tool, "input": {}})
            for piece in ("", "{}"):
                yield event("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": piece})
        else:
            yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
            yield event("ping")
            for i, word in enumerate(words):
                if delay:
                    await asyncio.sleep(delay)
                yield event("content_block_delta", index=0,
                            delta={"type": "text_delta", "text": word + (" " if i < len(words) - 1 else "")})
        yield event("content_block_stop", index=0)
        yield event("message_delta", delta={"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
                    usage={"output_tokens": output})
        yield event("message_stop")

    return events()
