"""Differential property: for every hostile request that gets a 2xx, what reached the provider is exactly what the
pre-flight approved. The provider stand-in records each call; the test compares it with what the client sent.

For every 2xx: one provider call, on the route's own path, carrying the configured provider key and nothing else a
client could send as a credential; the approved model's upstream name; only fields the client sent (plus the
gateway's own ``max_tokens`` and ``stream_options``) with the values the client sent; at most the approved output
bound and number of choices. Bodies come from the fuzz corpus, sent as JSON and as form, multipart and other
content types and charsets, plus the hand-made cases an attack review found.

The same property holds for each provider kind (Anthropic, Azure OpenAI, Gemini, Vertex AI, Bedrock): one call on the
kind's own path, with the policy's key in the kind's own header (for Vertex AI, a bearer token issued to the policy's
service account; for Bedrock, signed with the policy's access key id for the policy's region, the signature verified
by the stand-in) and no other credential, the policy's deployment, model, API version, host, project and location,
only fields LiteLLM's translation writes, and the output bound.

threat-model: TM-E1, TM-E5, TM-E6, TM-E7, TM-E8
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.devstack.standin_bedrock import signing_scope
from tests.support import (
    AZURE_API_VERSION,
    BEDROCK_REGION,
    BODIES,
    FUZZ_SETTINGS,
    KINDS,
    SCALE,
    KindsStack,
    RunningGateway,
    Stack,
    StandIn,
)
from tests.support_vertex import LOCATION, PROJECT, VertexStack

pytestmark = pytest.mark.slow

ROUTES = {"/v1/chat/completions": "/chat/completions", "/v1/completions": "/completions",
          "/v1/embeddings": "/embeddings", "/v1/responses": "/responses"}
UPSTREAM = {"chat-model": "upstream-chat", "text-model": "upstream-text", "embed-model": "upstream-embed"}
CAPS = {"chat-model": 1000, "text-model": 4096, "embed-model": None}
GATEWAY_ADDED = {"max_tokens", "stream_options"}
# What the gateway adds on each route, and the fields that bound the output there.
ADDED = {"/v1/responses": {"max_output_tokens", "store"}}
OUTPUT_BOUNDS = {"/v1/responses": ("max_output_tokens",)}
DEFAULTS = {("stream", False)}
CONTENT_TYPES = st.one_of(
    st.sampled_from([["application/json"], [], ["application/json; charset=utf-8"]]),
    st.sampled_from([["application/x-www-form-urlencoded"], ["APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8"],
                     ["application/x-www-form-urlencoded", "application/json"],
                     ["application/json", "application/x-www-form-urlencoded"], ["multipart/form-data; boundary=gw"],
                     ["text/plain"], ["application/json; charset=utf-16"], ["application/json; charset=latin-1"]]),
)
ENCODINGS = st.one_of(st.just("json"), st.sampled_from(["json", "form", "utf-16"]))
SMUGGLED_PROMPT = ("x&model=chat-model&prompt=hi&n=4&api_key=sk-attacker&api_base=http://127.0.0.1:9/"
                   "&litellm_metadata[api_base]=http://127.0.0.1:9/&custom_llm_provider=ollama&z=")


COMMON_OPTIONAL = {
    "temperature": st.floats(min_value=0, max_value=2), "top_p": st.floats(min_value=0, max_value=1),
    "n": st.integers(min_value=1, max_value=4), "max_tokens": st.integers(min_value=1, max_value=1000),
    "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=4)),
    "seed": st.integers(min_value=-(2**63), max_value=2**63 - 1), "stream": st.booleans(),
    "presence_penalty": st.floats(min_value=-2, max_value=2), "frequency_penalty": st.floats(min_value=-2, max_value=2),
    "logit_bias": st.dictionaries(st.integers(0, 100_000).map(str), st.integers(-100, 100), max_size=3),
}
TEXT = st.text(max_size=60) | st.just(SMUGGLED_PROMPT)
VALID = {
    "/v1/chat/completions": st.fixed_dictionaries(
        {"model": st.just("chat-model"),
         "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]),
                                                     "content": TEXT}), min_size=1, max_size=3)},
        optional={**COMMON_OPTIONAL, "max_completion_tokens": st.integers(min_value=1, max_value=1000),
                  "parallel_tool_calls": st.booleans(), "logprobs": st.booleans(),
                  "top_logprobs": st.integers(0, 20),
                  "response_format": st.just({"type": "json_object"}),
                  "reasoning_effort": st.sampled_from(["low", "medium", "high"]),
                  "store": st.just(False), "safety_identifier": st.text(min_size=1, max_size=20)}),
    "/v1/completions": st.fixed_dictionaries(
        {"model": st.just("text-model"),
         "prompt": TEXT | st.lists(st.integers(0, 50_000), min_size=1, max_size=4)},
        optional={**COMMON_OPTIONAL, "user": st.text(min_size=1, max_size=20), "echo": st.booleans(), "suffix": st.text(max_size=5),
                  "best_of": st.integers(1, 4)}),
    "/v1/responses": st.fixed_dictionaries(
        {"model": st.just("chat-model"),
         "input": TEXT | st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "developer", "assistant"]),
                                                         "content": TEXT}), min_size=1, max_size=3)},
        optional={"instructions": TEXT, "max_output_tokens": st.integers(min_value=16, max_value=1000),
                  "temperature": st.floats(min_value=0, max_value=2), "top_p": st.floats(min_value=0, max_value=1),
                  "stream": st.booleans(), "store": st.just(False), "parallel_tool_calls": st.booleans(),
                  "top_logprobs": st.integers(0, 20), "truncation": st.sampled_from(["auto", "disabled"]),
                  "user": st.text(min_size=1, max_size=20), "safety_identifier": st.text(min_size=1, max_size=20),
                  "text": st.just({"format": {"type": "json_object"}, "verbosity": "low"}),
                  "tools": st.just([{"type": "function", "name": "get_weather",
                                     "parameters": {"type": "object", "properties": {}}}]),
                  "tool_choice": st.sampled_from(["none", "auto", "required"]),
                  "include": st.just(["message.output_text.logprobs"]),
                  "stream_options": st.fixed_dictionaries({"include_obfuscation": st.booleans()})}),
    "/v1/embeddings": st.fixed_dictionaries(
        {"model": st.just("embed-model"), "input": TEXT | st.lists(st.text(max_size=10), min_size=1, max_size=3)},
        optional={"encoding_format": st.sampled_from(["float", "base64"]), "user": st.text(min_size=1, max_size=20),
                  "dimensions": st.integers(1, 3072)}),
}


def _encode(body: dict[str, Any], encoding: str) -> bytes:
    if encoding == "form":
        return urllib.parse.urlencode({k: json.dumps(v) if not isinstance(v, str) else v
                                       for k, v in body.items()}).encode()
    text = json.dumps(body)
    return text.encode("utf-16") if encoding == "utf-16" else text.encode()


def _check_upstream(path: str, sent: dict[str, Any], stack: Stack, standin: StandIn) -> None:
    calls = [c for c in standin.recorder.all() if c["method"] == "POST"]
    assert len(calls) == 1, calls
    (call,) = calls
    assert call["path"].endswith(ROUTES[path]) and call["query"] == ""
    headers = call["headers"]
    assert headers.get("authorization") == f"Bearer {stack.provider_key}"
    assert not {"api-key", "x-api-key", "x-goog-api-key", "x-litellm-api-key"} & set(headers)
    received = call["body"]
    assert isinstance(received, dict)
    model = sent["model"]
    assert received["model"] == UPSTREAM[model]
    assert set(received) <= set(sent) | ADDED.get(path, GATEWAY_ADDED), set(received) - set(sent)
    for name, value in sent.items():
        # (chat's stream_options gets include_usage from the gateway; the Responses API's passes as sent)
        if name == "model" or (name == "stream_options" and path != "/v1/responses") or (
                name == "max_tokens" and value is None):
            continue
        if name not in received and (value is None or any((name, value) == default for default in DEFAULTS)):
            continue  # an explicit null or default may be left out: it means the same either way
        assert received.get(name) == value, (name, received.get(name), value)
    cap = CAPS[model]
    names = OUTPUT_BOUNDS.get(path, ("max_tokens", "max_completion_tokens"))
    if path == "/v1/responses":
        assert received["store"] is False  # nothing is kept in the provider account, whatever was sent
    if cap is None:
        assert "max_tokens" not in received and "max_completion_tokens" not in received
    else:
        assert not {"max_tokens", "max_completion_tokens", "max_output_tokens"} - set(names) & set(received)
        bounds = [received.get(name) for name in names]
        assert any(b is not None for b in bounds) and all(b is None or 1 <= b <= cap for b in bounds), bounds
    assert (received.get("n") or 1) <= max(sent.get("n") or 1, 1)


def test_what_reaches_the_provider_is_what_was_approved(gateway: RunningGateway, stack: Stack,
                                                        standin: StandIn) -> None:
    counter = {"sent": 0, "ok": 0, **{f"ok {path}": 0 for path in ROUTES}}
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for path in ROUTES:

            @settings(max_examples=100 * SCALE, **FUZZ_SETTINGS)
            # Valid bodies are drawn twice as often as hostile ones, so the property is checked on enough accepted
            # requests whatever strings hypothesis finds in the loaded modules (it draws text from their constants).
            @given(body=st.one_of(BODIES, VALID[path], VALID[path]), content_types=CONTENT_TYPES, encoding=ENCODINGS)
            @example(body={"model": "text-model", "prompt": SMUGGLED_PROMPT},
                     content_types=["application/x-www-form-urlencoded"], encoding="json")
            @example(body={"model": "text-model", "prompt": SMUGGLED_PROMPT}, content_types=[], encoding="json")
            @example(body={"model": "chat-model", "messages": [{"role": "user", "content": SMUGGLED_PROMPT}]},
                     content_types=["application/x-www-form-urlencoded", "application/json"], encoding="json")
            @example(body={"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}],
                           "max_completion_tokens": 1, "max_tokens": 1_000_000_000},
                     content_types=["application/json"], encoding="json")
            @example(body={"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], "n": 2,
                           "max_tokens": 3, "stream": True, "stream_options": {"include_usage": False}},
                     content_types=["application/json"], encoding="json")
            @example(body={"model": "embed-model", "input": "x", "user": "u"}, content_types=[], encoding="json")
            @example(body={"model": "chat-model", "input": SMUGGLED_PROMPT, "store": False},
                     content_types=["application/x-www-form-urlencoded", "application/json"], encoding="json")
            @example(body={"model": "chat-model", "input": "Hi", "stream": True, "top_logprobs": 2,
                           "stream_options": {"include_obfuscation": False},
                           "include": ["message.output_text.logprobs"], "text": {"verbosity": "low"}},
                     content_types=[], encoding="json")
            @example(body={"model": "chat-model", "input": "Hi", "max_output_tokens": 16, "stream": True,
                           "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]},
                     content_types=["application/json"], encoding="json")
            def run(body: dict[str, Any], content_types: list[str], encoding: str) -> None:
                if isinstance(body.get("extra"), dict):
                    body = {**body, **body.pop("extra")}
                standin.recorder.clear()
                headers = [("Authorization", f"Bearer {gateway.customer_key}")]
                headers += [("Content-Type", value) for value in content_types]
                response = client.post(path, content=_encode(body, encoding), headers=headers)  # noqa: B023
                counter["sent"] += 1
                assert response.status_code < 500, (response.status_code, response.text[:300])
                if response.status_code >= 300:
                    assert not [c for c in standin.recorder.all() if c["method"] == "POST"]
                    return
                response.read()
                counter["ok"] += 1
                counter[f"ok {path}"] += 1  # noqa: B023
                _check_upstream(path, body, stack, standin)  # noqa: B023

            run()
    print(f"differential cases: {counter}")
    assert counter["ok"] >= 40, counter
    assert all(counter[f"ok {path}"] >= 10 for path in ROUTES), counter  # each route's property is exercised


# --- the same property for each provider kind ------------------------------------------------------------------------

# What each kind's stand-in protocol receives for a chat request: the path (Azure's names the policy's deployment),
# the query, the one header that carries the credential, and the body fields LiteLLM's translation may write.
KIND_ROUTES = {"anthropic": ("/v1/messages", "", "x-api-key"),
               "azure": ("/openai/deployments/standin-chat/chat/completions", f"api-version={AZURE_API_VERSION}",
                         "api-key"),
               # The policy's model in the path; a streamed call goes to streamGenerateContent?alt=sse instead.
               "gemini": ("/v1beta/models/standin-chat:generateContent", "", "x-goog-api-key"),
               # The policy's model id in the path; a streamed call goes to converse-stream. Signed (Authorization).
               "bedrock": ("/model/standin-chat/converse", "", "authorization")}
ANTHROPIC_FIELDS = {"model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences", "stream",
                    "tools", "tool_choice", "metadata", "output_format", "output_config"}
ANTHROPIC_REFUSED = {"n", "logprobs", "top_logprobs", "seed", "presence_penalty", "frequency_penalty", "logit_bias"}
GEMINI_FIELDS = {"contents", "system_instruction", "generationConfig", "tools", "toolConfig"}
# What LiteLLM maps OpenAI's sampling fields to, in Gemini's generationConfig (proto and JSON names as it writes them).
# What LiteLLM may put in generationConfig for the OpenAI fields Gemini receives (it mixes both spellings).
GEMINI_GENERATION = {"temperature", "top_p", "max_output_tokens", "stop_sequences", "candidate_count",
                     "response_logprobs", "responseLogprobs", "frequency_penalty", "presence_penalty", "seed",
                     "response_mime_type", "response_schema", "response_json_schema", "responseJsonSchema",
                     "thinkingConfig"}
GEMINI_REFUSED = {"user", "logit_bias", "top_logprobs"}
BEDROCK_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"}
BEDROCK_INFERENCE = {"maxTokens", "temperature", "topP", "stopSequences"}
# What LiteLLM's Converse translation does not map for this model (refused for it, docs/fields.md).
BEDROCK_REFUSED = {"n", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
                   "reasoning_effort", "store", "safety_identifier", "user", "parallel_tool_calls"}
CREDENTIAL_HEADERS = {"authorization", "api-key", "x-api-key", "x-goog-api-key", "x-litellm-api-key",
                      "ocp-apim-subscription-key", "x-amz-security-token"}


def _check_kind_upstream(kind: str, sent: dict[str, Any], kinds: KindsStack) -> None:
    calls = [c for c in kinds.calls() if c["method"] == "POST"]
    assert len(calls) == 1, calls
    (call,) = calls
    path, query, credential = KIND_ROUTES[kind]
    headers = call["headers"]
    # The policy's key for this provider, in the kind's own header, and no other credential a client could send.
    assert not (CREDENTIAL_HEADERS - {credential}) & set(headers), headers
    received = call["body"]
    if kind == "bedrock":
        # Signed with the policy's access key id, for the policy's region (the stand-in checked the signature with
        # the Vault secret: the call would have been refused otherwise), sent to the policy's host.
        scope = signing_scope(headers.get("authorization"))
        assert scope is not None
        assert (scope["access_key_id"], scope["region"], scope["service"]) == (
            json.loads(kinds.keys[kind])["aws_access_key_id"], BEDROCK_REGION, "bedrock")
        assert headers["host"] == f"127.0.0.1:{kinds.standin.port}"
        if sent.get("stream") is True:
            path = path.replace("/converse", "/converse-stream")
        assert (call["path"], call["query"]) == (path, query)
        assert isinstance(received, dict) and set(received) <= BEDROCK_FIELDS, set(received) - BEDROCK_FIELDS
        inference = received["inferenceConfig"]
        assert set(inference) <= BEDROCK_INFERENCE, set(inference) - BEDROCK_INFERENCE
        assert 1 <= inference["maxTokens"] <= 1000
        for name, mapped in (("temperature", "temperature"), ("top_p", "topP")):
            if sent.get(name) is not None:
                assert inference.get(mapped) == sent[name], (name, inference.get(mapped), sent[name])
        return
    assert headers.get(credential) == kinds.keys[kind]
    if kind == "gemini":
        _check_gemini_call(sent, call, path, query)
        return
    assert (call["path"], call["query"]) == (path, query)
    assert isinstance(received, dict) and received["model"] == "standin-chat"
    if kind == "anthropic":
        assert set(received) <= ANTHROPIC_FIELDS, set(received) - ANTHROPIC_FIELDS
        assert set(received.get("metadata") or {}) <= {"user_id"}
        assert 1 <= received["max_tokens"] <= 1000
        return
    # The OpenAI SDK under LiteLLM's Azure handler writes stream: false when the client left it out (the default).
    assert set(received) <= set(sent) | GATEWAY_ADDED | {"stream"}, set(received) - set(sent)
    assert "stream" in sent or received.get("stream") in (None, False)
    for name, value in sent.items():
        if name in ("model", "stream_options", "max_tokens") or (name not in received and value is None):
            continue
        if name not in received and any((name, value) == default for default in DEFAULTS):
            continue
        assert received.get(name) == value, (name, received.get(name), value)
    bounds = [received.get(name) for name in ("max_tokens", "max_completion_tokens")]
    assert any(b is not None for b in bounds) and all(b is None or 1 <= b <= 1000 for b in bounds), bounds


def _check_gemini_call(sent: dict[str, Any], call: dict[str, Any], path: str, query: str,
                       generation_fields: set[str] = GEMINI_GENERATION) -> None:
    """A Gemini generateContent call (Google AI Studio's or Vertex AI's): the policy's model in the path, only the
    fields LiteLLM's translation writes, the output bound, and the sampling values the client sent."""
    if sent.get("stream") is True:
        path, query = path.replace(":generateContent", ":streamGenerateContent"), "alt=sse"
    assert (call["path"], call["query"]) == (path, query)
    received = call["body"]
    assert isinstance(received, dict) and set(received) <= GEMINI_FIELDS, set(received) - GEMINI_FIELDS
    generation = received["generationConfig"]
    assert set(generation) <= generation_fields, set(generation) - generation_fields
    assert 1 <= generation["max_output_tokens"] <= 1000
    for name, mapped in (("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed"),
                         ("n", "candidate_count"), ("top_logprobs", "logprobs")):
        if sent.get(name) is not None:
            assert generation.get(mapped) == sent[name], (name, generation.get(mapped), sent[name])


