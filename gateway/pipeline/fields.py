"""Step: only the fields of the OpenAI API reach LiteLLM — an allow-list per route, at every nesting level.

Anything else is ``400 unsupported_parameter`` naming the field, before LiteLLM sees the request. LiteLLM honours many
non-OpenAI fields that steer a call (``api_base``, ``api_key``, ``extra_headers``, ``user_config``, ``metadata``,
``litellm_*``, provider credential aliases …); none of them is on these lists, at the top or nested. Strings in
free-form places (``user``, ``stop``, tool-call arguments are excepted: they are data) that hold a JSON object with a
steering key are refused too, since LiteLLM parses some string fields as JSON.

Free-form JSON Schema objects (``tools[].function.parameters``, ``response_format.json_schema.schema``) are not
inspected key by key: their keys are property names of the caller's own schema, which LiteLLM passes through as data.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any, Literal

from gateway.pipeline.errors import Denial
from gateway.policy import ModelMode

# What a customer route does: a model mode's call, or the Responses API (served by chat models).
RouteKind = Literal["chat", "completion", "embedding", "responses"]

COMMON = {"model", "user", "stream", "stream_options", "n", "max_tokens", "temperature", "top_p", "stop", "seed",
          "presence_penalty", "frequency_penalty", "logit_bias", "logprobs"}
ALLOWED_TOP = {
    "chat": COMMON | {"messages", "max_completion_tokens", "top_logprobs", "response_format", "tools",
                      "tool_choice", "parallel_tool_calls", "functions", "function_call", "reasoning_effort",
                      "store", "safety_identifier"},
    "completion": COMMON | {"prompt", "best_of", "echo", "suffix"},
    "embedding": {"model", "input", "encoding_format", "dimensions", "user"},
}
MESSAGE_FIELDS = {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal"}
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
CONTENT_PART_FIELDS = {"type", "text", "image_url"}
IMAGE_URL_FIELDS = {"url", "detail"}
IMAGE_DETAILS = ("low", "high", "auto")
# An image is sent by reference (https) or inline (a base64 data URL of a raster type); nothing else. LiteLLM passes
# both to an OpenAI-compatible provider as they are (it fetches nothing in-process for them; the test runs a loopback
# listener that must never be contacted). A host that is an IP address of this network, or a name for one, is
# refused all the same, in case a later provider kind has LiteLLM fetch it (threat-model TM-I8).
IMAGE_DATA_URL = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}")
IMAGE_HTTPS_URL = re.compile(r"https://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:/[^\s]*)?")
TOOL_FIELDS = {"type", "function"}
FUNCTION_FIELDS = {"name", "description", "parameters", "strict"}
TOOL_CALL_FIELDS = {"id", "type", "function", "index"}
CALLED_FUNCTION_FIELDS = {"name", "arguments"}
RESPONSE_FORMAT_FIELDS = {"type", "json_schema"}
JSON_SCHEMA_FIELDS = {"name", "description", "schema", "strict"}
STREAM_OPTIONS_FIELDS = {"include_usage"}
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")

# Keys that would steer LiteLLM if they appeared in a JSON object it parses out of a string.
STEERING_KEYS = {
    "api_base", "base_url", "api_key", "api_version", "azure_ad_token", "organization", "custom_llm_provider",
    "user_config", "extra_headers", "headers", "extra_body", "metadata", "litellm_metadata", "model_list",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "vertex_credentials", "mock_response",
    "callbacks", "success_callback", "failure_callback", "input_cost_per_token", "output_cost_per_token",
    # Anthropic: the API version and beta headers LiteLLM sends, and its bearer-token alternative to the key.
    "anthropic_version", "anthropic_beta", "auth_token",
    # Azure OpenAI: the deployment, and every credential LiteLLM accepts besides the key (Entra ID logins, tokens).
    "deployment_id", "azure_ad_token_provider", "azure_username", "azure_password", "azure_scope", "tenant_id",
    "client_id", "client_secret", "azure_authority_host",
    # Any kind: which model or region the provider call goes to.
    "model_id", "aws_region_name", "vertex_project", "vertex_location",
    # Bedrock: every other source of AWS credentials, and the runtime endpoint.
    "aws_role_name", "aws_session_name", "aws_profile_name", "aws_web_identity_token", "aws_sts_endpoint",
    "aws_external_id", "aws_bedrock_runtime_endpoint", "aws_bedrock_client",
    # Gemini: LiteLLM's other names for the Vertex project, location and credentials, and its custom-endpoint switch.
    "vertex_ai_project", "vertex_ai_location", "vertex_ai_credentials", "use_psc_endpoint_format",
}
# Fields of the provider kinds the gateway serves that would select a provider, deployment, API version or
# credential if LiteLLM took them from a request body. None of them is on the allow-lists above, so each is refused
# with unsupported_parameter wherever it appears (tests/functional/test_provider_kinds.py sends each to every kind).
KIND_STEERING_FIELDS = {
    "anthropic": ("anthropic_version", "anthropic_beta", "auth_token", "api_key", "api_base", "base_url",
                  "extra_headers", "custom_llm_provider"),
    "azure": ("api_version", "deployment_id", "azure_ad_token", "azure_ad_token_provider", "azure_username",
              "azure_password", "azure_scope", "tenant_id", "client_id", "client_secret", "api_key", "api_base",
              "base_url", "extra_headers", "custom_llm_provider"),
    "gemini": ("vertex_project", "vertex_location", "vertex_credentials", "vertex_ai_project", "vertex_ai_location",
               "vertex_ai_credentials", "use_psc_endpoint_format", "api_key", "api_base", "base_url", "extra_headers",
               "custom_llm_provider"),
    "vertex_ai": ("vertex_project", "vertex_location", "vertex_credentials", "vertex_ai_project",
                  "vertex_ai_location", "vertex_ai_credentials", "vertex_count_tokens_location",
                  "use_psc_endpoint_format", "base_model", "api_key", "api_base", "base_url", "extra_headers",
                  "custom_llm_provider"),
    # Bedrock: the region, the runtime endpoint, every credential source LiteLLM's AWS code accepts (keys, bearer
    # token, role, profile, web identity, STS), and the model id or ARN that replaces the deployment's in the URL.
    "bedrock": ("aws_region_name", "aws_bedrock_runtime_endpoint", "aws_access_key_id", "aws_secret_access_key",
                "aws_session_token", "aws_role_name", "aws_session_name", "aws_profile_name", "aws_web_identity_token",
                "aws_sts_endpoint", "aws_external_id", "aws_bedrock_client", "model_id", "api_key", "api_base",
                "base_url", "extra_headers", "custom_llm_provider"),
}
# Matched whole (fullmatch): "$" alone would also match before a final newline.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_PRINTABLE = re.compile(r"[^A-Za-z0-9_.\[\]-]")


def shown(path: str) -> str:
    """A field path as the client may see it (in the message and in ``param``): safe characters, at most 80."""
    return _PRINTABLE.sub("?", path)[:80]


def unsupported(path: str, why: str | None = None) -> Denial:
    reason = f" ({why})" if why else ""
    return Denial(400, "unsupported_parameter", f"Unsupported parameter: {shown(path)}{reason}.",
                  error_type="invalid_request_error", param=shown(path))


def invalid(path: str, what: str) -> Denial:
    return Denial(400, "invalid_request", f"Invalid value for {shown(path)}: {what}.", param=shown(path))


def _only(obj: Any, allowed: set[str], path: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise invalid(path, "must be an object")
    for key in obj:
        if key not in allowed:
            raise unsupported(f"{path}.{key}" if path else key)
    return obj


def _smuggled(value: str) -> bool:
    text = value.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return False
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return bool(_steering_keys(parsed))


def _steering_keys(value: Any) -> set[str]:
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.update(k for k in item if isinstance(k, str) and (k in STEERING_KEYS or k.startswith("litellm_")))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def depth(value: Any) -> int:
    """Nesting depth of parsed JSON, computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def check_strings(values: Iterable[tuple[str, Any]]) -> None:
    for path, value in values:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and _smuggled(item):
                raise unsupported(path, "a string holding JSON with a steering field")


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(name, f"must be a number from {low} to {high}")


