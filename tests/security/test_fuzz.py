"""Fuzzing the running gateway: schemathesis over its OpenAPI (v1 and admin) and hypothesis-built hostile bodies and
headers. Zero 5xx, zero canary secrets in any answer or in the log, and nothing but allow-listed fields upstream.

`make test` runs at least 2,000 cases (bounded to about a minute here); `make fuzz` sets GATEWAY_FUZZ_SCALE=10.

threat-model: TM-E1, TM-D1, TM-I1
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.admin.api import build_admin_app
from gateway.openapi import gateway_openapi
from gateway.pipeline import responses
from gateway.pipeline.fields import ALLOWED_TOP
from tests.support import BODIES, FUZZ_SETTINGS, SCALE, RunningGateway, Stack, StandIn, any_listed

pytestmark = pytest.mark.slow

SCHEMA_EXAMPLES = 130 * SCALE  # per operation; 19 operations
HOSTILE_EXAMPLES = 500 * SCALE  # per route; 4 routes


def _openapi() -> dict[str, Any]:
    admin = build_admin_app(None, None, frozenset(), audit=None)  # type: ignore[arg-type]  # schema only, never served
    return gateway_openapi(admin.openapi())


def _check(response: httpx.Response | Any, stack: Stack, counter: list[int]) -> None:
    counter.append(1)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    seen = f"{dict(response.headers)!r} {response.text}"
    assert any_listed(seen, stack.canaries) == []


def test_schemathesis_over_the_openapi(gateway: RunningGateway, stack: Stack) -> None:
    schema = schemathesis.openapi.from_dict(_openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
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


HEADER_NAMES = st.sampled_from(["x-litellm-api-key", "api-key", "x-api-key", "x-goog-api-key", "host",
                                "Ocp-Apim-Subscription-Key", "x-litellm-tags", "x-http-method-override",
                                "x-forwarded-host", "x-forwarded-for", "content-type", "transfer-encoding"])
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40)


def test_hostile_bodies_and_headers(gateway: RunningGateway, stack: Stack, standin: StandIn) -> None:
    counter: list[int] = []
    # What may reach the provider: OpenAI fields of the served routes, and the gateway's own store: false.
    allowed_upstream = set().union(*ALLOWED_TOP.values(), responses.ALLOWED_TOP)
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):

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
