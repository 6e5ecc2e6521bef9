"""The admin API and the revocation endpoints, on SQLite and on the machine's Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
from starlette.testclient import TestClient

from gateway.admin.api import build_admin_app
from gateway.audit.log import AuditLog
from gateway.credits.ledger import SqlLedger
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import AuthDenied, KeyService
from gateway.keys.store import SqlKeyStore
from tests.conftest import RunningGateway, _start_gateway
from tests.support import ManualClock, Stack, fresh_store

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(params=["sqlite", "postgres"])
def any_gateway(request: pytest.FixtureRequest) -> RunningGateway:
    return request.getfixturevalue("gateway" if request.param == "sqlite" else "pg_gateway")


def _admin(gw: RunningGateway) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {gw.admin_key}"}, timeout=30)


def _chat(gw: RunningGateway, key: str) -> httpx.Response:
    return httpx.post(gw.base_url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                      timeout=30)


def test_create_use_list_show_revoke(any_gateway: RunningGateway) -> None:
    admin = _admin(any_gateway)
    created = admin.post("/admin/keys", json={"name": "team-a", "models": ["chat-model"],
                                               "account_id": any_gateway.keys.rich_account})
    assert created.status_code == 201, created.text
    body = created.json()
    key, key_id = body["key"], body["id"]
    any_gateway.keys.stack.canaries.append(key)
    assert body["state"] == "active" and body["models"] == ["chat-model"]
    assert "digest" not in repr(body).lower()

    client = openai.OpenAI(base_url=any_gateway.base_url + "/v1", api_key=key, max_retries=0)
    assert client.chat.completions.create(**CHAT).choices[0].message.content

    listed = admin.get("/admin/keys").json()["data"]
    entry = next(item for item in listed if item["id"] == key_id)
    assert "key" not in entry and key not in repr(listed)
    shown = admin.get(f"/admin/keys/{key_id}").json()
    assert shown["id"] == key_id and "key" not in shown

    revoked = admin.post(f"/admin/keys/{key_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    # Once the revocation endpoint has answered, the very next request with that key is refused.
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(**CHAT)
    assert caught.value.body["code"] == "invalid_api_key"
    # Revoking twice is harmless and keeps the first time.
    again = admin.post(f"/admin/keys/{key_id}/revoke").json()
    assert again["revoked_at"] == revoked.json()["revoked_at"]


def test_expiry_is_enforced(any_gateway: RunningGateway) -> None:
    import time

    admin = _admin(any_gateway)
    expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    body = admin.post("/admin/keys", json={"name": "short", "models": ["chat-model"], "expires_at": expires,
                                           "account_id": any_gateway.keys.rich_account}).json()
    assert _chat(any_gateway, body["key"]).status_code == 200
    # The gateway runs in its own process on the system clock: this wait is real (the in-process test below moves
    # a clock instead).
    time.sleep(2.2)
    assert _chat(any_gateway, body["key"]).status_code == 401
    assert admin.get(f"/admin/keys/{body['id']}").json()["state"] == "expired"


def test_the_admin_api_tells_time_by_the_key_services_clock(store_url: str) -> None:
    # In process, on a clock the test moves: the admin API and the key service agree on when a key has expired.
    clock = ManualClock()
    engine = fresh_store(store_url)
    keys = KeyService(SqlKeyStore(engine), KeyHasher(b"k" * 32), clock=clock)
    ledger = SqlLedger(engine)
    admin_key, _ = keys.issue(KeyKind.ADMIN, name="ops")
    admin = TestClient(build_admin_app(keys, ledger, frozenset({"chat-model"}), audit=AuditLog(engine, b"a" * 32)),
                       headers={"Authorization": f"Bearer {admin_key}"})
    payload = {"name": "short", "models": ["chat-model"], "account_id": ledger.create_account("in-process").id,
               "expires_at": (clock.now() + timedelta(seconds=2)).isoformat()}
    created = admin.post("/admin/keys", json=payload)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["state"] == "active" and keys.verify(body["key"], KeyKind.CUSTOMER).key_id == body["id"]
    clock.advance(2)
    assert admin.get(f"/admin/keys/{body['id']}").json()["state"] == "expired"
    with pytest.raises(AuthDenied) as denied:
        keys.verify(body["key"], KeyKind.CUSTOMER)
    assert denied.value.reason == "expired"
    # The same expiry is now in the past by that clock (though not yet by the system's).
    assert admin.post("/admin/keys", json=payload).status_code == 400


def test_self_revocation_answers_the_same_whatever_the_key(any_gateway: RunningGateway) -> None:
    key, _ = any_gateway.keys.customer()
    assert _chat(any_gateway, key).status_code == 200
    answers = []
    for presented in (key, key, "lgw_ck_not-even-well-formed", "garbage"):
        response = httpx.post(any_gateway.base_url + "/v1/keys/revoke",
                              headers={"Authorization": f"Bearer {presented}"}, timeout=30)
        answers.append((response.status_code, response.json()))
    assert len(set(map(repr, answers))) == 1 and answers[0][0] == 200
    assert _chat(any_gateway, key).status_code == 401


def test_admin_input_is_validated(gateway: RunningGateway) -> None:
    admin = _admin(gateway)
    account = gateway.keys.rich_account
    cases = [
        {"name": "x", "models": ["not-exposed"], "account_id": account},
        {"name": "x", "models": [], "account_id": account},
        {"name": "", "models": ["chat-model"], "account_id": account},
        {"name": "x", "models": ["chat-model"], "account_id": account, "expires_at": "2001-01-01T00:00:00+00:00"},
        {"name": "x", "models": ["chat-model"], "account_id": account, "expires_at": "2099-01-01T00:00:00"},
        {"name": "x", "models": ["chat-model"], "account_id": account, "api_key": "smuggled"},
        {"name": "x", "models": ["chat-model"]},
        {"name": "x", "models": ["chat-model"], "account_id": "acct_missing"},
        {"name": "x", "models": ["chat-model"], "account_id": account, "spend_cap_micro_usd": -1},
        {"name": "x", "models": ["chat-model"], "account_id": account, "spend_cap_micro_usd": "5"},
        {"name": "x", "models": ["chat-model"], "account_id": account, "spend_cap_period": "weekly"},
    ]
    for payload in cases:
        response = admin.post("/admin/keys", json=payload)
        assert response.status_code == 400, (payload, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
        assert "smuggled" not in response.text
    assert admin.get("/admin/keys/key_does_not_exist").status_code == 404
    assert admin.post("/admin/keys/key_does_not_exist/revoke").status_code == 404
    assert admin.get("/admin/nothing-here").json()["error"]["code"] == "not_found"
    # Admin keys are not listed or revocable through the customer-key endpoints.
    admin_id = gateway.keys.service.store.list("ak")[0].id
    assert admin.get(f"/admin/keys/{admin_id}").status_code == 404


def test_rotating_a_honeytoken_is_refused_with_a_409(gateway: RunningGateway) -> None:
    admin = _admin(gateway)
    minted = admin.post("/admin/honeytokens", json={"name": "planted, then rotated by mistake"}).json()
    gateway.keys.stack.canaries.append(minted["key"])
    before = {item["id"] for item in admin.get("/admin/keys").json()["data"]}
    for body in (None, {"grace_seconds": 0}):
        refused = admin.post(f"/admin/keys/{minted['id']}/rotate", json=body)
        assert refused.status_code == 409, refused.text
        assert refused.json() == {"error": {"message": "A honeytoken cannot be rotated; revoke it and mint a new one.",
                                            "type": "invalid_request_error", "param": None,
                                            "code": "honeytoken_not_rotatable"}}
    # No successor was created and the canary itself is untouched (still a live honeytoken).
    assert {item["id"] for item in admin.get("/admin/keys").json()["data"]} == before
    shown = admin.get(f"/admin/keys/{minted['id']}").json()
    assert shown["honeytoken"] is True and shown["state"] == "active" and shown.get("rotated_to") is None
    # Still refused once revoked: a honeytoken never gains a working successor.
    assert admin.post(f"/admin/keys/{minted['id']}/revoke").status_code == 200
    assert admin.post(f"/admin/keys/{minted['id']}/rotate").json()["error"]["code"] == "honeytoken_not_rotatable"


def test_a_client_cannot_forge_log_lines(gateway: RunningGateway, stack: Stack, workdir: Path) -> None:
    """threat-model: TM-I4"""
    text_gateway = _start_gateway(stack, workdir, "gw-text-log", f"sqlite:///{workdir / 'text-log.db'}",
                                  GATEWAY_LOG_FORMAT="text")
    try:
        for running in (text_gateway, gateway):
            # Decoded by the server into the ASGI path, which the authentication denial logs as `path`.
            denied = httpx.get(running.base_url + "/admin/keys/x%0AFAKE-LF%0D%0AFAKE-CRLF%E2%80%A8FAKE-LS%1B[2K",
                               timeout=30)
            assert denied.status_code == 401
        text_log, json_log = text_gateway.process.output(), gateway.process.output()
    finally:
        text_gateway.process.stop()
    for log in (text_log, json_log):
        assert not [line for line in log.splitlines() if line.startswith("FAKE")]
    assert "path=/admin/keys/x\\nFAKE-LF\\r\\nFAKE-CRLF\\u2028FAKE-LS\\x1b[2K" in text_log
    # Each line that carries the hostile text is a record's own line, starting with its timestamp (LiteLLM's banner,
    # printed to stdout around the logs, is why not every line of the output is checked).
    carrying = [line for line in text_log.splitlines() if "FAKE" in line]
    assert carrying and all(line[:4].isdigit() for line in carrying)
    assert '"path": "/admin/keys/x\\nFAKE-LF\\r\\nFAKE-CRLF\\u2028FAKE-LS\\u001b[2K"' in json_log
