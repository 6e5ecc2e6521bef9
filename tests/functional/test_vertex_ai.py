"""Vertex AI end to end: Gemini models on Vertex AI behind the same control point, driven with the official ``openai``
SDK through a booted gateway against the stand-in's OAuth token endpoint and Vertex AI protocol.

The provider's credential is a service account's JSON key (a throwaway RSA key per test run) in Vault. google-auth,
inside LiteLLM, signs an assertion with it and exchanges it at the stand-in's token endpoint, which verifies the
signature with the account's public key and issues the bearer token the stand-in's Vertex AI checks. Covered: chat,
streaming, tools, an upstream error, a project the account may not use, a wrong credential (the token endpoint
refuses it), an expired token (refreshed), a timeout, steering fields, the cost-map price, ledger parity; no
credential or token in a response or a log line; Google's default credentials (a gcloud file in HOME) never used.

threat-model: TM-S9, TM-E8
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.devstack.standin_gemini import THOUGHTS, either, gemini_prompt_tokens
from gateway.devstack.standin_vertex import throwaway_service_account
from gateway.pipeline.fields import KIND_STEERING_FIELDS
from tests.support import (
    HI,
    Stack,
    account_state,
    any_listed,
    boot_check,
    boot_refusal_line,
    run_gateway,
    wait_until_settled,
)
from tests.support_vertex import LOCATION, PROJECT, VertexStack, model_entry, provider_entry

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                  "parameters": {"type": "object",
                                                                 "properties": {"city": {"type": "string"}}}}}


def _balance(vertex: VertexStack) -> int:
    return int(account_state(vertex.gateway, vertex.account)["balance_micro_usd"])


def _settled(vertex: VertexStack, before: int) -> int:
    # A stream's settlement is written as its last chunk goes out: wait for it rather than race it.
    state = wait_until_settled(vertex.gateway, vertex.account)
    assert state["reserved_micro_usd"] == 0
    return before - int(state["balance_micro_usd"])


def _bearer(call: dict[str, Any]) -> str:
    scheme, _, token = str(call["headers"].get("authorization", "")).partition(" ")
    assert scheme == "Bearer"
    return token


def _path(model: str, method: str = "generateContent") -> str:
    return f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{model}:{method}"


# --- chat ---------------------------------------------------------------------------------------------------------------


def test_the_model_list_names_vertex_ai_as_the_owner(vertex: VertexStack) -> None:
    owned = {m.id: m.owned_by for m in vertex.client().models.list()}
    assert owned["vertex-chat"] == owned["vertex-mapped"] == "vertex_ai"


def test_chat_calls_the_policys_project_location_and_model_with_the_accounts_token(vertex: VertexStack) -> None:
    vertex.standin.recorder.clear()
    before = _balance(vertex)
    reply = vertex.client().chat.completions.create(model="vertex-chat", messages=HI, max_tokens=50)
    assert reply.choices[0].message.content == "Hello from the provider stand-in."
    assert reply.choices[0].finish_reason == "stop"
    (call,) = vertex.calls()
    assert (call["method"], call["path"], call["query"]) == ("POST", _path("gemini-standin-chat"), "")
    # The bearer token is one the token endpoint issued to this provider's service account, and nothing else
    # carries a credential.
    assert call["token_holder"] == vertex.emails["vertex"]
    assert _bearer(call) in vertex.accounts.issued()
    assert "x-goog-api-key" not in call["headers"]
    body = call["body"]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert either(body["generationConfig"], "maxOutputTokens") == 50
    prompt = gemini_prompt_tokens(body)
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        prompt, 7 + THOUGHTS)
    assert _settled(vertex, before) == prompt * 1 + (7 + THOUGHTS) * 2


def test_the_token_exchange_is_a_jwt_bearer_grant_signed_by_the_account(vertex: VertexStack) -> None:
    # The stand-in verified each grant's RS256 signature with the account's public key; every one it answered came
    # from a provider's own account, never from the gcloud file in the gateway's HOME.
    vertex.client().chat.completions.create(model="vertex-chat", messages=HI, max_tokens=5)
    holders = {call.get("token_holder") for call in vertex.token_calls()}
    assert vertex.emails["vertex"] in holders
    assert vertex.emails["adc"] not in holders
    for call in vertex.token_calls():
        assert call["method"] == "POST" and "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in call[
            "body"]


def test_streaming_settles_the_providers_usage(vertex: VertexStack) -> None:
    vertex.standin.recorder.clear()
    before = _balance(vertex)
    stream = vertex.client().chat.completions.create(model="vertex-chat", messages=HI, max_tokens=50, stream=True,
                                                     stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "Hello from the provider stand-in."
    (call,) = vertex.calls()
    assert (call["path"], call["query"]) == (_path("gemini-standin-chat", "streamGenerateContent"), "alt=sse")
    assert call["token_holder"] == vertex.emails["vertex"]
    prompt = gemini_prompt_tokens(call["body"])
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (prompt, 5 + THOUGHTS)
    assert _settled(vertex, before) == prompt * 1 + (5 + THOUGHTS) * 2


def test_tools_round_trip_as_openai_tool_calls(vertex: VertexStack) -> None:
    vertex.standin.recorder.clear()
    reply = vertex.client().chat.completions.create(model="vertex-chat", messages=HI, max_tokens=50,
                                                    tools=[WEATHER_TOOL])  # type: ignore[list-item]
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    (called,) = choice.message.tool_calls
    assert called.function.name == "get_weather" and json.loads(called.function.arguments) == {}
    (call,) = vertex.calls()
    (tool,) = call["body"]["tools"]
    (declared,) = either(tool, "functionDeclarations")
    assert declared["name"] == "get_weather"
    assistant = {"role": "assistant", "tool_calls": [{"id": called.id, "type": "function", "function": {
        "name": called.function.name, "arguments": called.function.arguments}}]}
    follow_up = [*HI, assistant, {"role": "tool", "tool_call_id": called.id, "content": "sunny"}]
    vertex.standin.recorder.clear()
    answer = vertex.client().chat.completions.create(model="vertex-chat", messages=follow_up,  # type: ignore[arg-type]
                                                     max_tokens=50)
    assert answer.choices[0].message.content == "Hello from the provider stand-in."
    (call,) = vertex.calls()
    parts = [part for content in call["body"]["contents"] for part in content["parts"]]
    (answered,) = [either(part, "functionResponse") for part in parts if either(part, "functionResponse")]
    assert answered["name"] == "get_weather" and "sunny" in json.dumps(answered["response"])


# --- failures -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["failing", "echo", "elsewhere"])
def test_an_upstream_error_is_the_gateways_stable_error(vertex: VertexStack, case: str) -> None:
    vertex.standin.recorder.clear()
    before = _balance(vertex)
    with pytest.raises(openai.APIStatusError) as caught:
        vertex.client().chat.completions.create(model=f"vertex-{case}", messages=HI, max_tokens=5)
    # A 5xx is the gateway's 502 upstream_error, a 400 its invalid_request; a project the account may not use (403)
    # is the operator's problem, not the client's: 502.
    expected = (400, "invalid_request") if case == "echo" else (502, "upstream_error")
    assert (caught.value.status_code, caught.value.body["code"]) == expected  # type: ignore[index]
    text = caught.value.response.text
    for leaked in ("Internal server error", "bad request from", "PERMISSION_DENIED", "aiplatform", "proj-",
                   str(vertex.standin.port), *vertex.emails.values(), *vertex.secrets()):
        assert leaked not in text
    assert len(vertex.calls()) == 1  # one provider call, no retry
    assert _settled(vertex, before) == 0


def test_a_wrong_credential_is_refused_by_the_token_endpoint_and_is_the_gateways_stable_error(
        vertex: VertexStack) -> None:
    vertex.standin.recorder.clear()
    before = _balance(vertex)
    with pytest.raises(openai.APIStatusError) as caught:
        vertex.client().chat.completions.create(model="vertex-wrong-key", messages=HI, max_tokens=5)
    assert (caught.value.status_code, caught.value.body["code"]) == (502, "upstream_error")  # type: ignore[index]
    text = caught.value.response.text
    for leaked in ("invalid_grant", "Invalid JWT", "RefreshError", "oauth2", "token", *vertex.emails.values(),
                   *vertex.secrets()):
        assert leaked not in text
    # The assertion reached the token endpoint and was refused there; Vertex AI was never called without a token.
    assert vertex.token_calls() and all("token_holder" not in call for call in vertex.token_calls())
    assert vertex.calls() == []
    assert _settled(vertex, before) == 0
    # The other providers still serve.
    assert vertex.client().chat.completions.create(model="vertex-chat", messages=HI, max_tokens=5).choices


def test_an_expired_token_is_refreshed_with_a_new_signed_assertion(vertex: VertexStack) -> None:
    # vertex_refresh's tokens last 2 seconds (Google's an hour): after that the stand-in answers 401 to them, so a
    # second request succeeds only with a token google-auth fetched anew.
    vertex.standin.recorder.clear()
    first = vertex.client().chat.completions.create(model="vertex-refresh", messages=HI, max_tokens=5)
    (call,) = vertex.calls()
    first_token = _bearer(call)
    time.sleep(2.5)
    vertex.standin.recorder.clear()
    second = vertex.client().chat.completions.create(model="vertex-refresh", messages=HI, max_tokens=5)
    (call,) = vertex.calls()
    assert first.choices and second.choices
    assert _bearer(call) != first_token and call["token_holder"] == vertex.emails["vertex_refresh"]
    assert vertex.accounts.holder(first_token) is None  # the first one had expired


def test_a_slow_provider_times_out_as_504_and_charges_the_reservation(vertex: VertexStack) -> None:
    before = _balance(vertex)
    with pytest.raises(openai.APIStatusError) as caught:
        vertex.client().chat.completions.create(model="vertex-slow", messages=HI, max_tokens=5)
    assert (caught.value.status_code, caught.value.body["code"]) == (504, "upstream_timeout")  # type: ignore[index]
    # The call went out and may be billed to its bound: the whole reservation is charged, never released (TM-T9).
    request_id = caught.value.response.headers["x-request-id"]
    entries = [e for e in account_state(vertex.gateway, vertex.account)["recent_ledger"]
               if e["request_id"] == request_id]
    assert sorted(e["kind"] for e in entries) == ["reserve", "settle"], entries
    assert {e["amount_micro_usd"] for e in entries} == {_settled(vertex, before)}


def test_a_redirecting_provider_is_not_followed_with_the_token(vertex: VertexStack) -> None:
    vertex.standin.recorder.clear()
    with pytest.raises(openai.APIStatusError) as caught:
        vertex.client().chat.completions.create(model="vertex-redirected", messages=HI, max_tokens=5)
    assert caught.value.status_code == 502
    # The redirect was answered, and nothing followed it to where it pointed.
    paths = [str(call["path"]) for call in vertex.calls()]
    assert paths and all(path.startswith("/v1/projects/proj-redirect/") for path in paths), paths


# --- steering -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", KIND_STEERING_FIELDS["vertex_ai"])
def test_steering_fields_are_refused(vertex: VertexStack, field: str) -> None:
    vertex.standin.recorder.clear()
    value: object = {"Authorization": "Bearer attacker"} if field == "extra_headers" else "proj-attacker"
    for body in ({"model": "vertex-chat", "messages": HI, field: value},
                 {"model": "vertex-chat", "messages": HI, "user": json.dumps({field: value})}):
        response = httpx.post(vertex.gateway.base_url + "/v1/chat/completions", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {vertex.key}"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "unsupported_parameter"
    assert vertex.calls() == [] and vertex.token_calls() == []


def test_images_go_inline_only(vertex: VertexStack) -> None:
    """threat-model: TM-I8"""
    vertex.standin.recorder.clear()
    with pytest.raises(openai.BadRequestError) as refused:
        vertex.client().chat.completions.create(model="vertex-chat", max_tokens=5, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://images.invalid/cat"}}]}])
    assert refused.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    assert vertex.calls() == []


# --- price, parity, secrets -----------------------------------------------------------------------------------------


def test_cost_map_price_under_vertex_ais_name(vertex: VertexStack) -> None:
    # gemini-2.5-flash on Vertex AI: 0.30 and 2.50 USD per million tokens in LiteLLM's bundled map.
    before = _balance(vertex)
    reply = vertex.client().chat.completions.create(model="vertex-mapped", messages=HI, max_tokens=5)
    assert reply.usage is not None
    expected = reply.usage.prompt_tokens * 300_000 + reply.usage.completion_tokens * 2_500_000
    assert _settled(vertex, before) == -(-expected // 1_000_000)


def test_ledger_parity_and_no_credential_or_token_in_the_log(vertex: VertexStack) -> None:
    assert vertex.gateway.keys.ledger.check() == []
    assert vertex.accounts.issued()
    assert any_listed(vertex.gateway.process.output(), vertex.secrets()) == []
    environ = Path(f"/proc/{vertex.gateway.process.process.pid}/environ").read_bytes()  # type: ignore[union-attr]
    assert any_listed(environ.decode("utf-8", "replace"), vertex.secrets()) == []


# --- boot -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["GCE_METADATA_HOST", "GCE_METADATA_IP", "CLOUDSDK_CONFIG", "GOOGLE_CLOUD_PROJECT",
                                      "GOOGLE_APPLICATION_CREDENTIALS"])
def test_boot_refuses_google_auth_variables(stack: Stack, tmp_path: Path, variable: str) -> None:
    line = boot_refusal_line(boot_check(stack, tmp_path, **{variable: "from-the-environment"}))
    assert variable in line


def _bad_accounts() -> dict[str, tuple[str, str]]:
    """Provider name -> (a value that is not a usable service account, the words boot must say about it)."""
    text, _ = throwaway_service_account(f"gw@{PROJECT}.iam.gserviceaccount.com", frozenset({PROJECT}),
                                        "https://oauth2.googleapis.com/token")
    info = json.loads(text)
    return {
        "vx_not_json": ("standin-" + "x" * 40, "is not JSON"),
        "vx_elsewhere": (json.dumps({**info, "token_uri": "https://token.attacker.example/token"}),
                         "token_uri must be https://oauth2.googleapis.com/token"),
        "vx_no_key": (json.dumps({k: v for k, v in info.items() if k != "private_key"}), "has no private_key"),
        "vx_user": (json.dumps({**info, "type": "authorized_user"}), "type must be service_account"),
    }


def test_boot_refuses_a_service_account_that_is_not_one(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S9"""
    from gateway.boot.bootstrap import bootstrap
    from gateway.boot.secret import Secret
    from gateway.boot.settings import Settings

    bad = _bad_accounts()
    # Written straight to Vault (the operator command would refuse them), as a hand-edited secret would be.
    bootstrap(stack.root(), Settings(vault_addr=stack.vault_addr),
              provider_keys={name: Secret(value) for name, (value, _) in bad.items()},
              credentials_dir=tmp_path / "boot")
    for name, (value, words) in bad.items():
        policy = tmp_path / f"{name}.yaml"
        policy.write_text(f"version: 1\nproviders:\n{provider_entry(name, 'http://127.0.0.1:9')}models:\n"
                          + model_entry("m", name, "gemini-standin-chat"), encoding="utf-8")
        result = boot_check(stack, tmp_path / name, GATEWAY_POLICY_FILE=str(policy), unseen=(value,))
        line = boot_refusal_line(result)
        assert "provider credentials" in line and f"field '{name}'" in line and words in line, line
        assert "attacker" not in result.stderr


