"""Answers as OpenAI's published schemas describe them (tests/specs/): plain, streamed, listed, and every error.

A stream's usage event reaches the client only when it asked for it (``stream_options.include_usage``), with
``choices: []``, although the gateway always asks the provider for it (settlement reads it either way).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import RunningGateway, spec_errors, wait_until_settled

HI = [{"role": "user", "content": "Hello"}]


def _client(gateway: RunningGateway, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=gateway.base_url, timeout=30,
                        headers={"Authorization": f"Bearer {key or gateway.customer_key}"})


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    assert response.text.rstrip().endswith("data: [DONE]")
    return events


def test_plain_answers_match_the_schemas(gateway: RunningGateway) -> None:
    with _client(gateway) as client:
        chat = client.post("/v1/chat/completions", json={"model": "chat-model", "messages": HI, "max_tokens": 5})
        assert chat.status_code == 200 and spec_errors("CreateChatCompletionResponse", chat.json()) == []
        assert "provider_specific_fields" not in chat.text
        completion = client.post("/v1/completions", json={"model": "text-model", "prompt": "Hi", "max_tokens": 5})
        assert completion.status_code == 200 and spec_errors("CreateCompletionResponse", completion.json()) == []
        embedding = client.post("/v1/embeddings", json={"model": "embed-model", "input": ["a", "b"]})
        assert embedding.status_code == 200 and spec_errors("CreateEmbeddingResponse", embedding.json()) == []
        models = client.get("/v1/models")
        assert spec_errors("ListModelsResponse", models.json()) == []
        model = client.get("/v1/models/chat-model")
        assert spec_errors("Model", model.json()) == []
        # The length the client is told is the length it gets.
        for answer in (chat, completion, embedding):
            assert int(answer.headers["content-length"]) == len(answer.content)


@pytest.mark.parametrize("asked", [False, True])
def test_stream_events_match_the_schema_and_usage_comes_only_when_asked(gateway: RunningGateway,
                                                                        asked: bool) -> None:
    account = gateway.keys.account(10**9)
    key, _ = gateway.keys.customer(account_id=account)
    body: dict[str, Any] = {"model": "chat-model", "messages": HI, "max_tokens": 50, "stream": True}
    if asked:
        body["stream_options"] = {"include_usage": True}
    with _client(gateway, key) as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    events = _events(response)
    for event in events:
        assert spec_errors("CreateChatCompletionStreamResponse", event) == [], event
    usage_events = [e for e in events if e.get("usage")]
    if asked:
        assert len(usage_events) == 1 and usage_events[0]["choices"] == [] and usage_events[0] is events[-1]
    else:
        assert usage_events == []
    # Either way the provider's usage settled the request (not the worst case).
    entries = wait_until_settled(gateway, account)["recent_ledger"]
    charged = next(e["amount_micro_usd"] for e in entries if e["kind"] == "settle")
    reserved = next(e["amount_micro_usd"] for e in entries if e["kind"] == "reserve")
    assert 0 < charged < reserved  # the provider's usage, not the worst case


@pytest.mark.parametrize(("method", "path", "body", "key", "status"), [
    ("POST", "/v1/chat/completions", {"model": "chat-model", "messages": HI}, "lgw_ck_" + "A" * 49, 401),
    ("POST", "/v1/chat/completions", {"model": "chat-model", "messages": HI, "api_base": "http://x"}, None, 400),
    ("POST", "/v1/chat/completions", {"model": "chat-model", "messages": HI, "max_tokens": 10**9}, None, 400),
    ("POST", "/v1/chat/completions", {"model": "not-mine", "messages": HI}, None, 403),
    ("GET", "/v1/models/not-mine", None, None, 404),
    ("GET", "/v1/nothing-here", None, None, 404),
    ("POST", "/v1/chat/completions", {"model": "failing-model", "messages": HI}, None, 502),
])
def test_errors_match_the_schema(gateway: RunningGateway, method: str, path: str, body: Any, key: str | None,
                                 status: int) -> None:
    with _client(gateway, key) as client:
        response = client.request(method, path, json=body)
    assert response.status_code == status
    assert spec_errors("ErrorResponse", response.json()) == []


def test_several_choices_tool_calls_and_logprobs_come_through_in_openai_shape(gateway: RunningGateway) -> None:
    import openai

    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.customer_key, max_retries=0)
    several = client.chat.completions.create(model="chat-model", messages=HI, max_tokens=20, n=2, logprobs=True,
                                             top_logprobs=1)
    assert [c.index for c in several.choices] == [0, 1]
    assert several.choices[0].logprobs is not None and several.choices[0].logprobs.content
    assert spec_errors("CreateChatCompletionResponse", several.model_dump(exclude_unset=True)) == []
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}}}}]
    called = client.chat.completions.create(model="chat-model", messages=HI, max_tokens=20, tools=tools)
    (call,) = called.choices[0].message.tool_calls or []
    assert (called.choices[0].finish_reason, call.function.name) == ("tool_calls", "get_weather")
    assert spec_errors("CreateChatCompletionResponse", called.model_dump(exclude_unset=True)) == []
    # The call's answer goes back as a tool message, as an agent loop would send it (the assistant message in the
    # request schema's fields: `annotations` is an answer field, refused in a request).
    assistant = called.choices[0].message.model_dump(exclude_none=True, exclude={"annotations"})
    answered = client.chat.completions.create(model="chat-model", max_tokens=20, tools=tools, messages=[
        *HI, assistant, {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}])
    assert answered.choices[0].message.tool_calls
    with _client(gateway) as raw:
        streamed = raw.post("/v1/chat/completions", json={"model": "chat-model", "messages": HI, "max_tokens": 20,
                                                          "n": 2, "stream": True})
    events = _events(streamed)
    assert {c["index"] for e in events for c in e["choices"]} == {0, 1}
    for event in events:
        assert spec_errors("CreateChatCompletionStreamResponse", event) == [], event
