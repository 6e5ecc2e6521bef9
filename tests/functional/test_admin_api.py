"""The admin API and the revocation endpoints, on SQLite and on the machine's Postgres."""

from __future__ import annotations

import dataclasses
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
from tests.support import ManualClock, RunningGateway, Stack, fresh_store, start_gateway, together

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


@dataclasses.dataclass
class InProcess:
    """The admin API in this process, on a clock the test moves, with the key service and ledger behind it."""

    clock: ManualClock
    keys: KeyService
    ledger: SqlLedger
    admin: TestClient


@pytest.fixture
def in_process(store_url: str) -> InProcess:
    clock = ManualClock()
    engine = fresh_store(store_url)
    keys = KeyService(SqlKeyStore(engine), KeyHasher(b"k" * 32), clock=clock)
    ledger = SqlLedger(engine)
    admin_key, _ = keys.issue(KeyKind.ADMIN, name="ops")
    admin = TestClient(build_admin_app(keys, ledger, frozenset({"chat-model"}), audit=AuditLog(engine, b"a" * 32)),
                       headers={"Authorization": f"Bearer {admin_key}"})
    return InProcess(clock, keys, ledger, admin)


def test_the_admin_api_tells_time_by_the_key_services_clock(in_process: InProcess) -> None:
    # In process, on a clock the test moves: the admin API and the key service agree on when a key has expired.
    clock, keys, ledger, admin = in_process.clock, in_process.keys, in_process.ledger, in_process.admin
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


TEXT_RULE = "a string of 1 to 200 characters without control characters"
KEY_FIELDS = "name, models, account_id, expires_at, spend_cap_micro_usd, spend_cap_period, rpm_limit, tpm_limit"
EXPIRES_AT_RULE = "'expires_at' must be an ISO 8601 date-time with a UTC offset, e.g. 2027-01-31T00:00:00Z."
SPEND_CAP_RULE = "'spend_cap_micro_usd' must be null or an integer from 0 to 1000000000000000 (micro-USD)."


