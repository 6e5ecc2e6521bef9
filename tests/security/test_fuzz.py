"""Fuzzing the running gateway: schemathesis over its OpenAPI (v1 and admin) and hypothesis-built hostile bodies and
headers. Zero 5xx, zero canary secrets in any answer or in the log, and nothing but allow-listed fields upstream.

`make test` runs at least 2,000 cases (bounded to about a minute here); `make fuzz` sets GATEWAY_FUZZ_SCALE=10.

threat-model: TM-E1, TM-D1, TM-I1
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admin.api import build_admin_app
from gateway.openapi import gateway_openapi
from gateway.pipeline.fields import ALLOWED_TOP
from tests.conftest import RunningGateway
from tests.support import Stack, StandIn, any_listed

SCALE = int(os.environ.get("GATEWAY_FUZZ_SCALE", "1"))
SCHEMA_EXAMPLES = 130 * SCALE  # per operation; 12 operations
HOSTILE_EXAMPLES = 500 * SCALE  # per route; 3 routes
FUZZ_SETTINGS: dict[str, Any] = {"deadline": None, "database": None, "derandomize": True,
                                 "suppress_health_check": list(HealthCheck)}


def _openapi() -> dict[str, Any]:
    admin = build_admin_app(None, None, frozenset())  # type: ignore[arg-type]  # schema only, never served
    return gateway_openapi(admin.openapi())


def _check(response: httpx.Response | Any, stack: Stack, counter: list[int]) -> None:
    counter.append(1)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    seen = f"{dict(response.headers)!r} {response.text}"
    assert any_listed(seen, stack.canaries) == []


def test_schemathesis_over_the_openapi(gateway: RunningGateway, stack: Stack) -> None:
    schema = schemathesis.openapi.from_dict(_openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    counter: list[int] = []
    for operation in operations:
        key = gateway.admin_key if operation.path.startswith("/admin") else gateway.customer_key
        if operation.path == "/v1/keys/revoke":
            key = "lgw_ck_" + "0" * 49  # never the suite's live key: this endpoint would revoke it

        @settings(max_examples=SCHEMA_EXAMPLES, **FUZZ_SETTINGS)
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            # run() is called inside this iteration, so the loop variable is the one meant.
            bearer = {"Authorization": f"Bearer {key}"}  # noqa: B023
            response = case.call(base_url=gateway.base_url, headers=bearer, timeout=30)
            _check(response, stack, counter)

        run()
    print(f"fuzz cases: {len(counter)}")
    assert len(counter) >= 1000, len(counter)


HOSTILE_KEYS = st.sampled_from(sorted(
    {"api_base", "base_url", "api_key", "user_config", "extra_headers", "headers", "extra_body", "metadata",
     "litellm_metadata", "litellm_params", "mock_response", "provider_specific_header", "aws_access_key_id",
     "vertex_credentials", "custom_llm_provider", "fallbacks", "timeout", "callbacks", "model", "messages", "input",
     "prompt", "stream", "stream_options", "max_tokens", "n", "user", "tools", "tool_choice", "response_format",
     "temperature", "stop", "logit_bias", "__proto__", "constructor", "Model", "MODEL", "model\u0000", "modеl"}))
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=False), st.text(max_size=40),
                        st.sampled_from(["chat-model", "embed-model", "text-model", "http://attacker.invalid",
                                         '{"api_base": "http://attacker.invalid"}', "os.environ/LITELLM_MASTER_KEY"]))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(HOSTILE_KEYS | st.text(max_size=10), inner,
                                                                          max_size=4)), max_leaves=20)
# Hostile cases an attack review found (each also has a regression test in tests/functional/test_exact_handoff.py).
# json.dumps writes the non-finite floats as NaN and Infinity, which the gateway must refuse with a 400.
HI = [{"role": "user", "content": "Hi"}]
FOUND = st.sampled_from([
    {"model": "chat-model", "messages": HI, "seed": float("inf")},
    {"model": "chat-model", "messages": HI, "seed": float("-inf")},
    {"model": "chat-model", "messages": HI, "logit_bias": {"50256": float("nan")}},
    {"model": "chat-model", "messages": HI, "max_completion_tokens": 1, "max_tokens": 1_000_000_000},
    {"model": "chat-model", "messages": HI, "max_tokens": -5},
    {"model": "chat-model", "messages": HI, "max_tokens": "lots"},
    {"model": "chat-model", "messages": HI, "function_call": {"name": "f", "api_base": "http://attacker.invalid"}},
    {"model": "chat-model", "messages": HI, "reasoning_effort": {"api_key": "x"}},
    {"model": "text-model", "prompt": {"text": "hi"}},
    {"model": "text-model", "prompt": "x&model=chat-model&n=4&api_key=sk-attacker&z="},
    {"model": "embed-model", "input": {"api_base": "http://attacker.invalid"}},
])
BODIES = st.one_of(
    FOUND,
    st.dictionaries(HOSTILE_KEYS, JSON, max_size=8),
    st.fixed_dictionaries({"model": st.sampled_from(["chat-model", "text-model", "embed-model"]),
                           "messages": st.just([{"role": "user", "content": "Hi"}]), "prompt": st.just("x"),
                           "input": st.just("x"), "max_tokens": st.just(3)},
                          optional={"extra": st.dictionaries(HOSTILE_KEYS, JSON, max_size=3)}),
)
HEADER_NAMES = st.sampled_from(["x-litellm-api-key", "api-key", "x-api-key", "x-goog-api-key", "host",
                                "Ocp-Apim-Subscription-Key", "x-litellm-tags", "x-http-method-override",
                                "x-forwarded-host", "x-forwarded-for", "content-type", "transfer-encoding"])
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40)


def test_hostile_bodies_and_headers(gateway: RunningGateway, stack: Stack, standin: StandIn) -> None:
    counter: list[int] = []
    allowed_upstream = set().union(*ALLOWED_TOP.values())
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):

            @settings(max_examples=HOSTILE_EXAMPLES, **FUZZ_SETTINGS)
            @given(body=BODIES, headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=3))
            def run(body: dict[str, Any], headers: dict[str, str]) -> None:
                if isinstance(body.get("extra"), dict):
                    body = {**body, **body.pop("extra")}
                standin.recorder.clear()
                sent_headers = {**headers, "Authorization": f"Bearer {gateway.customer_key}"}
                sent_headers["content-type"] = "application/json"
                sent_headers.pop("transfer-encoding", None)
                try:
                    # run() is called inside this iteration, so the loop variable is the one meant.
                    response = client.post(path, content=json.dumps(body), headers=sent_headers)  # noqa: B023
                except httpx.LocalProtocolError:
                    return  # the client library refused to send it
                _check(response, stack, counter)
                for upstream in standin.recorder.all():
                    forwarded = upstream["body"] if isinstance(upstream["body"], dict) else {}
                    assert set(forwarded) <= allowed_upstream, set(forwarded) - allowed_upstream
                    assert gateway.customer_key not in repr(upstream)

            run()
    print(f"fuzz cases: {len(counter)}")
    assert len(counter) >= 1000, len(counter)
    assert any_listed(gateway.process.output(), stack.canaries) == []
