"""POST /v1/responses end to end with the official SDK: the same pre-flight as chat, served stateless.

Answers and every stream event in OpenAI's shape; the stand-in receives exactly the approved body (with
``store: false``); the worst case is reserved from ``max_output_tokens`` (the model's cap when absent) and the
provider's usage settles it, streams included; state (``previous_response_id``, ``conversation``, ``store: true``,
``background``) and hosted tools are refused with ``param`` naming the field — for every account, the one that created
a response included.

threat-model: TM-I9, TM-E5, TM-T10
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from tests.support import RunningGateway, StandIn, account_state, spec_errors, wait_until_settled

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
EVENTS = TypeAdapter(ResponseStreamEvent)


def _sdk(gateway: RunningGateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key or gateway.customer_key, max_retries=0)


def _raw(gateway: RunningGateway, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=gateway.base_url, timeout=30,
                        headers={"Authorization": f"Bearer {key or gateway.customer_key}"})


def _upstream(standin: StandIn) -> list[dict[str, Any]]:
    return [call for call in standin.recorder.all() if call["method"] == "POST"]


def _funded(gateway: RunningGateway, credit: int = 10**9) -> tuple[str, str]:
    account = gateway.keys.account(credit)
    key, _ = gateway.keys.customer(account_id=account)
    return account, key


def _extra_fields(model: BaseModel) -> list[str]:
    """Fields of an event the SDK's typed union did not declare (it accepts them silently)."""
    return sorted(model.model_extra or {})


def event_errors(event: dict[str, Any]) -> list[str]:
    """Where a stream event breaks OpenAI's shape: the vendored ``ResponseStreamEvent`` schema, and the SDK's typed
    union, which also names any field the event carries that OpenAI does not declare (the schema allows extras)."""
    typed = EVENTS.validate_python(event)
    assert isinstance(typed, BaseModel)
    return spec_errors("ResponseStreamEvent", event) + _extra_fields(typed)


def _charged(gateway: RunningGateway, account: str) -> list[int]:
    entries = wait_until_settled(gateway, account)["recent_ledger"]
    return sorted(-e["amount_micro_usd"] if e["amount_micro_usd"] < 0 else e["amount_micro_usd"]
                  for e in entries if e["kind"] == "settle")


def test_sdk_create_reaches_the_provider_as_approved_and_answers_in_openai_shape(
        gateway: RunningGateway, standin: StandIn) -> None:
    account, key = _funded(gateway)
    standin.recorder.clear()
    raw = _sdk(gateway, key).responses.with_raw_response.create(
        model="chat-model", input="Hi", instructions="Be brief.", max_output_tokens=50, temperature=0.5)
    answer = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert answer.output_text == "Hello from the provider stand-in."
    assert spec_errors("Response", answer.model_dump(exclude_unset=True)) == []
    # The gateway's own id (this request's), the policy's model name: nothing of LiteLLM's or the provider's.
    assert answer.id == "resp_" + request_id.removeprefix("req_") and answer.model == "chat-model"
    (call,) = _upstream(standin)
    assert call["path"] == "/v1/responses"
    assert call["body"] == {"model": "upstream-chat", "input": "Hi", "instructions": "Be brief.",
                            "max_output_tokens": 50, "temperature": 0.5, "store": False}
    # Settled from the provider's usage: $1 and $2 per million tokens are 1 and 2 micro-USD per token.
    usage = answer.usage
    assert usage is not None and usage.input_tokens > 0
    assert _charged(gateway, account) == [usage.input_tokens + 2 * usage.output_tokens]


def test_async_sdk_create(gateway: RunningGateway) -> None:
    async def run() -> str:
        client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.customer_key, max_retries=0)
        async with client:
            answer = await client.responses.create(
                model="chat-model", max_output_tokens=20,
                input=[{"role": "developer", "content": "Be brief."},
                       {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}])
        assert spec_errors("Response", answer.model_dump(exclude_unset=True)) == []
        return answer.output_text

    assert asyncio.run(run()) == "Hello from the provider stand-in."


