"""The Responses API (``POST /v1/responses``): its field allow-list, the text the guardrails scan, and its shaping.

The route is served stateless. Everything that would keep or read state in the provider account every tenant of this
gateway shares is refused: ``previous_response_id``, ``conversation``, ``store: true`` (``store: false`` is forwarded
on every call), ``background``, stored ``prompt`` templates, item ids and item references in the input. A conversation
continues by sending its earlier turns again, as with chat. Only function tools pass: the provider's hosted tools (web
and file search, code interpreter, computer use, remote MCP, image generation, shell …) are billed per call and reach
out on the provider's side, so nothing bounds their price before dispatch. Content is text, and images under chat's rules (a
public https URL or a base64 raster data URL, priced per image); files and audio are refused
(``unsupported_content``). Each decision, with its reason, is in docs/fields.md.

What LiteLLM 1.106.12 does with a call for an ``openai/…`` deployment (``litellm/responses/main.py`` and
``llms/openai/responses/transformation.py``): it forwards every field of OpenAI's request, rewrites a function tool's
``parameters`` schema where OpenAI's validator would refuse it (a ``pattern`` Python cannot compile, top-level
``anyOf``/``oneOf`` for some model families), drops input item ids it did not mint, raises ``max_output_tokens``
below 16 to 16, drops ``reasoning`` for models its cost map does not mark as reasoning, deletes every ``cache_control``
key at any depth of the input and tools (as it does for chat's messages and tools), and reads ``metadata`` and a
``prompt`` id as its own. The pre-flight refuses each of those inputs, so what reaches the provider is the approved
body (tests/security/test_differential.py).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.pipeline.errors import Denial
from gateway.pipeline.fields import (
    check_boolean,
    check_depth,
    check_image,
    check_integer,
    check_not_stripped,
    check_shared,
    check_strings,
    invalid,
    unsupported,
)

ALLOWED_TOP = {"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream",
               "stream_options", "store", "tools", "tool_choice", "parallel_tool_calls", "text", "truncation",
               "user", "safety_identifier", "top_logprobs", "include"}
MESSAGE_ITEM_FIELDS = {"type", "role", "content", "status"}
FUNCTION_CALL_ITEM_FIELDS = {"type", "call_id", "name", "arguments", "status"}
FUNCTION_OUTPUT_ITEM_FIELDS = {"type", "call_id", "output", "status"}
INPUT_TEXT_FIELDS = {"type", "text"}
INPUT_IMAGE_FIELDS = {"type", "image_url", "detail"}
OUTPUT_TEXT_FIELDS = {"type", "text", "annotations", "logprobs"}
FUNCTION_TOOL_FIELDS = {"type", "name", "description", "parameters", "strict"}
TOOL_CHOICE_FIELDS = {"type", "name"}
TEXT_FIELDS = {"format", "verbosity"}
TEXT_FORMAT_FIELDS = {"type", "name", "description", "schema", "strict"}
STREAM_OPTIONS_FIELDS = {"include_obfuscation"}
ROLES = ("user", "assistant", "system", "developer")
ITEM_STATUSES = ("in_progress", "completed", "incomplete")
# The one include value that needs no state and no hosted tool: token log probabilities of the answer's text.
INCLUDES = ("message.output_text.logprobs",)
# Why each refused top-level field is refused (the message names it; docs/fields.md has the same reasons).
REFUSED = {
    "previous_response_id": "a response of another request is state kept by the provider; nothing is kept here",
    "conversation": "a conversation is state kept by the provider; nothing is kept here",
    "background": "a background response is state kept by the provider, read back later",
    "prompt": "a stored prompt template lives in the provider account every tenant shares",
    "metadata": "it labels stored responses, and LiteLLM reads metadata as its own",
    "max_tool_calls": "it bounds hosted tools, which are not accepted",
    "service_tier": "another tier bills at another price, unknown before dispatch",
    "prompt_cache_key": "cache routing in the provider account every tenant shares",
    "prompt_cache_retention": "extended caching keeps the prompt in the provider account every tenant shares",
    "prompt_cache_options": "extended caching keeps the prompt in the provider account every tenant shares",
    "context_management": "server-side compaction returns opaque items meant to be sent back as state",
    "moderation": "a provider-side moderation pass is not priced by this gateway's policy",
    "reasoning": "LiteLLM drops it after its last check for models its cost map does not mark as reasoning, so "
                 "what reaches the provider could differ from what was approved",
}
# Top-level JSON Schema keywords LiteLLM rewrites for OpenAI's validator (a schema using them is refused, so the
# provider gets the schema that was approved).
REWRITTEN_SCHEMA_KEYS = {"anyOf", "oneOf", "allOf", "$ref", "not", "if", "then", "else"}


def unsupported_content(where: str, why: str) -> Denial:
    return Denial(400, "unsupported_content", f"Unsupported content at {where}: {why}.", param=where)


def _only(obj: Any, allowed: set[str], path: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise invalid(path, "must be an object")
    for key in obj:
        if key not in allowed:
            why = "an item id refers to an item the provider stored; nothing is stored" if key == "id" else None
            raise unsupported(f"{path}.{key}" if path else key, why)
    return obj


def _string(obj: dict[str, Any], name: str, path: str, *, required: bool = True) -> None:
    value = obj.get(name)
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise invalid(f"{path}.{name}", "must be a string")


def _status(item: dict[str, Any], path: str) -> None:
    if item.get("status") is not None and item["status"] not in ITEM_STATUSES:
        raise invalid(f"{path}.status", "must be in_progress, completed or incomplete")


def _content(content: Any, role: str, path: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise invalid(path, "must be a string or a non-empty list of text parts")
    for j, part in enumerate(content):
        where = f"{path}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_image" and role == "user":
            # Chat's image rules: a public https URL or a base64 raster data URL, priced per image (shaping).
            _only(part, INPUT_IMAGE_FIELDS, where)
            check_image(part.get("image_url"), part.get("detail"), f"{where}.image_url", f"{where}.detail")
            continue
        if kind == "input_text":
            _only(part, INPUT_TEXT_FIELDS, where)
        elif kind == "output_text" and role == "assistant":
            _only(part, OUTPUT_TEXT_FIELDS, where)
            for name in ("annotations", "logprobs"):
                if part.get(name) not in (None, []):
                    raise invalid(f"{where}.{name}", "must be empty (an earlier answer's text is sent back as text)")
        else:
            raise unsupported_content(where, "only text and image parts are accepted (files and audio cannot be "
                                             "priced in advance)")
        _string(part, "text", where)


def _input(value: Any, max_items: int) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not value:
        raise invalid("input", "must be a string or a non-empty list of items")
    if len(value) > max_items:
        raise Denial(400, "too_many_messages", f"At most {max_items} input items per request.", param="input")
    for i, item in enumerate(value):
        path = f"input[{i}]"
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message":
            _only(item, MESSAGE_ITEM_FIELDS, path)
            role = item.get("role")
            if role not in ROLES:
                raise invalid(f"{path}.role", "must be user, assistant, system or developer")
            _content(item.get("content"), role, f"{path}.content")
        elif kind == "function_call":
            _only(item, FUNCTION_CALL_ITEM_FIELDS, path)
            for name in ("call_id", "name", "arguments"):
                _string(item, name, path)
        elif kind == "function_call_output":
            _only(item, FUNCTION_OUTPUT_ITEM_FIELDS, path)
            _string(item, "call_id", path)
            _string(item, "output", path)
        else:
            raise unsupported_content(path, "only message, function_call and function_call_output items are "
                                            "accepted (other items belong to hosted tools or to stored state)")
        if isinstance(item, dict):
            _status(item, path)
            # As chat's tool_call_id and name: identifiers, never JSON holding a steering field.
            check_strings([(f"{path}.call_id", item.get("call_id")), (f"{path}.name", item.get("name"))])


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid("tools", "must be a list")
    for i, tool in enumerate(tools or []):
        path = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise Denial(400, "unsupported_tool", "Only function tools are accepted: the provider's hosted tools (web "
                         "search, file search, code interpreter, computer use, remote MCP, …) are not priced by this "
                         "gateway's policy.", param=path)
        _only(tool, FUNCTION_TOOL_FIELDS, path)
        _string(tool, "name", path)
        _string(tool, "description", path, required=False)
        parameters = tool.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, dict):
                raise invalid(f"{path}.parameters", "must be a JSON Schema object")
            # LiteLLM would rewrite such a schema before sending it; refused so the provider gets what was approved.
            if REWRITTEN_SCHEMA_KEYS & set(parameters) or not _python_patterns(parameters):
                raise invalid(f"{path}.parameters", "top-level anyOf/oneOf/allOf and patterns Python cannot compile "
                                                    "are not accepted")
        if tool.get("strict") is not None and not isinstance(tool["strict"], bool):
            raise invalid(f"{path}.strict", "must be a boolean")
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        _only(choice, TOOL_CHOICE_FIELDS, "tool_choice")
        if choice.get("type") != "function":
            raise Denial(400, "unsupported_tool", "Only a function may be chosen: hosted tools are not accepted.",
                         param="tool_choice.type")
        _string(choice, "name", "tool_choice")
    elif choice is not None and choice not in ("none", "auto", "required"):
        raise invalid("tool_choice", "must be none, auto, required or a function choice")


def _compiles(pattern: Any) -> bool:
    try:
        re.compile(pattern)
    except (re.error, TypeError, RecursionError):
        return False
    return True


def _python_patterns(schema: Any) -> bool:
    """Every ``pattern`` value and ``patternProperties`` key anywhere in the schema compiles as a Python regex
    (LiteLLM drops those that do not)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "pattern" in node and not _compiles(node["pattern"]):
                return False
            properties = node.get("patternProperties")
            if isinstance(properties, dict) and not all(_compiles(key) for key in properties):
                return False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