@pytest.mark.parametrize("kind", KINDS)
def test_each_provider_kind_receives_only_what_was_approved(kinds: KindsStack, kind: str) -> None:
    dropped = {"anthropic": ANTHROPIC_REFUSED, "gemini": GEMINI_REFUSED, "bedrock": BEDROCK_REFUSED}.get(kind, set())
    _kind_property(kinds.gateway.base_url, kinds.key, f"{kind}-chat", dropped, kinds.standin.recorder.clear,
                   kinds.calls, lambda body: _check_kind_upstream(kind, body, kinds))


# Vertex AI: the Gemini body on Vertex AI's path for the policy's project, location and model, with the bearer token
# the token endpoint issued to the policy's service account, and no other credential.
VERTEX_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-standin-chat:generateContent"


def _check_vertex_upstream(sent: dict[str, Any], vertex: VertexStack) -> None:
    calls = [c for c in vertex.calls() if c["method"] == "POST"]
    assert len(calls) == 1, calls
    (call,) = calls
    headers = call["headers"]
    scheme, _, token = str(headers.get("authorization", "")).partition(" ")
    assert scheme == "Bearer" and vertex.accounts.holder(token) == vertex.emails["vertex"]
    assert call["token_holder"] == vertex.emails["vertex"]
    assert not (CREDENTIAL_HEADERS - {"authorization"}) & set(headers), headers
    # Vertex AI takes top_logprobs too, as generationConfig's logprobs.
    _check_gemini_call(sent, call, VERTEX_PATH, "", GEMINI_GENERATION | {"logprobs"})