def check_integer(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(name, f"must be an integer from {low} to {high}")


def check_boolean(body: dict[str, Any], name: str) -> None:
    if body.get(name) is not None and not isinstance(body[name], bool):
        raise invalid(name, "must be a boolean")


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in value)


def _text_or_tokens(body: dict[str, Any], name: str, *, required: bool) -> None:
    """``prompt`` and embedding ``input``: a string, a list of strings, a list of token ids or a list of those."""
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(name, "is required")
        return
    if isinstance(value, str) or _token_ids(value):
        return
    if isinstance(value, list) and value and (
            all(isinstance(item, str) for item in value) or all(_token_ids(item) for item in value)):
        return
    raise invalid(name, "must be a string, a list of strings, or a list of token ids (or of such lists)")


def _messages(messages: Any, max_messages: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "must be a non-empty list")
    if len(messages) > max_messages:
        raise Denial(400, "too_many_messages", f"At most {max_messages} messages per request.", param="messages")
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        _only(message, MESSAGE_FIELDS, path)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid(f"{path}.role", "unknown role")
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                where = f"{path}.content[{j}]"
                if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                    raise Denial(400, "unsupported_content",
                                 "Only text and image content is accepted (other content cannot be priced in "
                                 "advance).", param=where)
                if part["type"] == "image_url":
                    _image_part(part, where)
                    continue
                _only(part, {"type", "text"}, where)
                if not isinstance(part.get("text"), str):
                    raise invalid(f"{where}.text", "must be a string")
        elif content is not None and not isinstance(content, str):
            raise invalid(f"{path}.content", "must be a string or a list of text parts")
        for k, call in enumerate(message.get("tool_calls") or []):
            _only(call, TOOL_CALL_FIELDS, f"{path}.tool_calls[{k}]")
            _only(call.get("function", {}), CALLED_FUNCTION_FIELDS, f"{path}.tool_calls[{k}].function")
        if message.get("function_call") is not None:
            _only(message["function_call"], CALLED_FUNCTION_FIELDS, f"{path}.function_call")
        check_strings([(f"{path}.name", message.get("name")), (f"{path}.tool_call_id", message.get("tool_call_id"))])


