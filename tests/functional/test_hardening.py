"""Request hardening: only the OpenAI API's fields reach LiteLLM, limits hold, guardrails block, errors are ours.

Each test checks both the client's answer and that the provider stand-in received nothing.

threat-model: TM-E1, TM-TP1, TM-D1, TM-I1, TM-I2, TM-I3
"""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.keys import format as key_format
from tests.support import RunningGateway, StandIn

HI = [{"role": "user", "content": "Hi"}]
CHAT = {"model": "chat-model", "messages": HI, "max_tokens": 5}


def _post(gateway: RunningGateway, body: object, path: str = "/v1/chat/completions",
          headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gateway.base_url + path, json=body, timeout=30,
                      headers={"Authorization": f"Bearer {gateway.customer_key}", **(headers or {})})


def _refused(gateway: RunningGateway, standin: StandIn, body: object, code: str, path: str = "/v1/chat/completions"):
    standin.recorder.clear()
    response = _post(gateway, body, path)
    assert response.status_code == 400, (body, response.status_code, response.text)
    assert response.json()["error"]["code"] == code, response.text
    assert standin.recorder.all() == []
    return response


STEERING = ["api_base", "base_url", "api_key", "api_version", "user_config", "extra_headers", "headers", "extra_body",
            "metadata", "litellm_metadata", "litellm_params", "mock_response", "provider_specific_header",
            "aws_access_key_id", "aws_secret_access_key", "vertex_credentials", "azure_ad_token",
            "custom_llm_provider", "model_list", "fallbacks", "num_retries", "timeout", "caching", "guardrails", "tags",
            "organization", "deployment_id", "api-key", "input_cost_per_token", "callbacks", "secret_fields",
            "proxy_server_request", "litellm_logging_obj", "no-log", "cache", "region_name", "azure_ad_token_provider"]


@pytest.mark.parametrize("field", STEERING)
def test_steering_fields_at_the_top_level(gateway: RunningGateway, standin: StandIn, field: str) -> None:
    response = _refused(gateway, standin, {**CHAT, field: {"api_base": "http://attacker.invalid"}},
                        "unsupported_parameter")
    assert field in response.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    {**CHAT, "messages": [{"role": "user", "content": "Hi", "api_base": "http://attacker.invalid"}]},
    {**CHAT, "messages": [{"role": "user", "content": "Hi", "metadata": {"api_key": "x"}}]},
    {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi", "api_key": "x"}]}]},
    {**CHAT, "stream": True, "stream_options": {"include_usage": True, "api_base": "http://attacker.invalid"}},
    {**CHAT, "tools": [{"type": "function", "function": {"name": "f", "api_key": "x"}}]},
    {**CHAT, "tools": [{"type": "function", "function": {"name": "f"}, "extra_headers": {"a": "b"}}]},
    {**CHAT, "tool_choice": {"type": "function", "function": {"name": "f", "api_base": "x"}}},
    {**CHAT, "response_format": {"type": "json_object", "api_base": "x"}},
    {**CHAT, "messages": [{"role": "assistant", "content": None,
                           "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}",
                                                                                        "api_key": "x"}}]}]},
])
def test_nested_steering_fields(gateway: RunningGateway, standin: StandIn, body: dict) -> None:
    _refused(gateway, standin, body, "unsupported_parameter")


@pytest.mark.parametrize("body", [
    {**CHAT, "user": json.dumps({"api_base": "http://attacker.invalid"})},
    {**CHAT, "user": json.dumps({"nested": {"litellm_metadata": {"x": 1}}})},
    {**CHAT, "stop": [json.dumps({"metadata": {"user_api_key": "x"}})]},
    {**CHAT, "messages": [{"role": "user", "content": "Hi", "name": json.dumps({"api_key": "sk-x"})}]},
])
def test_json_smuggled_in_strings(gateway: RunningGateway, standin: StandIn, body: dict) -> None:
    _refused(gateway, standin, body, "unsupported_parameter")


def test_embedding_and_completion_allow_lists(gateway: RunningGateway, standin: StandIn) -> None:
    _refused(gateway, standin, {"model": "embed-model", "input": "x", "api_base": "x"}, "unsupported_parameter",
             "/v1/embeddings")
    _refused(gateway, standin, {"model": "embed-model", "input": "x", "messages": HI}, "unsupported_parameter",
             "/v1/embeddings")
    _refused(gateway, standin, {"model": "text-model", "prompt": "x", "tools": []}, "unsupported_parameter",
             "/v1/completions")