def test_sdk_stream_events_are_openai_shaped_and_usage_settles(gateway: RunningGateway, standin: StandIn) -> None:
    account, key = _funded(gateway)
    standin.recorder.clear()
    with _sdk(gateway, key).responses.create(model="chat-model", input="Hi", instructions="Be brief.",
                                             stream=True) as stream:
        events = [event.model_dump(exclude_unset=True) for event in stream]
    kinds = [event["type"] for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == \
        "Hello from the provider stand-in."
    for event in events:
        assert event_errors(event) == [], event
        # Every Response echoes the request's instructions, as OpenAI's do (LiteLLM's stream events had null).
        assert event.get("response", {"instructions": "Be brief."})["instructions"] == "Be brief.", event
    final = events[-1]["response"]
    assert final["model"] == "chat-model" and final["id"].startswith("resp_") and "standin" not in final["id"]
    (call,) = _upstream(standin)
    # The model's cap was the output bound (no max_output_tokens from the client), and nothing is stored.
    assert call["body"] == {"model": "upstream-chat", "input": "Hi", "instructions": "Be brief.",
                            "max_output_tokens": 1000, "store": False, "stream": True}
    usage = final["usage"]
    assert _charged(gateway, account) == [usage["input_tokens"] + 2 * usage["output_tokens"]]


def test_function_calls_and_a_stateless_tool_loop(gateway: RunningGateway, standin: StandIn) -> None:
    client = _sdk(gateway)
    called = client.responses.create(model="chat-model", input="Weather in Paris?", tools=[WEATHER],
                                      max_output_tokens=30)
    (call,) = called.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert spec_errors("Response", called.model_dump(exclude_unset=True)) == []
    # The loop goes on by sending the turns again (no previous_response_id): the call and its output, without the
    # item id (ids name items the provider stored; nothing is stored).
    standin.recorder.clear()
    answered = client.responses.create(model="chat-model", max_output_tokens=30, tool_choice="none", tools=[WEATHER],
                                       input=[{"role": "user", "content": "Weather in Paris?"},
                                              {"type": "function_call", "call_id": call.call_id, "name": call.name,
                                               "arguments": call.arguments},
                                              {"type": "function_call_output", "call_id": call.call_id,
                                               "output": "Sunny"}])
    assert answered.output_text == "Hello from the provider stand-in."
    (upstream,) = _upstream(standin)
    assert upstream["body"]["input"][2] == {"type": "function_call_output", "call_id": call.call_id,
                                            "output": "Sunny"}
    assert upstream["body"]["tools"] == [WEATHER]
    with _raw(gateway) as raw:
        streamed = raw.post("/v1/responses", json={"model": "chat-model", "input": "Weather?", "tools": [WEATHER],
                                                   "stream": True})
    events = [json.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: {")]
    assert "response.function_call_arguments.done" in [e["type"] for e in events]
    for event in events:
        assert event_errors(event) == [], event


REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"previous_response_id": "resp_abc"}, "previous_response_id", "unsupported_parameter"),
    ({"conversation": "conv_abc"}, "conversation", "unsupported_parameter"),
    ({"store": True}, "store", "invalid_request"),
    ({"background": True}, "background", "unsupported_parameter"),
    ({"prompt": {"id": "pmpt_abc"}}, "prompt", "unsupported_parameter"),
    ({"metadata": {"tag": "x"}}, "metadata", "unsupported_parameter"),
    ({"service_tier": "priority"}, "service_tier", "unsupported_parameter"),
    ({"reasoning": {"effort": "low"}}, "reasoning", "unsupported_parameter"),
    ({"prompt_cache_key": "someone-elses"}, "prompt_cache_key", "unsupported_parameter"),
    ({"max_tool_calls": 3}, "max_tool_calls", "unsupported_parameter"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]", "unsupported_tool"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0]", "unsupported_tool"),
    ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0]", "unsupported_tool"),
    ({"tools": [{"type": "computer_use_preview", "display_width": 1, "display_height": 1, "environment": "linux"}]},
     "tools[0]", "unsupported_tool"),
    ({"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://mcp.example.com"}]}, "tools[0]",
     "unsupported_tool"),
    ({"tools": [WEATHER, {"type": "image_generation"}]}, "tools[1]", "unsupported_tool"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type", "unsupported_tool"),
    ({"tools": [{**WEATHER, "parameters": {"anyOf": [{"type": "object"}]}}]}, "tools[0].parameters",
     "invalid_request"),
    ({"tools": [{**WEATHER, "parameters": {"type": "string", "pattern": "\\p{L}+"}}]}, "tools[0].parameters",
     "invalid_request"),
    ({"include": ["file_search_call.results"]}, "include", "invalid_request"),
    ({"include": ["reasoning.encrypted_content"]}, "include", "invalid_request"),
    ({"input": [{"type": "item_reference", "id": "msg_abc"}]}, "input[0]", "unsupported_content"),
    ({"input": [{"type": "message", "role": "user", "content": "Hi", "id": "msg_abc"}]}, "input[0].id",
     "unsupported_parameter"),
    # chat-model has no image price in the policy.
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}]},
     "input", "unsupported_content"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://10.0.0.5/a.png"}]}]},
     "input[0].content[0].image_url", "invalid_request"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_abc"}]}]},
     "input[0].content[0].file_id", "unsupported_parameter"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_abc"}]}]},
     "input[0].content[0]", "unsupported_content"),
    ({"input": [{"type": "reasoning", "summary": [], "encrypted_content": "x"}]}, "input[0]", "unsupported_content"),
    ({"api_base": "http://127.0.0.1:9/v1"}, "api_base", "unsupported_parameter"),
    ({"custom_llm_provider": "ollama"}, "custom_llm_provider", "unsupported_parameter"),
    ({"extra_headers": {"x": "y"}}, "extra_headers", "unsupported_parameter"),
    ({"litellm_metadata": {"api_base": "http://127.0.0.1:9"}}, "litellm_metadata", "unsupported_parameter"),
    ({"user": '{"api_base": "http://127.0.0.1:9"}'}, "user", "unsupported_parameter"),
    ({"max_output_tokens": 10**6}, "max_output_tokens", "invalid_request"),
    ({"max_output_tokens": 0}, "max_output_tokens", "invalid_request"),
    # LiteLLM would raise it to OpenAI's minimum after the approval: more output than was priced.
    ({"max_output_tokens": 15}, "max_output_tokens", "invalid_request"),
]