def check_image(url: Any, detail: Any, url_path: str, detail_path: str) -> None:
    """An image's URL and detail, wherever a route puts them: a public https URL or a base64 raster data URL, and
    low, high or auto."""
    if not isinstance(url, str) or not (IMAGE_DATA_URL.fullmatch(url) or public_https(url)):
        raise invalid(url_path, "must be an https URL of a public host or a base64 data URL of a PNG, JPEG, GIF or "
                                "WebP image")
    if detail is not None and detail not in IMAGE_DETAILS:
        raise invalid(detail_path, "must be low, high or auto")


def _image_part(part: dict[str, Any], where: str) -> None:
    _only(part, {"type", "image_url"}, where)
    image = _only(part.get("image_url"), IMAGE_URL_FIELDS, f"{where}.image_url")
    check_image(image.get("url"), image.get("detail"), f"{where}.image_url.url", f"{where}.image_url.detail")


# Names that only mean something inside a network (RFC 6761/6762/8375 and common private zones and service meshes).
INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".intranet", ".private", ".localdomain", ".home.arpa",
                     ".lan", ".corp", ".home", ".svc", ".consul", ".cluster")
# A dotted quad inside a name: wildcard-DNS services (nip.io, sslip.io …) resolve such names to that address.
EMBEDDED_IPV4 = re.compile(r"(?:^|[.-])\d{1,3}[.-]\d{1,3}[.-]\d{1,3}[.-]\d{1,3}(?:[.-]|$)")
MAX_IMAGE_URL = 4096


