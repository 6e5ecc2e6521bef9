"""Canary leak check: the suite's secret values never appear in a response body, a header or the gateway's log.

The session gateway runs with every logger at DEBUG (GATEWAY_LOG_LEVEL=DEBUG, LITELLM_LOG=DEBUG), so whatever the
gateway, LiteLLM, hvac, httpx or SQLAlchemy would log is in its captured output. The canaries: the LiteLLM master
key, the key-hashing pepper, the provider API key, the Vault root token, every secret_id delivered, every Vault token
the tests saw, and every virtual key issued (plaintext and digest).

threat-model: TM-T1
"""

from __future__ import annotations

import httpx

from tests.support import RunningGateway, Stack, any_listed

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}


def _exercise(gateway: RunningGateway, stack: Stack) -> list[str]:
    """Drive every route and failure path once; return every response as text (status, headers, body)."""
    seen: list[str] = []
    customer = {"Authorization": f"Bearer {gateway.customer_key}"}
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    requests = [
        ("POST", "/v1/chat/completions", customer, CHAT),
        ("POST", "/v1/chat/completions", customer, {**CHAT, "stream": True}),
        ("POST", "/v1/chat/completions", customer, {"model": "failing-model", "messages": CHAT["messages"]}),
        ("POST", "/v1/chat/completions", customer, {**CHAT, "api_key": stack.provider_key}),
        ("POST", "/v1/chat/completions", customer, {**CHAT, "model": "other-chat-model"}),
        ("POST", "/v1/completions", customer, {"model": "text-model", "prompt": "x"}),
        ("POST", "/v1/embeddings", customer, {"model": "embed-model", "input": "x"}),
        ("GET", "/v1/models", customer, None),
        ("POST", "/v1/chat/completions", {"Authorization": f"Bearer {stack.master_key}"}, CHAT),
        ("POST", "/v1/chat/completions", {"x-litellm-api-key": stack.master_key}, CHAT),
        ("POST", "/v1/chat/completions", admin, CHAT),
        ("GET", "/admin/keys", admin, None),
        ("GET", "/admin/keys", customer, None),
        ("POST", "/admin/keys", admin, {"name": "canary", "models": ["chat-model"],
                                         "account_id": gateway.keys.rich_account}),
        ("POST", "/key/generate", {"Authorization": f"Bearer {stack.master_key}"}, {}),
        ("GET", "/config/yaml", {"Authorization": f"Bearer {stack.master_key}"}, None),
    ]
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        for method, path, headers, payload in requests:
            response = client.request(method, path, headers=headers, json=payload)
            text = response.text
            if path == "/admin/keys" and method == "POST" and response.status_code == 201:
                # The one response that must carry a plaintext key: register it as a canary for the log scan,
                # and leave it out of the response scan.
                created = response.json()["key"]
                stack.canaries.append(created)
                text = text.replace(created, "<new key>")
            seen.append(f"{response.status_code} {dict(response.headers)!r} {text}")
        throwaway, _ = gateway.keys.customer()
        revoke = client.post("/v1/keys/revoke", headers={"Authorization": f"Bearer {throwaway}"})
        seen.append(f"{revoke.status_code} {dict(revoke.headers)!r} {revoke.text}")
    return seen


def test_no_canary_in_responses_or_logs(gateway: RunningGateway, stack: Stack) -> None:
    responses = _exercise(gateway, stack)
    assert len(stack.canaries) >= 8
    assert any_listed("\n".join(responses), stack.canaries) == []
    log = gateway.process.output()
    assert "DEBUG" in log and "LiteLLM" in log  # the log really was captured at DEBUG, LiteLLM's included
    assert any_listed(log, stack.canaries) == []


def test_logs_are_json_with_request_ids_and_redacted(gateway: RunningGateway, stack: Stack) -> None:
    import json

    from gateway.logs import REDACT, JsonFormatter

    denied = httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT,
                        headers={"Authorization": "Bearer " + "lgw_ck_" + "A" * 49})
    request_id = denied.headers["x-request-id"]
    entries = [json.loads(line) for line in gateway.process.output().splitlines() if line.startswith("{")]
    assert entries and all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert any(e.get("request_id") == request_id and e.get("reason") == "malformed" for e in entries)
    assert any(e["logger"].startswith("LiteLLM") for e in entries)  # LiteLLM's lines come through the same path
    # The redaction pass itself: registered values and key-shaped strings never survive formatting.
    import logging

    REDACT.add("canary-secret-value-for-redaction")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s and %s and Bearer abcdefghijkl",
                               ("canary-secret-value-for-redaction", "lgw_ak_" + "B" * 49), None)
    line = JsonFormatter().format(record)
    assert "canary-secret-value" not in line and "BBBB" not in line and "abcdefghijkl" not in line
