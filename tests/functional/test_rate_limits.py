"""Per-key rate limits on one gateway (in-memory counters), and key rotation with a grace period.

threat-model: TM-T11
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support import RunningGateway, StandIn

HI = [{"role": "user", "content": "Hi"}]


def _chat(gateway: RunningGateway, key: str, **extra: object) -> httpx.Response:
    return httpx.post(gateway.base_url + "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                      json={"model": "chat-model", "messages": HI, "max_tokens": 5, **extra})


def test_requests_per_minute(gateway: RunningGateway, standin: StandIn) -> None:
    key, _ = gateway.keys.customer(rpm_limit=3)
    assert [_chat(gateway, key).status_code for _ in range(3)] == [200, 200, 200]
    standin.recorder.clear()
    limited = _chat(gateway, key)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["x-ratelimit-limit-requests"] == "3"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert standin.recorder.all() == []  # refused before LiteLLM
    other, _ = gateway.keys.customer(rpm_limit=3)
    assert _chat(gateway, other).status_code == 200  # limits are per key


def test_tokens_per_minute(gateway: RunningGateway, standin: StandIn) -> None:
    # Each request's worst case is about 120 prompt-bound tokens + 5 output tokens.
    key, _ = gateway.keys.customer(tpm_limit=300)
    statuses = [_chat(gateway, key).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    too_big, _ = gateway.keys.customer(tpm_limit=50)
    standin.recorder.clear()
    response = _chat(gateway, too_big)
    assert response.status_code == 429 and standin.recorder.all() == []


def test_openai_sdk_sees_a_rate_limit_error(gateway: RunningGateway) -> None:
    key, _ = gateway.keys.customer(rpm_limit=1)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="chat-model", messages=HI, max_tokens=5)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="chat-model", messages=HI, max_tokens=5)


def test_rotation_keeps_the_old_key_for_the_grace_period(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {gateway.admin_key}"},
                         timeout=30)
    old, old_id = gateway.keys.customer()
    rotated = admin.post(f"/admin/keys/{old_id}/rotate", json={"grace_seconds": 2})
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    new = body["key"]
    gateway.keys.stack.canaries.append(new)
    assert body["replaces"] == old_id and body["id"] != old_id and new != old
    assert _chat(gateway, new).status_code == 200
    assert _chat(gateway, old).status_code == 200  # still inside the grace period
    time.sleep(2.2)
    assert _chat(gateway, old).status_code == 401
    assert _chat(gateway, new).status_code == 200
    shown = admin.get(f"/admin/keys/{old_id}").json()
    assert shown["rotated_to"] == body["id"] and shown["state"] == "expired"
    # The policy default applies without a body; a rotated (expired) key cannot be rotated again.
    assert admin.post(f"/admin/keys/{old_id}/rotate").status_code == 404
    assert admin.post(f"/admin/keys/{body['id']}/rotate").status_code == 201
