"""Credits end to end: reserve before the handoff, settle from the provider's usage, never overspend.

threat-model: TM-T9, TM-T10
"""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tests.support import HI, RunningGateway, StandIn, account_state

REMAINING = "x-credit-remaining-micro-usd"


@pytest.fixture(params=["sqlite", "postgres"])
def any_gateway(request: pytest.FixtureRequest) -> RunningGateway:
    return request.getfixturevalue("gateway" if request.param == "sqlite" else "pg_gateway")


def _client(gateway: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def test_non_streaming_settles_the_provider_usage(gateway: RunningGateway, standin: StandIn) -> None:
    account = gateway.keys.account(1_000_000)
    key, _ = gateway.keys.customer(account_id=account)
    raw = _client(gateway, key).chat.completions.with_raw_response.create(model="chat-model", messages=HI,
                                                                          max_tokens=5)
    # The stand-in reports 9 prompt and 7 completion tokens; the policy prices them at 1 and 2 micro-USD.
    assert raw.headers[REMAINING] == str(1_000_000 - 23)
    state = account_state(gateway, account)
    assert (state["balance_micro_usd"], state["reserved_micro_usd"]) == (1_000_000 - 23, 0)
    kinds = [entry["kind"] for entry in state["recent_ledger"]]
    assert kinds == ["release", "settle", "reserve", "topup"]
    settle = state["recent_ledger"][1]
    assert settle["amount_micro_usd"] == 23 and settle["request_id"].startswith("req_")


def test_streaming_settles_when_the_stream_ends(gateway: RunningGateway, standin: StandIn) -> None:
    account = gateway.keys.account(1_000_000)
    key, _ = gateway.keys.customer(account_id=account)
    standin.recorder.clear()
    with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": "chat-model", "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        # Before the cost is known the header reports what is left after the worst-case reservation.
        assert int(response.headers[REMAINING]) < 1_000_000 - 2000
        body = b"".join(response.iter_bytes())
    # The gateway asked the provider for usage and settled from it, but the client did not ask for the event.
    assert b'"usage"' not in body
    (upstream,) = standin.recorder.all()
    assert upstream["body"]["max_tokens"] == 1000  # the policy cap, filled in for the client
    assert upstream["body"]["stream_options"] == {"include_usage": True}
    state = account_state(gateway, account)
    # Stream usage from the stand-in: 9 prompt tokens, 5 completion tokens → 9 + 10.
    assert (state["balance_micro_usd"], state["reserved_micro_usd"]) == (1_000_000 - 19, 0)


def test_not_enough_credit_is_402_and_upstream_is_never_called(any_gateway: RunningGateway, standin: StandIn) -> None:
    account = any_gateway.keys.account(50)
    key, _ = any_gateway.keys.customer(account_id=account)
    standin.recorder.clear()
    with pytest.raises(openai.APIStatusError) as caught:
        _client(any_gateway, key).chat.completions.create(model="chat-model", messages=HI)
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "budget_exhausted" and caught.value.body["type"] == "insufficient_quota"
    # It says which limit refused, with the account's own figures, and how to need less.
    refusal = re.fullmatch(r"Not enough credit for this request: its worst case needs (\d+) micro-USD and the account "
                           r"has 50 micro-USD available\. A smaller max_tokens \(or max_completion_tokens\) lowers the "
                           r"reservation; without either, the model's whole output limit is reserved\.",
                           caught.value.body["message"])
    assert refusal is not None, caught.value.body["message"]
    assert int(refusal.group(1)) > 2000  # the policy's cap of 1000 output tokens at 2 micro-USD each
    assert standin.recorder.all() == []
    state = account_state(any_gateway, account)
    assert (state["balance_micro_usd"], state["reserved_micro_usd"]) == (50, 0)
    assert [e["kind"] for e in state["recent_ledger"]] == ["topup"]


def test_upstream_failure_releases_the_reservation(any_gateway: RunningGateway) -> None:
    account = any_gateway.keys.account(100_000)
    key, _ = any_gateway.keys.customer(account_id=account)
    with pytest.raises(openai.APIStatusError):
        _client(any_gateway, key).chat.completions.create(model="failing-model", messages=HI, max_tokens=5)
    state = account_state(any_gateway, account)
    assert (state["balance_micro_usd"], state["reserved_micro_usd"]) == (100_000, 0)
    assert [e["kind"] for e in state["recent_ledger"]] == ["release", "reserve", "topup"]


def test_key_spend_cap(gateway: RunningGateway) -> None:
    account = gateway.keys.account(1_000_000)
    key, _ = gateway.keys.customer(account_id=account, spend_cap_micro_usd=150, spend_cap_period="monthly")
    client = _client(gateway, key)
    statuses, refusals = [], []
    for _ in range(5):
        try:
            client.chat.completions.create(model="chat-model", messages=HI, max_tokens=5)
            statuses.append(200)
        except openai.APIStatusError as exc:
            assert exc.body["code"] == "budget_exhausted"
            statuses.append(exc.status_code)
            refusals.append(exc.body["message"])
    assert statuses[0] == 200 and statuses[-1] == 402
    spent = 1_000_000 - account_state(gateway, account)["balance_micro_usd"]
    assert spent == 23 * statuses.count(200) <= 150
    # The refusal names the key's cap and its period, with what is left of it (not the account's million).
    assert f"this key's monthly spend cap (this month, UTC) has {150 - spent} micro-USD available" in refusals[-1]


def test_oversized_max_tokens_and_images_are_refused(gateway: RunningGateway, standin: StandIn) -> None:
    client = _client(gateway, gateway.customer_key)
    standin.recorder.clear()
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat-model", messages=HI, max_tokens=1001)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]}])
    assert caught.value.body["code"] == "unsupported_content"
    assert standin.recorder.all() == []


def test_admin_accounts_api(gateway: RunningGateway) -> None:
    admin = httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {gateway.admin_key}"},
                         timeout=30)
    created = admin.post("/admin/accounts", json={"name": "acme"})
    assert created.status_code == 201
    account_id = created.json()["id"]
    topped = admin.post(f"/admin/accounts/{account_id}/credits", json={"amount_micro_usd": 5_000_000,
                                                                       "reason": "invoice 42"})
    assert topped.status_code == 200 and topped.json()["balance_micro_usd"] == 5_000_000
    shown = admin.get(f"/admin/accounts/{account_id}").json()
    assert shown["recent_ledger"][0]["reason"] == "invoice 42"
    for bad in ({"amount_micro_usd": 0, "reason": "x"}, {"amount_micro_usd": -5, "reason": "x"},
                {"amount_micro_usd": 1.5, "reason": "x"}, {"amount_micro_usd": True, "reason": "x"},
                {"amount_micro_usd": "5", "reason": "x"}, {"amount_micro_usd": 5}):
        assert admin.post(f"/admin/accounts/{account_id}/credits", json=bad).status_code == 400, bad
    assert admin.post("/admin/accounts/acct_missing/credits",
                      json={"amount_micro_usd": 5, "reason": "x"}).status_code == 404
    assert admin.get("/admin/accounts/acct_missing").status_code == 404
    customer = httpx.get(f"{gateway.base_url}/admin/accounts/{account_id}",
                         headers={"Authorization": f"Bearer {gateway.customer_key}"})
    assert customer.status_code == 401