def public_https(url: str) -> bool:
    match = IMAGE_HTTPS_URL.fullmatch(url) if len(url) <= MAX_IMAGE_URL else None
    if match is None or match.group(1).startswith("["):
        return False  # IPv6 literals are refused outright: too many forms reach an internal IPv4 address
    host = match.group(1).rstrip(".").lower()
    if host == "localhost" or host.endswith(INTERNAL_SUFFIXES) or "." not in host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # A name: the provider resolves and fetches it, not this process. A numeric last label is an address in one
        # of the short or hex forms resolvers accept (127.1, 0x7f.1): refused, only dotted quads are read.
        return (re.fullmatch(r"0x[0-9a-f]*|[0-9]+", host.rsplit(".", 1)[-1]) is None
                and EMBEDDED_IPV4.search(host) is None)
    return address.is_global


def _tools(body: dict[str, Any]) -> None:
    for i, tool in enumerate(body.get("tools") or []):
        _only(tool, TOOL_FIELDS, f"tools[{i}]")
        _only(tool.get("function", {}), FUNCTION_FIELDS, f"tools[{i}].function")
    for i, function in enumerate(body.get("functions") or []):
        _only(function, FUNCTION_FIELDS, f"functions[{i}]")
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        _only(choice, TOOL_FIELDS, "tool_choice")
        _only(choice.get("function", {}), {"name"}, "tool_choice.function")
    elif choice is not None and choice not in ("none", "auto", "required"):
        raise invalid("tool_choice", "must be none, auto, required or a function choice")
    # The deprecated twin of tool_choice, checked the same way.
    function_call = body.get("function_call")
    if isinstance(function_call, dict):
        _only(function_call, {"name"}, "function_call")
        if not isinstance(function_call.get("name"), str):
            raise invalid("function_call.name", "must be a string")
    elif function_call is not None and function_call not in ("none", "auto"):
        raise invalid("function_call", "must be none, auto or a function choice")
    if "response_format" in body and body["response_format"] is not None:
        response_format = _only(body["response_format"], RESPONSE_FORMAT_FIELDS, "response_format")
        if response_format.get("json_schema") is not None:
            _only(response_format["json_schema"], JSON_SCHEMA_FIELDS, "response_format.json_schema")


def check_depth(body: dict[str, Any], max_depth: int) -> None:
    if depth(body) > max_depth:
        raise Denial(400, "too_deeply_nested", f"JSON nesting deeper than {max_depth} levels.")


def check_shared(body: dict[str, Any]) -> None:
    """The fields every generating route shares, checked the same way on each: the model name, sampling numbers,
    ``stream``, and the end-user identifiers (strings of 1 to 256 characters holding no steering JSON)."""
    model = body.get("model")
    if not isinstance(model, str) or not MODEL_NAME.fullmatch(model):
        raise invalid("model", "must be a model name")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    check_boolean(body, "stream")
    for name in ("user", "safety_identifier"):
        value = body.get(name)
        # An empty one is not forwarded by LiteLLM; refusing it keeps what reaches the provider what was approved.
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 256):
            raise invalid(name, "must be a string of 1 to 256 characters")
        check_strings([(name, value)])


# LiteLLM deletes every ``cache_control`` key, at any depth, from the messages (or Responses input) and tools it sends
# to an OpenAI-compatible provider, after the approval check: a JSON Schema property of that name would reach the
# provider missing while ``required`` still names it. Refused, so the provider gets the approved body.
STRIPPED_BY_LITELLM = "cache_control"