def test_limits(gateway: RunningGateway, standin: StandIn) -> None:
    deep: object = "x"
    for _ in range(40):
        deep = {"a": deep}
    _refused(gateway, standin, {**CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "n", "schema": deep}}}, "too_deeply_nested")
    _refused(gateway, standin, {**CHAT, "messages": HI * 300}, "too_many_messages")
    for model in ("../../etc", "a b", "", "x" * 200):
        _refused(gateway, standin, {**CHAT, "model": model}, "invalid_request")
    _refused(gateway, standin, {**CHAT, "stream": "true"}, "invalid_request")
    _refused(gateway, standin, {**CHAT, "n": 5}, "invalid_request")
    _refused(gateway, standin, {**CHAT, "temperature": 3}, "invalid_request")
    _refused(gateway, standin, {**CHAT, "messages": [{"role": "root", "content": "x"}]}, "invalid_request")
    # A model that does not serve this route (its price would not match the route's cost).
    _refused(gateway, standin, {"model": "embed-model", "messages": HI}, "invalid_request")


def test_pathological_json_is_a_400_not_a_crash(gateway: RunningGateway, standin: StandIn) -> None:
    standin.recorder.clear()
    for raw in (b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        response = httpx.post(gateway.base_url + "/v1/chat/completions", content=raw, timeout=30,
                              headers={"Authorization": f"Bearer {gateway.customer_key}"})
        assert response.status_code == 400
    assert standin.recorder.all() == []


@pytest.mark.parametrize(("text", "kind"), [
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----", "private_key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n", "private_key"),
    ("my key is AKIAIOSFODNN7EXAMPLE ok?", "aws_access_key_id"),
    ("token ghp_" + "a" * 36, "github_token"),
    ("xoxb-123456789012-abcdefghijkl", "slack_token"),
])
def test_secrets_in_prompts_are_blocked(gateway: RunningGateway, standin: StandIn, text: str, kind: str) -> None:
    response = _refused(gateway, standin, {**CHAT, "messages": [{"role": "user", "content": text}]}, "secret_in_prompt")
    assert kind in response.json()["error"]["message"]
    assert text not in response.text


def test_our_own_keys_are_blocked_only_when_real(gateway: RunningGateway, standin: StandIn) -> None:
    real = key_format.generate(key_format.KeyKind.CUSTOMER)
    _refused(gateway, standin, {"model": "embed-model", "input": [f"key={real}"]}, "secret_in_prompt",
             "/v1/embeddings")
    typo = real[:-1] + ("A" if real[-1] != "A" else "B")
    standin.recorder.clear()
    assert _post(gateway, {**CHAT, "messages": [{"role": "user", "content": f"is {typo} a key?"}]}).status_code == 200
    assert len(standin.recorder.all()) == 1


def test_policy_deny_patterns(gateway: RunningGateway, standin: StandIn) -> None:
    response = _refused(gateway, standin, {**CHAT, "messages": [{"role": "user", "content": "Tell me about Project  "
                                                                                          "FALCON"}]},
                        "content_blocked")
    assert "no-project-falcon" in response.json()["error"]["message"]


def test_provider_errors_never_reach_the_client(gateway: RunningGateway, standin: StandIn, stack) -> None:
    standin.recorder.clear()
    response = _post(gateway, {**CHAT, "model": "echo-error-model"})
    assert response.status_code == 400
    assert response.json() == {"error": {"message": "The request was rejected by the model backend.",
                                         "type": "invalid_request_error", "param": None, "code": "invalid_request"}}
    assert stack.provider_key not in response.text and str(standin.port) not in response.text
    assert len(standin.recorder.all()) == 1  # it did reach the provider, which echoed its credential


def test_security_headers_everywhere(gateway: RunningGateway) -> None:
    responses = [
        _post(gateway, CHAT),
        _post(gateway, CHAT, headers={"Authorization": "Bearer nope"}),
        httpx.get(gateway.base_url + "/nowhere"),
        httpx.get(gateway.base_url + "/admin/keys", headers={"Authorization": f"Bearer {gateway.admin_key}"}),
        httpx.get(gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {gateway.customer_key}"}),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "access-control-allow-origin" not in response.headers


def test_cors_only_for_listed_origins(gateway: RunningGateway) -> None:
    allowed, other = "https://app.example.com", "https://evil.example.net"
    ok = _post(gateway, CHAT, headers={"Origin": allowed})
    assert ok.headers["access-control-allow-origin"] == allowed
    assert "access-control-allow-origin" not in _post(gateway, CHAT, headers={"Origin": other}).headers
    preflight = httpx.options(gateway.base_url + "/v1/chat/completions",
                              headers={"Origin": allowed, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == allowed
    refused = httpx.options(gateway.base_url + "/v1/chat/completions",
                            headers={"Origin": other, "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 404 and "access-control-allow-origin" not in refused.headers
    admin = httpx.options(gateway.base_url + "/admin/keys", headers={"Origin": allowed})
    assert "access-control-allow-origin" not in admin.headers