def test_secrets_bootstrap_refuses_a_service_account_sending_its_assertion_elsewhere(stack: Stack,
                                                                                     tmp_path: Path) -> None:
    """threat-model: TM-S9"""
    token_file = tmp_path / "operator-token"
    token_file.write_text(stack.root_token)
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_VAULT_ADDR"] = stack.vault_addr
    before = stack.root().secrets.kv.v2.read_secret_version(path="gateway/providers", raise_on_deleted_version=True)
    for name, (value, words) in _bad_accounts().items():
        if not value.startswith("{"):
            continue  # not JSON: an API key of another kind, which bootstrap stores as it is
        key_file = tmp_path / name
        key_file.write_text(value)
        key_file.chmod(0o600)
        result = run_gateway(["secrets", "bootstrap", "--operator-token-file", str(token_file), "--credentials-dir",
                              str(tmp_path / "creds"), "--provider-key-file", f"{name}={key_file}"], env)
        assert result.returncode != 0 and words in result.stderr and f"--provider-key-file {name}" in result.stderr
        assert json.loads(value)["private_key_id"] not in result.stdout + result.stderr
    after = stack.root().secrets.kv.v2.read_secret_version(path="gateway/providers", raise_on_deleted_version=True)
    assert after["data"]["data"] == before["data"]["data"]  # nothing was written


def test_boot_refuses_a_model_litellm_would_not_call_through_the_gemini_api(vertex: VertexStack, stack: Stack,
                                                                            tmp_path: Path) -> None:
    """threat-model: TM-E8"""
    # LiteLLM routes a vertex_ai model by its name: one holding "openai" goes to Model Garden's OpenAI-compatible
    # endpoint instead. `serve --check` already refuses it (the provider's field in Vault is a valid account).
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\nproviders:\n{provider_entry('vertex', vertex.standin.root_url)}models:\n"
                      + model_entry("m", "vertex", "gemini-openai-oss"), encoding="utf-8")
    line = boot_refusal_line(boot_check(stack, tmp_path, GATEWAY_POLICY_FILE=str(policy)))
    assert "model 'm'" in line and "through Vertex AI's Gemini API" in line, line