def check_not_stripped(value: Any, path: str) -> None:
    """Refuse a ``cache_control`` key anywhere in ``value`` (a list of messages, input items or tools)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key == STRIPPED_BY_LITELLM:
                    raise unsupported(f"{where}.{key}", "LiteLLM removes every cache_control key before the provider "
                                                        "sees the request")
                stack.append((item, f"{where}.{key}"))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node))


def check_fields(mode: ModelMode, body: dict[str, Any], *, max_depth: int, max_messages: int) -> None:
    """Raise :class:`Denial` unless every field of ``body`` is one the OpenAI API defines for this route."""
    check_depth(body, max_depth)
    _only(body, ALLOWED_TOP[mode], "")
    check_shared(body)
    if body.get("stream_options") is not None:
        _only(body["stream_options"], STREAM_OPTIONS_FIELDS, "stream_options")
    logit_bias = body.get("logit_bias")
    if logit_bias is not None and (not isinstance(logit_bias, dict) or not all(
            isinstance(k, str) and k.isdigit() and len(k) <= 10 and isinstance(v, int | float)
            and not isinstance(v, bool) and -100 <= v <= 100 for k, v in logit_bias.items())):
        raise invalid("logit_bias", "must map token ids to numbers from -100 to 100")
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    check_integer(body, "seed", -(2**63), 2**63 - 1)
    if isinstance(body.get("stream_options"), dict):
        check_boolean(body["stream_options"], "include_usage")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (
            isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))):
        raise invalid("stop", "must be a string or up to 4 strings")
    check_strings([("stop", stop), ("suffix", body.get("suffix"))])
    if mode == "chat":
        _messages(body.get("messages"), max_messages)
        _tools(body)
        for name in ("messages", "tools", "functions"):
            check_not_stripped(body.get(name), name)
        # Stored completions would be kept in the provider account every tenant shares: only "do not store" passes.
        if body.get("store") not in (None, False):
            raise invalid("store", "only false is accepted (stored completions would be kept in the provider account "
                                   "every tenant of this gateway shares)")
        check_boolean(body, "logprobs")
        check_boolean(body, "parallel_tool_calls")
        check_integer(body, "top_logprobs", 0, 20)
        if body.get("reasoning_effort") not in (None, *REASONING_EFFORTS):
            raise invalid("reasoning_effort", "must be one of " + ", ".join(REASONING_EFFORTS))
    elif mode == "completion":
        _text_or_tokens(body, "prompt", required=True)
        check_boolean(body, "echo")
        check_integer(body, "logprobs", 0, 5)
        if body.get("suffix") is not None and not isinstance(body["suffix"], str):
            raise invalid("suffix", "must be a string")
    elif mode == "embedding":
        if body.get("encoding_format") not in (None, "float", "base64"):
            raise invalid("encoding_format", "must be float or base64")
        _text_or_tokens(body, "input", required=True)
        check_integer(body, "dimensions", 1, 65536)


# Kinds whose LiteLLM translation fetches an image URL in this process instead of passing it to the provider: gemini
# and vertex_ai (one translation, litellm/llms/vertex_ai/gemini/transformation.py downloads an https URL whose type it
# cannot tell from the name, and looks up any URL holding "gs://" at storage.googleapis.com) and bedrock (Converse
# takes image bytes only, so LiteLLM downloads every image URL itself). Their image parts must be inline data (TM-I8).
INLINE_IMAGES_ONLY = frozenset({"gemini", "vertex_ai", "bedrock"})


def check_inline_images(body: dict[str, Any]) -> None:
    """Refuse a chat image given by URL: for :data:`INLINE_IMAGES_ONLY` kinds only a base64 data URL passes."""
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            image = part.get("image_url") if isinstance(part, dict) else None
            url = image.get("url") if isinstance(image, dict) else None
            if isinstance(part, dict) and "image_url" in part and not (
                    isinstance(url, str) and IMAGE_DATA_URL.fullmatch(url)):
                raise unsupported(f"messages[{i}].content[{j}].image_url.url",
                                  "this model takes images as base64 data URLs only")


def check_forwarded(body: dict[str, Any], forwarded: frozenset[str]) -> None:
    """Refuse a field this model's deployment would not receive: LiteLLM drops some OpenAI fields silently for some
    models (see ``gateway.boot.litellm_mount.forwarded_fields``); a client must not believe they were applied."""
    for name in body:
        if name not in forwarded:
            raise Denial(400, "unsupported_parameter", f"Unsupported parameter for this model: {shown(name)}.",
                         error_type="invalid_request_error", param=shown(name))