@pytest.mark.parametrize(("extra", "param", "code"), REFUSED, ids=[p + ":" + c for _, p, c in REFUSED])
def test_state_hosted_tools_and_steering_are_refused_before_anything_is_reserved(
        gateway: RunningGateway, standin: StandIn, extra: dict[str, Any], param: str, code: str) -> None:
    account, key = _funded(gateway, 1_000_000)
    standin.recorder.clear()
    with _raw(gateway, key) as raw:
        response = raw.post("/v1/responses", json={"model": "chat-model", "input": "Hi", **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error
    assert spec_errors("ErrorResponse", response.json()) == []
    assert _upstream(standin) == []
    assert [e["kind"] for e in account_state(gateway, account)["recent_ledger"]] == ["topup"]


def test_the_sdk_sees_a_refused_field_as_a_bad_request_naming_it(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        _sdk(gateway).responses.create(model="chat-model", input="Hi", previous_response_id="resp_abc")
    assert refused.value.param == "previous_response_id"


def test_a_response_of_one_account_cannot_be_read_or_continued_by_another_nor_by_its_own(
        gateway: RunningGateway, standin: StandIn) -> None:
    """State is refused whole, so the property holds for every pair of accounts: A's response id is refused under
    B, and under A too; no route reads a response back."""
    _, key_a = _funded(gateway)
    _, key_b = _funded(gateway)
    created = _sdk(gateway, key_a).responses.create(model="chat-model", input="My secret plan is X.",
                                                    max_output_tokens=20)
    standin.recorder.clear()
    for key in (key_b, key_a):
        with pytest.raises(openai.BadRequestError) as refused:
            _sdk(gateway, key).responses.create(model="chat-model", input="What was my plan?",
                                                previous_response_id=created.id)
        assert refused.value.param == "previous_response_id"
        with _raw(gateway, key) as raw:
            for method, path in [("GET", f"/v1/responses/{created.id}"), ("DELETE", f"/v1/responses/{created.id}"),
                                 ("GET", f"/v1/responses/{created.id}/input_items"),
                                 ("POST", f"/v1/responses/{created.id}/cancel"), ("POST", "/v1/responses/compact"),
                                 ("POST", "/v1/responses/input_tokens")]:
                answer = raw.request(method, path, json={"model": "chat-model", "input": "x"}
                                     if method == "POST" else None)
                assert answer.status_code == 404, (method, path, answer.status_code)
                assert "secret plan" not in answer.text
    assert _upstream(standin) == []


@pytest.mark.parametrize("body", [
    {"input": "my key lgw_ck_{key}"},
    {"input": "Hi", "instructions": "-----BEGIN RSA PRIVATE KEY-----"},
    {"input": [{"role": "user", "content": [{"type": "input_text", "text": "tell me about Project Falcon"}]}]},
    {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "AKIAABCDEFGHIJKLMNOP"},
               {"type": "function_call_output", "call_id": "c", "output": "ok"}]},
    {"input": [{"type": "function_call_output", "call_id": "c", "output": "ghp_" + "a" * 36}]},
    {"input": [{"role": "user", "content": [{"type": "input_image",
                                              "image_url": "https://images.example.com/a.png?k=AKIAABCDEFGHIJKLMNOP"}]}]},
])
def test_guardrails_scan_instructions_and_every_input_text(gateway: RunningGateway, standin: StandIn,
                                                            body: dict[str, Any]) -> None:
    if isinstance(body["input"], str):
        body = {**body, "input": body["input"].replace("lgw_ck_{key}", gateway.customer_key)}
    standin.recorder.clear()
    with _raw(gateway) as raw:
        response = raw.post("/v1/responses", json={"model": "chat-model", **body})
    assert response.status_code == 400 and response.json()["error"]["code"] in ("secret_in_prompt",
                                                                                "content_blocked")
    assert _upstream(standin) == []


def test_the_worst_case_is_reserved_from_max_output_tokens(gateway: RunningGateway, standin: StandIn) -> None:
    # 1500 micro-USD: less than the model's whole output cap (1000 tokens at 2 micro-USD), more than 100 tokens'.
    account, key = _funded(gateway, 1_500)
    with _raw(gateway, key) as raw:
        uncapped = raw.post("/v1/responses", json={"model": "chat-model", "input": "Hi"})
        assert uncapped.status_code == 402, uncapped.text
        assert "max_output_tokens" in uncapped.json()["error"]["message"]
        capped = raw.post("/v1/responses", json={"model": "chat-model", "input": "Hi", "max_output_tokens": 100})
        assert capped.status_code == 200, capped.text
    state = wait_until_settled(gateway, account)
    usage = capped.json()["usage"]
    assert state["balance_micro_usd"] == 1_500 - (usage["input_tokens"] + 2 * usage["output_tokens"])


@pytest.fixture(params=["sqlite", "postgres"])
def any_gateway(request: pytest.FixtureRequest) -> RunningGateway:
    return request.getfixturevalue("gateway" if request.param == "sqlite" else "pg_gateway")


def test_ledger_parity_after_plain_and_streamed_runs(any_gateway: RunningGateway) -> None:
    gateway = any_gateway
    account, key = _funded(gateway, 10**7)
    client = _sdk(gateway, key)
    expected = 0
    for i in range(3):
        answer = client.responses.create(model="chat-model", input="Hi " * (i + 1), max_output_tokens=40)
        assert answer.usage is not None
        expected += answer.usage.input_tokens + 2 * answer.usage.output_tokens
        with client.responses.create(model="chat-model", input="Hey " * (i + 1), stream=True) as stream:
            completed = [e for e in stream if e.type == "response.completed"]
        (done,) = completed
        assert done.response.usage is not None
        expected += done.response.usage.input_tokens + 2 * done.response.usage.output_tokens
    state = wait_until_settled(gateway, account)
    assert (state["balance_micro_usd"], state["reserved_micro_usd"]) == (10**7 - expected, 0)


def test_a_model_of_another_mode_does_not_serve_the_route(gateway: RunningGateway) -> None:
    with _raw(gateway) as raw:
        response = raw.post("/v1/responses", json={"model": "embed-model", "input": "Hi"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_a_provider_failure_is_our_error_and_releases_the_reservation(gateway: RunningGateway) -> None:
    account, key = _funded(gateway, 1_000_000)
    with pytest.raises(openai.APIStatusError) as failed:
        _sdk(gateway, key).responses.create(model="failing-model", input="Hi", max_output_tokens=20)
    assert failed.value.status_code == 502
    assert spec_errors("ErrorResponse", failed.value.response.json()) == []
    state = wait_until_settled(gateway, account)
    assert (state["balance_micro_usd"], state["reserved_micro_usd"]) == (1_000_000, 0)


# A function tool sent without `strict` (or `parameters`): the failed Response echoes the request's tools, and the
# spec's FunctionTool requires both, nullable.
@pytest.mark.parametrize("extra", [{}, {"tools": [{"type": "function", "name": "lookup"}]}], ids=["plain", "tools"])
def test_a_provider_error_inside_a_stream_reaches_the_client_in_our_words(gateway: RunningGateway, stack: Any,
                                                                          extra: dict[str, Any]) -> None:
    account, key = _funded(gateway, 1_000_000)
    with _raw(gateway, key) as raw:
        response = raw.post("/v1/responses", json={"model": "chat-model", "input": "standin-stream-error",
                                                   "stream": True, "max_output_tokens": 20, **extra})
    assert stack.provider_key not in response.text and "authorization" not in response.text.lower()
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    # LiteLLM turns the provider's error event into response.failed; either way the text is the gateway's.
    errors = [e["response"]["error"] for e in events if e.get("type") == "response.failed"]
    errors += [e for e in events if e.get("type") == "error"]
    assert errors, response.text[:500]
    assert all(error["message"] == "The model provider failed." for error in errors), errors
    # Every event, response.failed included, in OpenAI's shape (LiteLLM's failed Response lacked required fields).
    for event in events:
        assert event_errors(event) == [], event
    state = wait_until_settled(gateway, account)
    assert state["reserved_micro_usd"] == 0


def test_images_reach_the_provider_as_sent_and_are_priced_per_image(gateway: RunningGateway,
                                                                    standin: StandIn) -> None:
    account = gateway.keys.account(10**9)
    key, _ = gateway.keys.customer(models=["other-chat-model"], account_id=account)
    image = {"type": "input_image", "image_url": "https://images.example.com/cat.png", "detail": "low"}
    content = [{"type": "input_text", "text": "What is this?"}, image, {**image, "detail": "high"}]
    standin.recorder.clear()
    answer = _sdk(gateway, key).responses.create(model="other-chat-model", max_output_tokens=20,
                                                 input=[{"role": "user", "content": content}])
    assert answer.output_text
    (call,) = _upstream(standin)
    assert call["body"]["input"] == [{"role": "user", "content": content}]
    # Two images at the policy's 1445 tokens each are in the reservation (input at 1 micro-USD per token).
    entries = wait_until_settled(gateway, account)["recent_ledger"]
    reserved = next(e["amount_micro_usd"] for e in entries if e["kind"] == "reserve")
    assert abs(reserved) >= 2 * 1445 + 2 * 20
