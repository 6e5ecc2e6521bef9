"""Authentication: only ``Authorization: Bearer`` with the right kind of key; every failure looks the same.

threat-model: TM-S1
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gateway.keys import format as key_format
from tests.support import RunningGateway, StandIn

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}
EXPECTED_401 = {"error": {"message": "Invalid API key.", "type": "authentication_error", "param": None,
                          "code": "invalid_api_key"}}


def _post(gateway: RunningGateway, headers: dict[str, str], path: str = "/v1/chat/completions",
          params: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gateway.base_url + path, json=CHAT, headers=headers, params=params, timeout=30)


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == EXPECTED_401


def test_every_failure_reason_gives_the_same_401(gateway: RunningGateway, standin: StandIn) -> None:
    revoked, revoked_id = gateway.keys.customer()
    gateway.keys.service.store.revoke(revoked_id, by="test")
    expired, _ = gateway.keys.customer(expires_at=datetime.now(UTC) + timedelta(seconds=1))
    import time

    time.sleep(1.2)
    valid = gateway.customer_key
    bad_checksum = valid[:-1] + ("A" if valid[-1] != "A" else "B")
    unknown = key_format.generate(key_format.KeyKind.CUSTOMER)
    standin.recorder.clear()
    cases = {
        "missing": {},
        "empty bearer": {"Authorization": "Bearer"},
        "basic scheme": {"Authorization": f"Basic {valid}"},
        "malformed": {"Authorization": "Bearer sk-1234"},
        "bad checksum": {"Authorization": f"Bearer {bad_checksum}"},
        "unknown": {"Authorization": f"Bearer {unknown}"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "admin key on /v1": {"Authorization": f"Bearer {gateway.admin_key}"},
    }
    for name, headers in cases.items():
        response = _post(gateway, headers)
        assert response.status_code == 401, name
        assert response.json() == EXPECTED_401, name
    assert standin.recorder.all() == []
    # The reasons are in the log, not in the answers.
    log = gateway.process.output()
    for reason in ("missing", "malformed", "unknown", "revoked", "expired"):
        assert f'"reason": "{reason}"' in log


@pytest.mark.parametrize(
    "carrier",
    ["x-litellm-api-key", "api-key", "x-api-key", "x-goog-api-key", "Ocp-Apim-Subscription-Key"],
)
def test_keys_only_count_in_authorization_bearer(gateway: RunningGateway, carrier: str) -> None:
    _assert_401(_post(gateway, {carrier: gateway.customer_key}))
    _assert_401(_post(gateway, {carrier: f"Bearer {gateway.customer_key}"}))
    _assert_401(_post(gateway, {}, params={"key": gateway.customer_key}))


@pytest.mark.parametrize(
    "carrier",
    ["x-litellm-api-key", "api-key", "x-api-key", "x-goog-api-key", "Ocp-Apim-Subscription-Key"],
)
def test_other_key_carriers_are_stripped_before_the_handoff(
    gateway: RunningGateway, standin: StandIn, stack, carrier: str
) -> None:
    # A valid request carrying a second credential elsewhere: LiteLLM would let x-litellm-api-key override
    # Authorization. Nothing of it may reach LiteLLM or the provider.
    standin.recorder.clear()
    response = _post(gateway, {"Authorization": f"Bearer {gateway.customer_key}", carrier: stack.master_key},
                     params={"key": stack.master_key})
    assert response.status_code == 200, response.text
    (upstream,) = standin.recorder.all()
    assert stack.master_key not in repr(upstream)
    assert gateway.customer_key not in repr(upstream)
    assert carrier.lower() not in upstream["headers"]
    assert upstream["query"] == ""


def test_customer_keys_are_not_admin_keys(gateway: RunningGateway) -> None:
    response = httpx.get(gateway.base_url + "/admin/keys", headers={"Authorization": f"Bearer {gateway.customer_key}"})
    _assert_401(response)


def test_the_master_key_authenticates_nothing(gateway: RunningGateway, stack) -> None:
    bearer = {"Authorization": f"Bearer {stack.master_key}"}
    for method, path in [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
                         ("GET", "/v1/models"), ("GET", "/admin/keys"), ("POST", "/admin/keys"),
                         ("GET", "/admin/keys/key_x"), ("POST", "/admin/keys/key_x/revoke")]:
        response = httpx.request(method, gateway.base_url + path, headers=bearer, json=CHAT, timeout=30)
        _assert_401(response)