def test_vertex_ai_receives_only_what_was_approved(vertex: VertexStack) -> None:
    """threat-model: TM-E8"""
    # LiteLLM maps top_logprobs for Vertex AI (not for AI Studio); user and logit_bias it drops there too.
    _kind_property(vertex.gateway.base_url, vertex.key, "vertex-chat", GEMINI_REFUSED - {"top_logprobs"},
                   vertex.standin.recorder.clear, lambda: vertex.calls("/"),  # a refused one gets no token either
                   lambda body: _check_vertex_upstream(body, vertex))


def _kind_property(base_url: str, key: str, model: str, dropped: set[str], clear: Callable[[], None],
                   calls: Callable[[], list[dict[str, Any]]], check: Callable[[dict[str, Any]], None]) -> None:
    """The property for one model of a provider kind: every accepted hostile or valid chat body reaches the provider
    as ``check`` says it must; every refused one reaches nothing."""
    counter = {"sent": 0, "ok": 0}
    kind = model.removesuffix("-chat")
    # Valid bodies without the fields the kind's translation would drop (refused for it, docs/fields.md), so that
    # enough of them are accepted to check the property on.
    valid = VALID["/v1/chat/completions"].map(
        lambda body: {**{k: v for k, v in body.items() if k not in dropped}, "model": model})
    hostile = BODIES.map(lambda body: {**body, "model": model} if "model" in body else body)
    with httpx.Client(base_url=base_url, timeout=30) as client:

        # Hostile bodies go with any content types and encodings; valid ones as JSON, so that the property is checked
        # on enough accepted requests whatever the draw (a valid body under a refused content type checks nothing).
        cases = st.one_of(st.tuples(hostile, CONTENT_TYPES, ENCODINGS),
                          st.tuples(valid, st.just(["application/json"]), st.just("json")))

        @settings(max_examples=100 * SCALE, **FUZZ_SETTINGS)
        @given(case=cases)
        @example(case=({"model": model, "messages": [{"role": "user", "content": SMUGGLED_PROMPT}]},
                       ["application/x-www-form-urlencoded", "application/json"], "json"))
        @example(case=({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
                        "stream": True, "stream_options": {"include_usage": False}}, ["application/json"], "json"))
        def run(case: tuple[dict[str, Any], list[str], str]) -> None:
            body, content_types, encoding = case
            if isinstance(body.get("extra"), dict):
                body = {**body, **body.pop("extra")}
            clear()
            headers = [("Authorization", f"Bearer {key}")]
            headers += [("Content-Type", value) for value in content_types]
            response = client.post("/v1/chat/completions", content=_encode(body, encoding), headers=headers)
            counter["sent"] += 1
            assert response.status_code < 500, (response.status_code, response.text[:300])
            if response.status_code >= 300:
                assert not [c for c in calls() if c["method"] == "POST"]
                # Why it was refused, for the assertion's message below should too few pass.
                reason = f"{response.status_code}:{response.json().get('error', {}).get('code')}"
                counter[reason] = counter.get(reason, 0) + 1
                return
            response.read()
            counter["ok"] += 1
            check(body)

        run()
    print(f"differential cases ({kind}): {counter}")
    assert counter["ok"] >= 10, counter  # as each route of the property above