def _text(body: dict[str, Any]) -> None:
    text = body.get("text")
    if text is None:
        return
    _only(text, TEXT_FIELDS, "text")
    if text.get("verbosity") not in (None, "low", "medium", "high"):
        raise invalid("text.verbosity", "must be low, medium or high")
    if text.get("format") is not None:
        text_format = _only(text["format"], TEXT_FORMAT_FIELDS, "text.format")
        if text_format.get("type") not in ("text", "json_object", "json_schema"):
            raise invalid("text.format.type", "must be text, json_object or json_schema")


def check_response_fields(body: dict[str, Any], *, max_depth: int, max_items: int) -> None:
    """Raise :class:`Denial` unless every field of a Responses API request is one the gateway serves (stateless)."""
    check_depth(body, max_depth)
    for name in body:
        if name not in ALLOWED_TOP:
            raise unsupported(name, REFUSED.get(name))
    check_shared(body)
    check_boolean(body, "parallel_tool_calls")
    check_integer(body, "top_logprobs", 0, 20)
    if "input" not in body:
        raise invalid("input", "is required")
    _input(body["input"], max_items)
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise invalid("instructions", "must be a string")
    # Stored responses would be kept in the provider account every tenant of this gateway shares.
    if body.get("store") not in (None, False):
        raise invalid("store", "only false is accepted (stored responses would be kept in the provider account "
                               "every tenant of this gateway shares)")
    if body.get("stream_options") is not None:
        _only(body["stream_options"], STREAM_OPTIONS_FIELDS, "stream_options")
        obfuscation = body["stream_options"].get("include_obfuscation")
        if obfuscation is not None and not isinstance(obfuscation, bool):
            raise invalid("stream_options.include_obfuscation", "must be a boolean")
    include = body.get("include")
    if include is not None and not (isinstance(include, list) and all(value in INCLUDES for value in include)):
        raise invalid("include", "only message.output_text.logprobs is accepted (the others need state or hosted "
                                 "tools)")
    if body.get("truncation") not in (None, "auto", "disabled"):
        raise invalid("truncation", "must be auto or disabled")
    _tools(body)
    _text(body)
    for name in ("input", "tools"):
        check_not_stripped(body.get(name), name)


def response_texts(body: dict[str, Any]) -> list[str]:
    """What the guardrails scan: the instructions, the input text, function calls' arguments and outputs."""
    texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    value = body.get("input")
    if isinstance(value, str):
        return [*texts, value]
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                # An image URL reaches the provider, which fetches it: a secret in it goes to that host.
                texts += [part[name] for name in ("text", "image_url") if isinstance(part.get(name), str)
                          and (name == "text" or part[name].startswith("https://"))]
        texts += [item[name] for name in ("arguments", "output") if isinstance(item.get(name), str)]
    return texts


def input_items(body: dict[str, Any]) -> int:
    """The number of input items (a string input is one message), for the per-message overhead of the estimate."""
    value = body.get("input")
    return len(value) if isinstance(value, list) else 1


def input_images(body: dict[str, Any]) -> int:
    """The number of image parts in the input (each priced at the model's ``max_image_tokens``)."""
    value = body.get("input")
    return sum(1 for item in value if isinstance(item, dict) and isinstance(item.get("content"), list)
               for part in item["content"] if isinstance(part, dict) and part.get("type") == "input_image") \
        if isinstance(value, list) else 0
