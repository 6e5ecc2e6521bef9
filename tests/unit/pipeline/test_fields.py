"""The fields step: only OpenAI fields reach LiteLLM, at every nesting level, each of the type it must have.

Each refusal names its path (never more than 80 printable characters of it); strings in free-form places that hold
a JSON object with a steering key are refused; and a field this model's deployment would drop is refused too.

threat-model: TM-E1, TM-D1
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.pipeline.errors import Denial
from gateway.pipeline.fields import ALLOWED_TOP, STEERING_KEYS, check_fields, check_forwarded

MAX_DEPTH = 32  # the policy's defaults
MAX_MESSAGES = 256
HI = [{"role": "user", "content": "Hi"}]
STEERING = ["api_base", "base_url", "api_key", "extra_headers", "user_config", "metadata", "litellm_metadata",
            "litellm_params", "mock_response", "custom_llm_provider", "aws_access_key_id", "callbacks",
            "Model", "MODEL", "model\u0000", "mod\u0435l", "", " model", "__proto__"]
STEER = "http://attacker.invalid"


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "chat-model", "messages": HI, **fields}


def _completion(**fields: Any) -> dict[str, Any]:
    return {"model": "text-model", "prompt": "Hi", **fields}


def _embedding(**fields: Any) -> dict[str, Any]:
    return {"model": "embed-model", "input": "Hi", **fields}


BUILD = {"chat": _chat, "completion": _completion, "embedding": _embedding}


def _check(mode: str, body: dict[str, Any], max_depth: int = MAX_DEPTH, max_messages: int = MAX_MESSAGES) -> None:
    check_fields(mode, body, max_depth=max_depth, max_messages=max_messages)


def _refused(mode: str, body: dict[str, Any], **limits: int) -> Denial:
    with pytest.raises(Denial) as caught:
        _check(mode, body, **limits)
    assert caught.value.status == 400
    return caught.value


def _nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


# --- what is accepted --------------------------------------------------------------------------------------------

def test_a_chat_request_using_every_allowed_field_passes() -> None:
    body = _chat(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Really brief."}]},
            {"role": "user", "content": "Weather?", "name": "alice"},
            {"role": "assistant", "content": None, "refusal": None,
             "tool_calls": [{"id": "call_1", "type": "function", "index": 0,
                             "function": {"name": "weather", "arguments": '{"api_base": "data, not steering"}'}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
            {"role": "assistant", "content": None, "function_call": {"name": "weather", "arguments": "{}"}},
            {"role": "function", "content": "sunny", "name": "weather"},
        ],
        user="customer-7", stream=True, stream_options={"include_usage": True}, n=2, max_tokens=5,
        max_completion_tokens=5, temperature=2, top_p=0, stop=["a", "b", "c", "d"], seed=-(2**63),
        presence_penalty=-2, frequency_penalty=2.0, logit_bias={"50256": -100, "1": 100.0}, logprobs=True,
        top_logprobs=20, parallel_tool_calls=False, reasoning_effort="low",
        tools=[{"type": "function", "function": {"name": "weather", "description": "d", "strict": True,
                                                 "parameters": {"type": "object",
                                                                "properties": {"api_base": {"type": "string"}}}}}],
        functions=[{"name": "weather", "parameters": {"type": "object"}}],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        function_call={"name": "weather"},
        response_format={"type": "json_schema", "json_schema": {"name": "s", "strict": True, "description": "d",
                                                                "schema": {"properties": {"api_key": {}}}}},
    )
    _check("chat", body)


def test_completion_and_embedding_requests_using_their_allowed_fields_pass() -> None:
    _check("completion", _completion(prompt=["a", "b"], best_of=2, echo=False, suffix="end", logprobs=5,
                                     stream=False, user="u", stop="\n"))
    for prompt in ("Hi", [1, 2, 3], [[1, 2], [3]], ["a"]):
        _check("completion", _completion(prompt=prompt))
    _check("embedding", _embedding(input=[[0, 2**31 - 1]], encoding_format="base64", dimensions=65536, user="u"))
    _check("embedding", _embedding(encoding_format="float", dimensions=1))


def test_json_that_steers_is_only_data_in_message_content_and_tool_arguments() -> None:
    smuggled = json.dumps({"api_base": STEER, "litellm_params": {}})
    _check("chat", _chat(messages=[{"role": "user", "content": smuggled},
                                   {"role": "user", "content": [{"type": "text", "text": smuggled}]}]))
    _check("completion", _completion(prompt=smuggled))
    _check("embedding", _embedding(input=[smuggled]))


@pytest.mark.parametrize("mode", list(ALLOWED_TOP))
def test_no_allowed_field_is_a_steering_field(mode: str) -> None:
    allowed = ALLOWED_TOP[mode]
    assert not allowed & STEERING_KEYS
    assert not [name for name in allowed if name.startswith("litellm_")]


# --- unknown fields, at every level ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", list(ALLOWED_TOP))
@pytest.mark.parametrize("name", STEERING)
def test_an_unknown_top_level_field_is_refused(mode: str, name: str) -> None:
    denial = _refused(mode, {**BUILD[mode](), name: STEER})
    assert denial.code == "unsupported_parameter" and denial.error_type == "invalid_request_error"
    assert "\u0000" not in denial.message and "\u0435" not in denial.message


@pytest.mark.parametrize(("mode", "name"), [
    ("completion", "messages"), ("completion", "tools"), ("completion", "response_format"),
    ("chat", "prompt"), ("chat", "input"), ("chat", "suffix"), ("chat", "best_of"),
    ("embedding", "messages"), ("embedding", "prompt"), ("embedding", "max_tokens"), ("embedding", "stream"),
    ("embedding", "n"),
])
def test_a_field_of_another_route_is_refused(mode: str, name: str) -> None:
    denial = _refused(mode, {**BUILD[mode](), name: "x"})
    assert denial.code == "unsupported_parameter" and name in denial.message


NESTED = [
    ("messages[0].api_base", _chat(messages=[{"role": "user", "content": "Hi", "api_base": STEER}])),
    ("messages[1].content[0].api_key",
     _chat(messages=[*HI, {"role": "user", "content": [{"type": "text", "text": "x", "api_key": "k"}]}])),
    ("messages[0].tool_calls[0].api_base",
     _chat(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "api_base": STEER}]}])),
    ("messages[0].tool_calls[0].function.api_base",
     _chat(messages=[{"role": "assistant", "tool_calls": [{"function": {"name": "f", "api_base": STEER}}]}])),
    ("messages[0].function_call.metadata",
     _chat(messages=[{"role": "assistant", "function_call": {"name": "f", "metadata": {}}}])),
    ("tools[0].extra_headers", _chat(tools=[{"type": "function", "extra_headers": {"x": "y"}}])),
    ("tools[0].function.api_key", _chat(tools=[{"type": "function", "function": {"name": "f", "api_key": "k"}}])),
    ("functions[0].api_base", _chat(functions=[{"name": "f", "api_base": STEER}])),
    ("tool_choice.user_config", _chat(tool_choice={"type": "function", "user_config": {}})),
    ("tool_choice.function.api_base", _chat(tool_choice={"type": "function", "function": {"name": "f",
                                                                                          "api_base": STEER}})),
    ("function_call.api_base", _chat(function_call={"name": "f", "api_base": STEER})),
    ("response_format.api_base", _chat(response_format={"type": "json_object", "api_base": STEER})),
    ("response_format.json_schema.litellm_params",
     _chat(response_format={"type": "json_schema", "json_schema": {"name": "s", "litellm_params": {}}})),
    ("stream_options.api_key", _chat(stream=True, stream_options={"include_usage": True, "api_key": "k"})),
    ("stream_options.api_key", _completion(stream_options={"api_key": "k"})),
]


@pytest.mark.parametrize(("path", "body"), NESTED, ids=[path for path, _ in NESTED])
def test_an_unknown_nested_field_is_refused_naming_its_path(path: str, body: dict[str, Any]) -> None:
    mode = "chat" if "messages" in body else "completion"
    denial = _refused(mode, body)
    assert denial.code == "unsupported_parameter"
    assert denial.message == f"Unsupported parameter: {path}."


@pytest.mark.parametrize(("path", "body"), [
    ("messages[0]", _chat(messages=["Hi"])),
    ("messages[0]", _chat(messages=[["role", "user"]])),
    ("messages[0].tool_calls[0]", _chat(messages=[{"role": "assistant", "tool_calls": ["call"]}])),
    ("messages[0].tool_calls[0].function", _chat(messages=[{"role": "assistant", "tool_calls": [{"function": "f"}]}])),
    ("messages[0].function_call", _chat(messages=[{"role": "assistant", "function_call": "f"}])),
    ("tools[0]", _chat(tools=["weather"])),
    ("tools[0].function", _chat(tools=[{"type": "function", "function": ["f"]}])),
    ("functions[0]", _chat(functions=[None])),
    ("tool_choice.function", _chat(tool_choice={"type": "function", "function": "f"})),
    ("response_format", _chat(response_format="json")),
    ("response_format.json_schema", _chat(response_format={"type": "json_schema", "json_schema": "s"})),
    ("stream_options", _chat(stream_options=True)),
])
def test_a_nested_object_of_the_wrong_type_is_refused(path: str, body: dict[str, Any]) -> None:
    denial = _refused("chat", body)
    assert denial.code == "invalid_request" and denial.message == f"Invalid value for {path}: must be an object."


def test_a_refusal_shows_only_80_printable_characters_of_the_field_name() -> None:
    for name in ("api\u0000base\r\nX-Injected: 1", "\u202eesab_ipa", "a" * 100_000):
        denial = _refused("chat", _chat(**{name: 1}))
        shown = denial.message.removeprefix("Unsupported parameter: ").removesuffix(".")
        assert len(shown) <= 80 and shown.isascii() and shown.isprintable(), denial.message
    assert _refused("chat", _chat(**{"api\u0000base": 1})).message == "Unsupported parameter: api?base."


# --- steering JSON inside strings --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    json.dumps({"api_base": STEER}),
    '  {"litellm_anything": 1}\n',
    '{"a": [{"b": {"api_key": "sk-attacker"}}]}',
    '{"metadata": null}',
])
@pytest.mark.parametrize(("mode", "place"), [
    ("chat", "user"), ("chat", "stop"), ("chat", "stop[]"), ("completion", "suffix"), ("chat", "name"),
    ("chat", "tool_call_id"), ("embedding", "user"),
])
def test_a_string_holding_steering_json_is_refused_where_litellm_may_parse_it(text: str, mode: str,
                                                                              place: str) -> None:
    if place in ("name", "tool_call_id"):
        body = _chat(messages=[{"role": "tool", "content": "x", place: text}])
    elif place == "stop[]":
        body = _chat(stop=["ok", text])
    else:
        body = BUILD[mode](**{place: text})
    denial = _refused(mode, body)
    shown = {"name": "messages[0].name", "tool_call_id": "messages[0].tool_call_id", "stop[]": "stop"}.get(place, place)
    assert denial.code == "unsupported_parameter" and denial.param == shown
    assert denial.message == f"Unsupported parameter: {shown} (a string holding JSON with a steering field)."


@pytest.mark.parametrize("text", ['{"temperature": 1}', "{not json}", '{"a": ' * 5000, "[\"api_base\"]",
                                  '"{\\"api_base\\": 1}"'])
def test_a_string_holding_other_json_or_none_is_data(text: str) -> None:
    _check("chat", _chat(stop=[text], messages=[{"role": "user", "content": "Hi", "name": text}]))


# --- depth and size ------------------------------------------------------------------------------------------------

def test_nesting_up_to_the_limit_passes_and_one_level_more_is_refused() -> None:
    # body (1) > tools (2) > tool (3) > function (4) > parameters: six more levels make ten.
    _check("chat", _chat(tools=[{"type": "function", "function": {"name": "f", "parameters": _nested(6)}}]),
           max_depth=10)
    denial = _refused("chat", _chat(tools=[{"type": "function", "function": {"name": "f",
                                                                           "parameters": _nested(7)}}]),
                      max_depth=10)
    assert denial.code == "too_deeply_nested"


@pytest.mark.parametrize("where", ["stop", "parameters", "schema", "logit_bias"])
def test_a_hundred_thousand_levels_are_refused_without_recursing(where: str) -> None:
    deep = _nested(100_000)
    body = {
        "stop": _chat(stop=deep),
        "parameters": _chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"p": deep}}}]),
        "schema": _chat(response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": deep}}),
        "logit_bias": _chat(logit_bias={"1": deep}),
    }[where]
    assert _refused("chat", body).code == "too_deeply_nested"


def test_more_messages_than_the_limit_are_refused() -> None:
    _check("chat", _chat(messages=HI * 3), max_messages=3)
    denial = _refused("chat", _chat(messages=HI * 4), max_messages=3)
    assert denial.code == "too_many_messages"


# --- wrong types and values ----------------------------------------------------------------------------------------

INVALID = [
    ("chat", {"model": None, "messages": HI}, "model"),
    ("chat", {"messages": HI}, "model"),
    ("chat", _chat(model=7), "model"),
    ("chat", _chat(model=["chat-model"]), "model"),
    ("chat", _chat(model=""), "model"),
    ("chat", _chat(model="../../etc/passwd"), "model"),
    ("chat", _chat(model="chat model"), "model"),
    ("chat", _chat(model="chat-model\u0000"), "model"),
    ("chat", _chat(model="chat-model\n"), "model"),
    ("chat", _chat(model="a" * 129), "model"),
    ("chat", _chat(messages=None), "messages"),
    ("chat", _chat(messages=[]), "messages"),
    ("chat", _chat(messages={"role": "user", "content": "Hi"}), "messages"),
    ("chat", _chat(messages="Hi"), "messages"),
    ("chat", _chat(messages=[{"content": "Hi"}]), "messages[0].role"),
    ("chat", _chat(messages=[{"role": "root", "content": "Hi"}]), "messages[0].role"),
    ("chat", _chat(messages=[{"role": ["user"], "content": "Hi"}]), "messages[0].role"),
    ("chat", _chat(messages=[*HI, {"role": "user", "content": 7}]), "messages[1].content"),
    ("chat", _chat(messages=[{"role": "user", "content": {"text": "Hi"}}]), "messages[0].content"),
    ("chat", _chat(messages=[{"role": "user", "content": [{"type": "text", "text": 7}]}]),
     "messages[0].content[0].text"),
    ("chat", _chat(messages=[{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0].text"),
    ("chat", _chat(temperature="1"), "temperature"),
    ("chat", _chat(temperature=True), "temperature"),
    ("chat", _chat(temperature=2.0001), "temperature"),
    ("chat", _chat(temperature=-0.0001), "temperature"),
    ("chat", _chat(temperature=1e308), "temperature"),
    ("chat", _chat(top_p=1.5), "top_p"),
    ("chat", _chat(top_p=[0.5]), "top_p"),
    ("chat", _chat(presence_penalty=-2.5), "presence_penalty"),
    ("chat", _chat(frequency_penalty=10**400), "frequency_penalty"),
    ("chat", _chat(seed=2**63), "seed"),
    ("chat", _chat(seed=-(2**63) - 1), "seed"),
    ("chat", _chat(seed=10**400), "seed"),
    ("chat", _chat(seed=1.5), "seed"),
    ("chat", _chat(seed=False), "seed"),
    ("chat", _chat(seed="1"), "seed"),
    ("chat", _chat(stream="true"), "stream"),
    ("chat", _chat(stream=1), "stream"),
    ("chat", _chat(stream_options={"include_usage": "yes"}), "include_usage"),
    ("chat", _chat(user=""), "user"),
    ("chat", _chat(user="u" * 257), "user"),
    ("chat", _chat(user=7), "user"),
    ("chat", _chat(user=["u"]), "user"),
    ("chat", _chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("chat", _chat(stop=[1]), "stop"),
    ("chat", _chat(stop={"a": "b"}), "stop"),
    ("chat", _chat(stop=7), "stop"),
    ("chat", _chat(logit_bias=[1, 2]), "logit_bias"),
    ("chat", _chat(logit_bias={"abc": 1}), "logit_bias"),
    ("chat", _chat(logit_bias={"-1": 1}), "logit_bias"),
    ("chat", _chat(logit_bias={"12345678901": 1}), "logit_bias"),
    ("chat", _chat(logit_bias={"1": 101}), "logit_bias"),
    ("chat", _chat(logit_bias={"1": -100.5}), "logit_bias"),
    ("chat", _chat(logit_bias={"1": True}), "logit_bias"),
    ("chat", _chat(logit_bias={"1": "5"}), "logit_bias"),
    ("chat", _chat(logprobs=1), "logprobs"),
    ("chat", _chat(parallel_tool_calls="false"), "parallel_tool_calls"),
    ("chat", _chat(top_logprobs=21), "top_logprobs"),
    ("chat", _chat(top_logprobs=-1), "top_logprobs"),
    ("chat", _chat(top_logprobs=True), "top_logprobs"),
    ("chat", _chat(tool_choice="sometimes"), "tool_choice"),
    ("chat", _chat(tool_choice=1), "tool_choice"),
    ("chat", _chat(function_call="required"), "function_call"),
    ("chat", _chat(function_call={"name": 5}), "function_call.name"),
    ("chat", _chat(function_call={}), "function_call.name"),
    ("chat", _chat(reasoning_effort="ultra"), "reasoning_effort"),
    ("chat", _chat(reasoning_effort={"api_key": "x"}), "reasoning_effort"),
    ("completion", {"model": "text-model"}, "prompt"),
    ("completion", _completion(prompt=None), "prompt"),
    ("completion", _completion(prompt={"text": "Hi"}), "prompt"),
    ("completion", _completion(prompt=[]), "prompt"),
    ("completion", _completion(prompt=[[]]), "prompt"),
    ("completion", _completion(prompt=["a", 1]), "prompt"),
    ("completion", _completion(prompt=[1, [2]]), "prompt"),
    ("completion", _completion(prompt=[-1]), "prompt"),
    ("completion", _completion(prompt=[2**31]), "prompt"),
    ("completion", _completion(prompt=[True]), "prompt"),
    ("completion", _completion(prompt=[1.0]), "prompt"),
    ("completion", _completion(prompt=7), "prompt"),
    ("completion", _completion(echo="yes"), "echo"),
    ("completion", _completion(logprobs=6), "logprobs"),
    ("completion", _completion(logprobs=True), "logprobs"),
    ("completion", _completion(suffix=7), "suffix"),
    ("completion", _completion(suffix=["a"]), "suffix"),
    ("embedding", {"model": "embed-model"}, "input"),
    ("embedding", _embedding(input={"api_base": STEER}), "input"),
    ("embedding", _embedding(input=[["a"]]), "input"),
    ("embedding", _embedding(encoding_format="hex"), "encoding_format"),
    ("embedding", _embedding(encoding_format=["float"]), "encoding_format"),
    ("embedding", _embedding(dimensions=0), "dimensions"),
    ("embedding", _embedding(dimensions=65537), "dimensions"),
    ("embedding", _embedding(dimensions=True), "dimensions"),
    ("embedding", _embedding(dimensions="8"), "dimensions"),
]


@pytest.mark.parametrize(("mode", "body", "field"), INVALID)
def test_a_field_of_the_wrong_type_or_out_of_range_is_refused(mode: str, body: dict[str, Any], field: str) -> None:
    denial = _refused(mode, body)
    assert denial.code == "invalid_request", denial.message
    assert denial.message.startswith(f"Invalid value for {field}: "), denial.message


@pytest.mark.parametrize("part", [{"type": "input_audio"}, {"type": "file"}, {"text": "Hi"}, "Hi", None])
def test_content_other_than_text_and_image_parts_is_refused(part: Any) -> None:
    denial = _refused("chat", _chat(messages=[{"role": "user", "content": [part]}]))
    assert denial.code == "unsupported_content"


@pytest.mark.parametrize("url", [
    "https://images.example/cat.png", "https://8.8.8.8/cat.png", "https://images.example:8443/a/b.webp?size=2",
    "data:image/png;base64,iVBORw0KGgo=",
])
def test_an_image_by_public_https_url_or_inline_data_passes(url: str) -> None:
    for detail in (None, "low", "high", "auto"):
        image = {"url": url, **({"detail": detail} if detail else {})}
        _check("chat", _chat(messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": image}]}]))


@pytest.mark.parametrize("url", [
    STEER, "http://images.example/cat.png", "https://127.0.0.1/x.png", "https://127.1/x.png", "https://0x7f.1/x.png",
    "https://[::1]/x.png", "https://169.254.169.254/latest/meta-data", "https://10.1.2.3/x.png",
    "https://192.168.0.1/x.png", "https://localhost/x.png", "https://metadata.google.internal/x",
    "https://printer.local/x.png", "https://intranet/x.png", "https://user:pw@images.example/x.png",
    "file:///etc/passwd", "ftp://images.example/x.png", "data:text/html;base64,PGgxPg==",
    "data:image/svg+xml;base64,PHN2Zz4=", "data:image/png,not-base64", "https://images.example/a b.png", "",
    # IPv6 literals in any form (IPv4-compatible, 6to4, NAT64, site-local all lead inside), internal zones, names
    # that wildcard DNS resolves to the address they spell, and URLs past the length bound.
    "https://[::127.0.0.1]/x.png", "https://[2002:a9fe:a9fe::]/x.png", "https://[64:ff9b::a9fe:a9fe]/x.png",
    "https://[fec0::1]/x.png", "https://[2606:4700::1111]/x.png", "https://redis.default.svc/x.png",
    "https://vault.service.consul/x.png", "https://nas.home.arpa/x.png", "https://printer.lan/x.png",
    "https://169.254.169.254.nip.io/latest", "https://10-0-0-1.sslip.io/x.png",
    "https://images.example/" + "a" * 5000 + ".png",
])
def test_an_image_anywhere_else_is_refused(url: str) -> None:
    denial = _refused("chat", _chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}]))
    assert (denial.code, denial.param) == ("invalid_request", "messages[0].content[0].image_url.url")


@pytest.mark.parametrize(("image", "param"), [
    ({"url": "https://images.example/x.png", "detail": "ultra"}, "messages[0].content[0].image_url.detail"),
    ({"url": "https://images.example/x.png", "fetch_via": "http://10.0.0.1"}, "messages[0].content[0].image_url.fetch_via"),
    ("https://images.example/x.png", "messages[0].content[0].image_url"),
])
def test_an_image_part_has_only_url_and_detail(image: Any, param: str) -> None:
    denial = _refused("chat", _chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": image}]}]))
    assert denial.param == param


def test_nul_and_control_characters_in_values_are_data_not_a_way_around_the_checks() -> None:
    _check("chat", _chat(messages=[{"role": "user", "content": "a\u0000b"}], user="u\u0000", stop="\u0000"))
    assert _refused("chat", _chat(messages=[{"role": "user\u0000", "content": "Hi"}])).code == "invalid_request"
    assert _refused("chat", _chat(reasoning_effort="low\u0000")).code == "invalid_request"
    assert _refused("embedding", _embedding(encoding_format="float\u0000")).code == "invalid_request"


# --- fields this model's deployment would drop ---------------------------------------------------------------------

def test_a_field_the_deployment_forwards_passes_and_one_it_would_drop_is_refused() -> None:
    forwarded = frozenset({"model", "messages", "max_tokens"})
    check_forwarded(_chat(max_tokens=5), forwarded)
    with pytest.raises(Denial) as caught:
        check_forwarded(_chat(max_tokens=5, logit_bias={"1": 1}), forwarded)
    denial = caught.value
    assert (denial.status, denial.code) == (400, "unsupported_parameter")
    assert denial.message == "Unsupported parameter for this model: logit_bias."


def test_a_dropped_field_name_is_shown_printable_and_short() -> None:
    with pytest.raises(Denial) as caught:
        check_forwarded({"model": "m", "x\u0000\n" + "y" * 1000: 1}, frozenset({"model"}))
    shown = caught.value.message.removeprefix("Unsupported parameter for this model: ").removesuffix(".")
    assert shown.startswith("x??y") and len(shown) == 80


@pytest.mark.parametrize(("tools", "param"), [
    ([{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"cache_control": {"type": "string"}}, "required": ["cache_control"]}}}],
     "tools[0].function.parameters.properties.cache_control"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {
        "type": "array", "items": [{"cache_control": {}}]}}}}}],
     "tools[0].function.parameters.properties.x.items[0].cache_control"),
])
def test_a_cache_control_key_litellm_would_strip_is_refused(tools: list[Any], param: str) -> None:
    # LiteLLM deletes every cache_control key in tools and messages after the approval check (filter_value_from_dict).
    with pytest.raises(Denial) as refused:
        _check("chat", _chat(tools=tools))
    assert refused.value.code == "unsupported_parameter" and refused.value.param == param