def test_admin_input_is_validated(gateway: RunningGateway) -> None:
    admin = _admin(gateway)
    account = gateway.keys.rich_account
    key = {"name": "x", "models": ["chat-model"], "account_id": account}
    # Each refusal names the field (also as `param`) and what it must be; the submitted value is never repeated.
    cases: list[tuple[dict[str, object], str, str | None]] = [
        ({**key, "models": ["not-exposed"]}, "Unknown model in 'models' (not exposed by the policy).", "models"),
        ({**key, "models": []}, f"'models' must be a list of 1 to 200 model names, each {TEXT_RULE}.", "models"),
        ({**key, "models": ["chat-model", ""]}, f"'models' must be a list of 1 to 200 model names, each {TEXT_RULE}.",
         "models[1]"),
        ({**key, "name": ""}, f"'name' must be {TEXT_RULE}.", "name"),
        ({**key, "expires_at": "2001-01-01T00:00:00+00:00"}, "'expires_at' is in the past.", "expires_at"),
        ({**key, "expires_at": "2099-01-01T00:00:00"}, EXPIRES_AT_RULE, "expires_at"),
        ({**key, "expires_at": "next tuesday smuggled"}, EXPIRES_AT_RULE, "expires_at"),
        ({**key, "api_key": "smuggled"}, f"Unknown field 'api_key'; the fields are {KEY_FIELDS}.", "api_key"),
        ({**key, "rpm": 5}, "Unknown field 'rpm'; did you mean 'rpm_limit'?", "rpm"),
        ({**key, "smuggled\nfield": 5}, f"Unknown field in the body; the fields are {KEY_FIELDS}.", None),
        ({"name": "x", "models": ["chat-model"]}, "'account_id' is required.", "account_id"),
        ({**key, "account_id": "acct_missing"},
         "'account_id' must be an account id: acct_ followed by 24 lowercase hexadecimal digits.", "account_id"),
        ({**key, "account_id": "acct_" + "0" * 24}, "Unknown 'account_id'.", "account_id"),
        ({**key, "spend_cap_micro_usd": -1}, SPEND_CAP_RULE, "spend_cap_micro_usd"),
        ({**key, "spend_cap_micro_usd": "5"}, SPEND_CAP_RULE, "spend_cap_micro_usd"),
        ({**key, "spend_cap_period": "weekly"}, "'spend_cap_period' must be one of none, daily, monthly.",
         "spend_cap_period"),
        ({**key, "tpm_limit": 0}, "'tpm_limit' must be null or an integer from 1 to 1000000000.", "tpm_limit"),
    ]
    for payload, message, param in cases:
        response = admin.post("/admin/keys", json=payload)
        assert response.status_code == 400, (payload, response.text)
        assert response.json()["error"] == {"message": message, "type": "invalid_request_error", "param": param,
                                            "code": "invalid_request"}, payload
        assert "smuggled" not in response.text
    account_cases: list[tuple[str, dict[str, object], str, str | None]] = [
        ("/admin/accounts", {}, "'name' is required.", "name"),
        ("/admin/accounts", {"nmae": "typo"}, "Unknown field 'nmae'; did you mean 'name'?", "nmae"),
        (f"/admin/accounts/{account}/credits", {"amount_micro_usd": 5}, "'reason' is required.", "reason"),
        (f"/admin/accounts/{account}/credits", {"amount": 5, "reason": "x"},
         "Unknown field 'amount'; did you mean 'amount_micro_usd'?", "amount"),
        (f"/admin/accounts/{account}/credits", {"amount_micro_usd": 1.5, "reason": "x"},
         "'amount_micro_usd' must be an integer from 1 to 1000000000000000 (micro-USD).", "amount_micro_usd"),
        ("/admin/keys/key_" + "0" * 24 + "/rotate", {"grace": 5}, "Unknown field 'grace'; did you mean 'grace_seconds'?",
         "grace"),
    ]
    for path, body, message, param in account_cases:
        response = admin.post(path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert (response.json()["error"]["message"], response.json()["error"]["param"]) == (message, param), path
    not_json = admin.post("/admin/accounts", content=b"{smuggled", headers={"content-type": "application/json"})
    assert not_json.json()["error"]["message"] == "The body is not valid JSON." and "smuggled" not in not_json.text
    assert admin.post("/admin/accounts", json=["x"]).json()["error"]["message"] == "The body must be a JSON object."
    limit = admin.get("/admin/audit", params={"limit": 1001}).json()["error"]
    assert (limit["message"], limit["param"]) == ("'limit' must be an integer from 1 to 1000.", "limit")
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
    text_gateway = start_gateway(stack, workdir, "gw-text-log", f"sqlite:///{workdir / 'text-log.db'}",
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


def test_accounts_are_listed_a_page_at_a_time(any_gateway: RunningGateway) -> None:
    admin = _admin(any_gateway)
    mine = {admin.post("/admin/accounts", json={"name": f"listed {i}"}).json()["id"] for i in range(3)}
    admin.post(f"/admin/accounts/{min(mine)}/credits", json={"amount_micro_usd": 42, "reason": "listed"})
    seen: list[dict[str, object]] = []
    after: str | None = None
    while True:
        page = admin.get("/admin/accounts", params={"limit": 2, **({"after_id": after} if after else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["object"] == "list" and len(body["data"]) <= 2
        seen += body["data"]
        after = body["next_after_id"]
        if after is None:
            break
        assert after == body["data"][-1]["id"]
    ids = [str(item["id"]) for item in seen]
    assert ids == sorted(set(ids)) and mine <= set(ids)  # id order, each account once
    # Each item is the account as GET /admin/accounts/{id} shows it, without the recent ledger.
    shown = admin.get(f"/admin/accounts/{min(mine)}").json()
    del shown["recent_ledger"]
    assert next(item for item in seen if item["id"] == min(mine)) == shown and shown["balance_micro_usd"] == 42
    for params, param in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"after_id": "acct_\x00"}, "after_id"),
                          ({"after_id": "key_" + "0" * 24}, "after_id")):
        refused = admin.get("/admin/accounts", params=params)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param, params
    customer = httpx.get(any_gateway.base_url + "/admin/accounts",
                         headers={"Authorization": f"Bearer {any_gateway.customer_key}"}, timeout=30)
    assert customer.status_code == 401 and customer.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(any_gateway.base_url + "/admin/accounts", timeout=30).status_code == 401


def test_a_retried_rotation_is_refused_and_the_first_successor_keeps_working(in_process: InProcess) -> None:
    """A client that retries a rotation (its first answer lost, say) gets 409 already_rotated, not a second
    successor; the successor of the first call outlives the old key's grace period.

    threat-model: TM-T12"""
    keys, admin = in_process.keys, in_process.admin
    account = in_process.ledger.create_account("rotation retried").id
    old, record = keys.issue(KeyKind.CUSTOMER, name="rotated", models=["chat-model"], account_id=account)
    old_id = record.id
    first = admin.post(f"/admin/keys/{old_id}/rotate", json={"grace_seconds": 30})
    assert first.status_code == 201, first.text
    successor = first.json()
    refusal = {"error": {"message": "This key was already rotated; rotate its successor instead.",
                         "type": "invalid_request_error", "param": None, "code": "already_rotated"}}
    retried = admin.post(f"/admin/keys/{old_id}/rotate", json={"grace_seconds": 30})
    assert (retried.status_code, retried.json()) == (409, refusal)
    # Retried concurrently, too: every retry is refused.
    retries = together([lambda: admin.post(f"/admin/keys/{old_id}/rotate", json={"grace_seconds": 30})
                        for _ in range(4)])
    assert [(r.status_code, r.json()) for r in retries] == [(409, refusal)] * 4
    assert admin.get(f"/admin/keys/{old_id}").json()["rotated_to"] == successor["id"]
    # Within the grace period both keys work; after it, only the first call's successor does.
    assert keys.verify(old, KeyKind.CUSTOMER).key_id == old_id
    in_process.clock.advance(31)
    with pytest.raises(AuthDenied) as denied:
        keys.verify(old, KeyKind.CUSTOMER)
    assert denied.value.reason == "expired"
    assert keys.verify(successor["key"], KeyKind.CUSTOMER).key_id == successor["id"]
    assert admin.get(f"/admin/keys/{successor['id']}").json()["state"] == "active"
