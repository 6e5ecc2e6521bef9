"""The Responses API's pre-flight pieces: its allow-list, the guardrails' texts, its shaping, the approval of its
call, and settlement from its usage names.

threat-model: TM-I9, TM-E5
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.credits.pricing import Price
from gateway.pipeline.approval import (
    CURRENT,
    Approval,
    Deployment,
    HandoffMismatch,
    credential_digest,
    verify,
)
from gateway.pipeline.credits import LedgerThreads, Meter
from gateway.pipeline.errors import Denial
from gateway.pipeline.responses import check_response_fields, input_items, response_texts
from gateway.pipeline.shaping import shape_response

FUNCTION = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}


def _check(body: dict[str, Any]) -> None:
    check_response_fields({"model": "chat-model", **body}, max_depth=32, max_items=4)


@pytest.mark.parametrize("body", [
    {"input": "Hi"},
    {"input": [{"role": "user", "content": "Hi"}], "instructions": "Be brief.", "store": False},
    {"input": [{"type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "Hi", "annotations": [], "logprobs": []}]},
               {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "c", "output": "ok"}],
     "tools": [FUNCTION], "tool_choice": {"type": "function", "name": "f"}},
    {"input": "Hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
     "include": ["message.output_text.logprobs"], "top_logprobs": 2, "truncation": "auto",
     "stream": True, "stream_options": {"include_obfuscation": False}, "user": "u", "safety_identifier": "s"},
])
def test_stateless_text_and_function_calls_pass(body: dict[str, Any]) -> None:
    _check(body)


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "Hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "Hi", "conversation": {"id": "conv_1"}}, "conversation"),
    ({"input": "Hi", "store": True}, "store"),
    ({"input": "Hi", "background": False}, "background"),
    ({"input": "Hi", "prompt": {"id": "p"}}, "prompt"),
    ({"input": "Hi", "metadata": {}}, "metadata"),
    ({"input": "Hi", "reasoning": {"effort": "low"}}, "reasoning"),
    ({"input": "Hi", "tools": [{"type": "web_search_preview"}]}, "tools[0]"),
    ({"input": "Hi", "tools": [{**FUNCTION, "defer_loading": True}]}, "tools[0].defer_loading"),
    ({"input": "Hi", "tools": [{**FUNCTION, "parameters": {"oneOf": []}}]}, "tools[0].parameters"),
    ({"input": "Hi", "tools": [{**FUNCTION, "parameters": {"patternProperties": {"(?<x": {}}}}]},
     "tools[0].parameters"),
    ({"input": "Hi", "tool_choice": {"type": "mcp", "server_label": "x"}}, "tool_choice.server_label"),
    ({"input": "Hi", "tool_choice": {"type": "file_search"}}, "tool_choice.type"),
    ({"input": "Hi", "include": ["message.output_text.logprobs", "file_search_call.results"]}, "include"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": "Hi", "id": "msg_1"}]}, "input[0].id"),
    ({"input": [{"role": "tool", "content": "Hi"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}, "input[0].content[0]"),
    ({"input": [{"role": "assistant", "content": [{"type": "output_text", "text": "x",
                                                    "annotations": [{"type": "url_citation"}]}]}]},
     "input[0].content[0].annotations"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "x"}]}]},
     "input[0].output"),
    ({"input": [{"role": "user", "content": "x"}] * 5}, "input"),
    ({"input": []}, "input"),
    ({}, "input"),
    ({"input": "Hi", "instructions": [{"role": "developer", "content": "x"}]}, "instructions"),
    ({"input": "Hi", "user": '{"api_key": "x"}'}, "user"),
    ({"input": [{"type": "function_call_output", "call_id": '{"api_base": "http://x"}', "output": "ok"}]},
     "input[0].call_id"),
    ({"input": "Hi", "temperature": 3}, "temperature"),
])
def test_state_hosted_tools_and_other_content_are_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(Denial) as refused:
        _check(body)
    assert refused.value.param == param


def test_guardrails_read_the_instructions_and_every_text_of_the_input() -> None:
    body = {"instructions": "I", "input": [
        {"role": "user", "content": "A"},
        {"role": "user", "content": [{"type": "input_text", "text": "B"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "C"},
        {"type": "function_call_output", "call_id": "c", "output": "D"}]}
    assert response_texts(body) == ["I", "A", "B", "C", "D"]
    assert response_texts({"input": "E"}) == ["E"]
    assert (input_items(body), input_items({"input": "E"})) == (4, 1)


def test_shaping_bounds_the_output_and_forwards_store_false() -> None:
    filled = shape_response({"model": "m", "input": "Hi"}, 1000)
    assert filled.body == {"model": "m", "input": "Hi", "max_output_tokens": 1000, "store": False}
    assert (filled.output_bound, filled.choices, filled.stream) == (1000, 1, False)
    assert shape_response({"model": "m", "input": "Hi", "max_output_tokens": 16, "stream": True}, 1000).output_bound == 16
    for bad in (15, 1001, 0, True, "20"):
        with pytest.raises(Denial):
            shape_response({"model": "m", "input": "Hi", "max_output_tokens": bad}, 1000)


KEY = "provider-key"
DEPLOYMENTS = {"chat-model": (Deployment("openai/upstream-chat", "http://127.0.0.1:9/v1", credential_digest(KEY),
                                         "openai", 600, frozenset({"model", "messages", "max_tokens"})),)}
BODY = {"model": "chat-model", "input": "Hi", "max_output_tokens": 16, "store": False}


def _verify(**overrides: Any) -> Approval:
    approval = Approval(request_id="req_1", key_id="key_1", model="chat-model", mode="responses", body=BODY,
                        output_bound=16, choices=1, stream=False)
    kwargs: dict[str, Any] = {"model": "openai/upstream-chat", "api_base": "http://127.0.0.1:9/v1", "api_key": KEY,
                              "input": "Hi", "max_output_tokens": 16, "store": False, "custom_llm_provider": "openai",
                              "litellm_call_id": "c", "litellm_metadata": {"model_group": "chat-model"}}
    kwargs.update(overrides)
    token = CURRENT.set(approval)
    try:
        return verify({k: v for k, v in kwargs.items() if v is not None}, "aresponses", DEPLOYMENTS)[0]
    finally:
        CURRENT.reset(token)


def test_the_approved_responses_call_passes() -> None:
    # Responses API fields are checked against that API's list, not the chat deployment's.
    assert _verify().dispatched


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"max_output_tokens": 17}, "value"),  # an approved field: its value is checked first
    ({"max_output_tokens": None}, "value"),
    ({"max_tokens": 16}, "output_bound"),
    ({"store": True}, "value"),
    ({"input": "something else"}, "value"),
    ({"custom_llm_provider": "ollama"}, "field:custom_llm_provider"),
    ({"previous_response_id": "resp_1"}, "field:previous_response_id"),
    ({"use_chat_completions_api": True}, "field:use_chat_completions_api"),
    ({"stream": True}, "stream"),
])
def test_a_responses_call_that_differs_is_refused(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(HandoffMismatch) as refused:
        _verify(**overrides)
    assert refused.value.reason == reason


def test_a_chat_call_type_does_not_pass_for_a_responses_approval() -> None:
    approval = Approval(request_id="req_1", key_id="key_1", model="chat-model", mode="responses", body=BODY,
                        output_bound=16, choices=1, stream=False)
    token = CURRENT.set(approval)
    try:
        with pytest.raises(HandoffMismatch, match="call_type"):
            verify({"model": "openai/upstream-chat"}, "acompletion", DEPLOYMENTS)
    finally:
        CURRENT.reset(token)


class _Ledger:
    writers = 1

    def __init__(self) -> None:
        self.settled: list[int] = []

    def settle(self, request_id: str, amount: int) -> int:
        self.settled.append(amount)
        return 0

    def release(self, request_id: str, reason: str) -> None:
        raise AssertionError("a complete answer is settled, not released")


@pytest.mark.parametrize("streamed", [False, True])
def test_the_responses_usage_settles(streamed: bool) -> None:
    ledger = _Ledger()
    meter = Meter(ledger, "req_1", "key_1", Price(1_000_000, 2_000_000), 5_000, 0, "chat",  # type: ignore[arg-type]
                  LedgerThreads(1))
    meter.started()
    usage = b'{"input_tokens":11,"output_tokens":7,"total_tokens":18}'
    if streamed:
        meter.observe_stream(b'data: {"type":"response.created","response":{"usage":null}}\n\n', True)
        meter.observe_stream(b'data: {"type":"response.completed","response":{"usage":' + usage + b'}}\n\n', True)
        meter.observe_stream(b"data: [DONE]\n\n", False)
    else:
        meter.observe_json(b'{"object":"response","usage":' + usage + b"}")
    meter.finish()
    assert ledger.settled == [11 + 2 * 7]


@pytest.mark.parametrize("last", ["response.incomplete", "response.failed"])
def test_a_stream_that_ends_early_settles_from_its_usage(last: str) -> None:
    # max_output_tokens reached (incomplete) or a failure after some output: the final Response still has usage.
    ledger = _Ledger()
    meter = Meter(ledger, "req_1", "key_1", Price(1_000_000, 2_000_000), 5_000, 0, "chat",  # type: ignore[arg-type]
                  LedgerThreads(1))
    meter.started()
    meter.observe_stream(b'data: {"type":"%s","response":{"usage":{"input_tokens":11,"output_tokens":16}}}\n\n'
                         % last.encode(), False)
    meter.finish()
    assert ledger.settled == [11 + 2 * 16]


@pytest.mark.parametrize("usage", [
    b'{"input_tokens":{"n":1},"output_tokens":7}', b'{"input_tokens":11,"output_tokens":"7"}',
    b'{"input_tokens":11,"output_tokens":-7}', b'{"input_tokens":true,"output_tokens":7}',
    b'{"input_tokens":11,"output_tokens":{}}', b'{"input_tokens":11}',
])
def test_usage_the_gateway_cannot_read_charges_the_whole_reservation(usage: bytes) -> None:
    ledger = _Ledger()
    meter = Meter(ledger, "req_1", "key_1", Price(1_000_000, 2_000_000), 5_000, 0, "chat",  # type: ignore[arg-type]
                  LedgerThreads(1))
    meter.started()
    meter.observe_json(b'{"object":"response","usage":' + usage + b"}")
    meter.finish()
    assert ledger.settled == [5_000]


def test_a_responses_stream_error_carries_our_words_not_the_providers() -> None:
    import json

    from gateway.pipeline.handoff import sanitize_stream_chunk

    leaky_event = (b'data: {"type": "error", "code": "x", "message": "Bearer sk-upstream at http://10.0.0.5/v1", '
                   b'"param": null, "sequence_number": 4}\n\n')
    clean = json.loads(sanitize_stream_chunk(leaky_event).split(b"\n")[0][6:])
    assert clean == {"type": "error", "code": "upstream_error", "message": "The model provider failed.",
                     "param": None, "sequence_number": 4}
    failed = (b'data: {"type": "response.failed", "sequence_number": 9, "response": {"id": "r", "status": "failed", '
              b'"error": {"code": "server_error", "message": "upstream at http://10.0.0.5/v1"}}}\n\n')
    cleaned = json.loads(sanitize_stream_chunk(failed).split(b"\n")[0][6:])
    assert cleaned["response"]["error"] == {"code": "server_error", "message": "The model provider failed."}
    assert cleaned["type"] == "response.failed" and cleaned["sequence_number"] == 9
    # An ordinary event whose response has no error passes unchanged.
    ordinary = b'data: {"type": "response.completed", "response": {"error": null, "status": "completed"}}\n\n'
    assert sanitize_stream_chunk(ordinary) == ordinary


def test_an_approval_allows_one_provider_call() -> None:
    approval = Approval(request_id="req_1", key_id="key_1", model="chat-model", mode="responses", body=BODY,
                        output_bound=16, choices=1, stream=False)
    kwargs = {"model": "openai/upstream-chat", "api_base": "http://127.0.0.1:9/v1", "api_key": KEY, "input": "Hi",
              "max_output_tokens": 16, "store": False}
    token = CURRENT.set(approval)
    try:
        verify(kwargs, "aresponses", DEPLOYMENTS)
        # A retry of the same call (LiteLLM's router retrying after a failure) is refused: it was reserved once.
        with pytest.raises(HandoffMismatch, match="second_call"):
            verify(kwargs, "aresponses", DEPLOYMENTS)
    finally:
        CURRENT.reset(token)


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "Hi", "tools": [{**FUNCTION, "parameters": {"type": "object", "properties": {
        "cache_control": {"type": "string"}}, "required": ["cache_control"]}}]},
     "tools[0].parameters.properties.cache_control"),
    ({"input": "Hi", "tools": [{**FUNCTION, "parameters": {"type": "object", "properties": {"x": {
        "type": "object", "properties": {"cache_control": {"type": "integer"}}}}}}]},
     "tools[0].parameters.properties.x.properties.cache_control"),
])
def test_a_cache_control_key_litellm_would_strip_is_refused(body: dict[str, Any], param: str) -> None:
    # LiteLLM's remove_cache_control_flag_from_input_and_tools deletes it at any depth, after the approval check.
    with pytest.raises(Denial) as refused:
        _check(body)
    assert refused.value.code == "unsupported_parameter" and refused.value.param == param
