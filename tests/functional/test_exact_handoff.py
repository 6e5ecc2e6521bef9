"""What LiteLLM acts on is exactly what the pre-flight approved: hostile requests found by attack, one regression each.

threat-model: TM-E1, TM-E5, TM-D1, TM-D4, TM-T9
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from tests.support import HI, RunningGateway, StandIn, account_state, wait_until_settled

CHAT = '{"model":"chat-model","messages":[{"role":"user","content":"Hi"}],'
FORM = "application/x-www-form-urlencoded"
SMUGGLING_BODY = ('{"model":"text-model","prompt":"x&model=other-chat-model&prompt=hi&n=4&api_key=sk-attacker'
                  '&api_base=http://127.0.0.1:9/&litellm_metadata[api_base]=http://127.0.0.1:9/&z="}')


def _post(gateway: RunningGateway, path: str, key: str, content: bytes | str,
          headers: list[tuple[str, str]] | None = None) -> httpx.Response:
    sent = [("Authorization", f"Bearer {key}"), *(headers or [("Content-Type", "application/json")])]
    return httpx.post(gateway.base_url + path, content=content, headers=sent, timeout=30)


@pytest.mark.parametrize("content_types", [
    [FORM],
    ["Application/X-WWW-Form-Urlencoded"],
    [FORM + "; charset=utf-8"],
    [FORM, "application/json"],
    ["application/json", FORM],
    ["multipart/form-data; boundary=x"],
    ["text/plain"],
    ["application/json; charset=utf-16"],
    ["application/jsonx"],
])
def test_a_body_not_declared_as_json_is_refused_before_any_reservation(
        gateway: RunningGateway, standin: StandIn, content_types: list[str]) -> None:
    account = gateway.keys.account(1_000_000)
    key, _ = gateway.keys.customer(account_id=account)
    standin.recorder.clear()
    response = _post(gateway, "/v1/completions", key, SMUGGLING_BODY, [("Content-Type", t) for t in content_types])
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert standin.recorder.all() == []
    assert [e["kind"] for e in account_state(gateway, account)["recent_ledger"]] == ["topup"]


def test_json_is_what_litellm_gets_whatever_the_client_declared(gateway: RunningGateway, standin: StandIn) -> None:
    for declared in (None, "application/json; charset=UTF-8", 'APPLICATION/JSON;charset="utf-8"'):
        standin.recorder.clear()
        headers = [] if declared is None else [("Content-Type", declared)]
        response = _post(gateway, "/v1/completions", gateway.customer_key, SMUGGLING_BODY, headers)
        assert response.status_code == 200, response.text
        (upstream,) = standin.recorder.all()
        # The ampersands stayed inside the prompt: one field, the approved model, no smuggled field or credential.
        assert upstream["body"]["prompt"].startswith("x&model=other-chat-model&prompt=hi&n=4")
        assert upstream["body"]["model"] == "upstream-text"
        assert "n" not in upstream["body"] and "api_base" not in upstream["body"]
        assert "sk-attacker" not in upstream["headers"].get("authorization", "")


@pytest.mark.parametrize("status", [401, 404, 429])
def test_one_clients_upstream_error_does_not_take_the_model_away_from_others(
        gateway: RunningGateway, status: int) -> None:
    attacker, _ = gateway.keys.customer()
    bystander = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.keys.customer()[0], max_retries=0)
    for _ in range(3):
        response = _post(gateway, "/v1/chat/completions", attacker, json.dumps(
            {"model": "chat-model", "messages": [{"role": "user", "content": f"standin-status:{status}"}],
             "max_tokens": 5}))
        assert 400 <= response.status_code < 600 and response.status_code != 500, response.text
    # Straight after, within LiteLLM's default cooldown (5 s, or the upstream's Retry-After of an hour):
    for _ in range(3):
        answer = bystander.chat.completions.create(model="chat-model", messages=HI, max_tokens=5)
        assert answer.choices[0].message.content


def test_a_stream_abandoned_after_dispatch_is_charged(gateway: RunningGateway, standin: StandIn) -> None:
    """The provider was called, so the customer pays: every request the stand-in saw is settled, none released."""
    account = gateway.keys.account(10_000_000)
    key, _ = gateway.keys.customer(account_id=account, models=["slow-model"])
    standin.recorder.clear()
    body = json.dumps({"model": "slow-model", "messages": HI, "stream": True, "max_tokens": 50}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\n\r\n" + body)
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", gateway.process.port)) as sock:
            sock.sendall(request)
            time.sleep(0.05)  # long enough for the pre-flight to hand off, short of the stand-in's first chunk
    deadline = time.monotonic() + 30
    while len(standin.recorder.all()) < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    called = len(standin.recorder.all())
    state = wait_until_settled(gateway, account)
    kinds = [e["kind"] for e in state["recent_ledger"]]
    assert state["reserved_micro_usd"] == 0
    assert called >= 1
    # The reservation is the whole worst case (prompt bound + 50 output tokens), charged for every provider call.
    assert kinds.count("settle") >= called, kinds
    assert kinds.count("release") <= kinds.count("reserve") - called, kinds
    charged = [e["amount_micro_usd"] for e in state["recent_ledger"] if e["kind"] == "settle"]
    assert all(amount >= 100 for amount in charged), charged


@pytest.mark.parametrize("fields", [
    {"max_completion_tokens": 1, "max_tokens": 1_000_000_000},
    {"max_tokens": 1, "max_completion_tokens": 1_000_000_000},
    {"max_tokens": -5}, {"max_tokens": "lots"}, {"max_tokens": 2.5}, {"max_tokens": True},
    {"max_completion_tokens": 0}, {"max_completion_tokens": "5"},
])
def test_both_output_bounds_are_checked(gateway: RunningGateway, standin: StandIn, fields: dict) -> None:
    standin.recorder.clear()
    response = _post(gateway, "/v1/chat/completions", gateway.customer_key,
                     json.dumps({"model": "chat-model", "messages": HI, **fields}))
    assert response.status_code == 400, response.text
    assert standin.recorder.all() == []


def test_the_bound_reserved_is_the_bound_the_provider_gets(gateway: RunningGateway, standin: StandIn) -> None:
    account = gateway.keys.account(1_000_000)
    key, _ = gateway.keys.customer(account_id=account)
    standin.recorder.clear()
    response = _post(gateway, "/v1/chat/completions", key,
                     json.dumps({"model": "chat-model", "messages": HI, "max_completion_tokens": 1, "max_tokens": 7}))
    assert response.status_code == 200, response.text
    (upstream,) = standin.recorder.all()
    assert (upstream["body"]["max_tokens"], upstream["body"]["max_completion_tokens"]) == (7, 1)
    reserve = next(e for e in account_state(gateway, account)["recent_ledger"] if e["kind"] == "reserve")
    # The reservation covered 7 output tokens at 2 micro-USD each on top of the prompt bound (not 1).
    body_bytes = len(json.dumps({"model": "chat-model", "messages": HI, "max_completion_tokens": 1, "max_tokens": 7}))
    assert reserve["amount_micro_usd"] == body_bytes + 16 + 8 + 7 * 2


@pytest.mark.parametrize(("path", "raw"), [
    ("/v1/chat/completions", '{"model":"chat-model","messages":[{"role":"user","content":"Hi"}],"seed":Infinity}'),
    ("/v1/chat/completions", '{"model":"chat-model","messages":[{"role":"user","content":"Hi"}],"seed":-Infinity}'),
    ("/v1/chat/completions", '{"model":"chat-model","messages":[{"role":"user","content":"Hi"}],"seed":1e999}'),
    ("/v1/chat/completions", '{"model":"chat-model","messages":[{"role":"user","content":"Hi"}],"seed":1.5}'),
    ("/v1/chat/completions", '{"model":"chat-model","messages":[{"role":"user","content":"Hi"}],"seed":"7"}'),
    ("/v1/chat/completions", CHAT + '"logit_bias":{"50256":NaN}}'),
    ("/v1/chat/completions", CHAT + '"logit_bias":{"50256":1000}}'),
    ("/v1/chat/completions", CHAT + '"temperature":NaN}'),
    ("/v1/chat/completions", '{"model":"chat-model","messages":[{"role":"user","content":"\\ud800"}]}'),
    ("/v1/completions", '{"model":"text-model","prompt":{"text":"hi"}}'),
    ("/v1/completions", '{"model":"text-model","prompt":[{"a":1}]}'),
    ("/v1/completions", '{"model":"text-model","prompt":null}'),
    ("/v1/completions", '{"model":"text-model","prompt":"hi","echo":"yes"}'),
    ("/v1/completions", '{"model":"text-model","prompt":"hi","logprobs":99}'),
    ("/v1/embeddings", '{"model":"embed-model","input":{"text":"hi"}}'),
    ("/v1/embeddings", '{"model":"embed-model","input":[]}'),
    ("/v1/embeddings", '{"model":"embed-model","input":[1,"a"]}'),
    ("/v1/embeddings", '{"model":"embed-model","input":"hi","dimensions":-1}'),
    ("/v1/chat/completions", CHAT + '"function_call":{"name":"f","api_base":"http://127.0.0.1:9"}}'),
    ("/v1/chat/completions", CHAT + '"function_call":"always"}'),
    ("/v1/chat/completions", CHAT + '"reasoning_effort":5}'),
    ("/v1/chat/completions", CHAT + '"reasoning_effort":{"api_key":"x"}}'),
    ("/v1/chat/completions", '{"model":"chat-model","messages":[{"role":"user","content":"Hi"}],"stream":"yes"}'),
    ("/v1/chat/completions", '{"model":"chat-model","messages":[{"role":"user","content":"Hi"}],"logprobs":3}'),
])
def test_hostile_values_are_a_clear_400(gateway: RunningGateway, standin: StandIn, path: str, raw: str) -> None:
    standin.recorder.clear()
    response = _post(gateway, path, gateway.customer_key, raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("invalid_request", "unsupported_parameter")
    assert standin.recorder.all() == []


def test_valid_prompt_and_input_shapes_still_pass(gateway: RunningGateway, standin: StandIn) -> None:
    for path, body in [
        ("/v1/completions", {"model": "text-model", "prompt": ["a", "b"], "max_tokens": 3}),
        ("/v1/completions", {"model": "text-model", "prompt": [1, 2, 3], "max_tokens": 3}),
        ("/v1/completions", {"model": "text-model", "prompt": [[1, 2], [3]], "max_tokens": 3}),
        ("/v1/embeddings", {"model": "embed-model", "input": ["a", "b"]}),
        ("/v1/embeddings", {"model": "embed-model", "input": [[1, 2], [3]]}),
        ("/v1/chat/completions", {"model": "chat-model", "messages": HI, "max_tokens": 3, "seed": -(2**63),
                                  "logit_bias": {"50256": -100}, "function_call": "auto",
                                  "functions": [{"name": "f", "parameters": {"type": "object"}}]}),
    ]:
        response = _post(gateway, path, gateway.customer_key, json.dumps(body))
        assert response.status_code == 200, (path, body, response.text)
