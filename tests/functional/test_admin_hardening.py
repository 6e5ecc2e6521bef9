"""The admin API under attack: bodies before authentication, honeytokens as admin keys, NUL bytes, rotation races.

threat-model: TM-D5, TM-R2, TM-T12
"""

from __future__ import annotations

import functools
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import RunningGateway, Stack, start_gateway, together

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}
EXPECTED_401 = {"error": {"message": "Invalid API key.", "type": "authentication_error", "param": None,
                          "code": "invalid_api_key"}}


@pytest.fixture(scope="module")
def own_gateway(stack: Stack, workdir: Path) -> Iterator[RunningGateway]:
    """A gateway of this module's own, so counting its metrics is not disturbed by other tests."""
    running = start_gateway(stack, workdir, "gw-admin-hardening", f"sqlite:///{workdir / 'admin-hardening.db'}")
    yield running
    running.process.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def any_gateway(request: pytest.FixtureRequest) -> RunningGateway:
    return request.getfixturevalue("gateway" if request.param == "sqlite" else "pg_gateway")


def _admin(gw: RunningGateway, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {key or gw.admin_key}"}, timeout=30)


def _raw(gw: RunningGateway, head: str, body: bytes = b"", wait: float = 5.0) -> tuple[int | None, float]:
    """Send ``head`` (and ``body``) on a raw socket and wait up to ``wait`` seconds for a status line. Returns the
    status (None if the server did not answer in time) and the seconds it took."""
    port = int(gw.base_url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head.encode("latin-1") + body)
        received = b""
        try:
            while b"\r\n" not in received:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            return None, time.monotonic() - started
    match = re.match(rb"HTTP/1\.1 (\d{3})", received)
    return (int(match.group(1)) if match else None), time.monotonic() - started


def _head(path: str, key: str | None, **headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def _metric(gw: RunningGateway, name: str) -> float:
    text = _admin(gw).get("/admin/metrics").text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_an_unauthenticated_body_is_never_read(own_gateway: RunningGateway) -> None:
    """threat-model: TM-D5"""
    # 200 MB declared, nothing sent: the answer comes at once, so the server did not wait for (or buffer) the body.
    status, seconds = _raw(own_gateway, _head("/admin/keys", None, Content_Length=str(200 * 1024 * 1024)))
    assert status == 401 and seconds < 3
    status, _ = _raw(own_gateway, _head("/admin/accounts", "lgw_ck_not-a-key", Content_Length=str(200 * 1024**2)))
    assert status == 401
    # Chunked, with a first few MB on the way: still answered before the client finished sending.
    chunk = b"x" * (1024 * 1024)
    few_mb = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3))
    status, seconds = _raw(own_gateway, _head("/admin/keys", None, Transfer_Encoding="chunked"), few_mb)
    assert status == 401 and seconds < 3


def test_an_admin_body_is_bounded(own_gateway: RunningGateway) -> None:
    """threat-model: TM-D5"""
    key = own_gateway.admin_key
    # Declared too large: refused before reading.
    status, seconds = _raw(own_gateway, _head("/admin/accounts", key, Content_Length=str(10 * 1024 * 1024)))
    assert status == 413 and seconds < 3
    # Chunked, no length declared: refused while reading, once past the bound.
    chunk = b" " * (96 * 1024)
    status, _ = _raw(own_gateway, _head("/admin/accounts", key, Transfer_Encoding="chunked"),
                     b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
    assert status == 413
    # A body within the bound is read and replayed to the admin app.
    padded = '{"name": "padded"' + " " * (60 * 1024) + "}"
    created = _admin(own_gateway).post("/admin/accounts", content=padded,
                                       headers={"Content-Type": "application/json"})
    assert created.status_code == 201 and created.json()["name"] == "padded"


def test_a_honeytoken_presented_as_an_admin_key_raises_the_alarm(own_gateway: RunningGateway, stack: Stack) -> None:
    """threat-model: TM-R2"""
    admin = _admin(own_gateway)
    minted = admin.post("/admin/honeytokens", json={"name": "planted next to the admin runbook"}).json()
    canary, canary_id = minted["key"], minted["id"]
    stack.canaries.append(canary)
    before = _metric(own_gateway, "gateway_honeytoken_uses_total")
    for method, path in (("GET", "/admin/keys"), ("POST", "/admin/accounts")):
        used = httpx.request(method, own_gateway.base_url + path, json={"name": "x"},
                             headers={"Authorization": f"Bearer {canary}"}, timeout=30)
        assert used.status_code == 401 and used.json() == EXPECTED_401
    assert _metric(own_gateway, "gateway_honeytoken_uses_total") == before + 2
    alarms = admin.get("/admin/audit", params={"event": "honeytoken_used", "actor": canary_id}).json()["data"]
    assert len(alarms) == 2 and {a["reason"] for a in alarms} == {"honeytoken"}
    output = own_gateway.process.output()
    assert '"level": "CRITICAL", "logger": "gateway.authn", "msg": "honeytoken key used"' in output
    assert canary not in output


def test_a_failed_admin_attempt_names_the_presented_key(own_gateway: RunningGateway) -> None:
    """threat-model: TM-R1"""
    key, key_id = own_gateway.keys.customer()
    denied = httpx.get(own_gateway.base_url + "/admin/keys", headers={"Authorization": f"Bearer {key}"})
    assert denied.status_code == 401
    entries = _admin(own_gateway).get("/admin/audit", params={"event": "auth_denied", "actor": key_id}).json()["data"]
    assert entries and entries[0]["request_id"] == denied.headers["x-request-id"]


def test_credits_added_records_the_amount(own_gateway: RunningGateway) -> None:
    """threat-model: TM-R1"""
    admin = _admin(own_gateway)
    account = admin.post("/admin/accounts", json={"name": "audited top-up"}).json()["id"]
    assert admin.post(f"/admin/accounts/{account}/credits",
                      json={"amount_micro_usd": 1234, "reason": "invoice 7"}).status_code == 200
    entry = admin.get("/admin/audit", params={"event": "credits_added", "subject": account}).json()["data"][0]
    assert entry["reason"] == "amount_micro_usd=1234" and entry["actor"].startswith("key_")


def test_nul_and_control_characters_are_refused_before_the_store(any_gateway: RunningGateway) -> None:
    admin = _admin(any_gateway)
    account = any_gateway.keys.rich_account
    for method, path in (("GET", "/admin/keys/key_%00"), ("POST", "/admin/keys/key_%00/revoke"),
                         ("POST", "/admin/keys/%00/rotate"), ("GET", "/admin/accounts/acct_%00"),
                         ("GET", "/admin/keys/key_0123456789abcdef01234567%00")):
        response = admin.request(method, path)
        assert response.status_code == 404, (path, response.text)
    credited = admin.post("/admin/accounts/acct_%00/credits", json={"amount_micro_usd": 5, "reason": "x"})
    assert credited.status_code == 404
    for name in ("event", "actor", "subject"):
        response = admin.get("/admin/audit", params={name: "key_\x00"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request", name
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/admin/keys", {"name": "a\x00b", "models": ["chat-model"], "account_id": account}),
        ("/admin/keys", {"name": "a", "models": ["chat-model\x00"], "account_id": account}),
        ("/admin/keys", {"name": "a", "models": ["chat-model"], "account_id": account + "\x00"}),
        ("/admin/accounts", {"name": "\x00"}),
        ("/admin/accounts", {"name": "line\nbreak"}),
        ("/admin/honeytokens", {"name": "nul\x00"}),
        (f"/admin/accounts/{account}/credits", {"amount_micro_usd": 5, "reason": "r\x00"}),
    ]
    for path, body in bodies:
        response = admin.post(path, json=body)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request", (path, body)


def _chat(gw: RunningGateway, key: str) -> int:
    return httpx.post(gw.base_url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"},
                      timeout=30).status_code


def test_concurrent_rotations_give_one_key(any_gateway: RunningGateway) -> None:
    """threat-model: TM-T12"""
    admin = _admin(any_gateway)
    _, key_id = any_gateway.keys.customer()
    answers = together([lambda: admin.post(f"/admin/keys/{key_id}/rotate", json={"grace_seconds": 30})
                         for _ in range(6)])
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409, 409, 409]
    winner = next(a.json() for a in answers if a.status_code == 201)
    any_gateway.keys.stack.canaries.append(winner["key"])
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"already_rotated"}
    assert _chat(any_gateway, winner["key"]) == 200
    # Retrying is refused too: a second successor would die with the first one's grace period.
    again = admin.post(f"/admin/keys/{key_id}/rotate")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_rotated"
    entries = admin.get("/admin/audit", params={"subject": key_id}).json()["data"]
    assert [e["reason"] for e in entries if e["event"] == "key_rotated"] == [f"successor={winner['id']}"]
    refusals = [e for e in entries if e["event"] == "key_rotation_refused"]
    assert len(refusals) == 6 and {e["reason"] for e in refusals} == {f"already_rotated_to={winner['id']}"}


def test_a_revocation_racing_a_rotation_leaves_no_working_key(any_gateway: RunningGateway) -> None:
    """threat-model: TM-T12"""
    admin = _admin(any_gateway)
    for _ in range(5):
        old, key_id = any_gateway.keys.customer()
        rotated, revoked = together([
            functools.partial(admin.post, f"/admin/keys/{key_id}/rotate", json={"grace_seconds": 30}),
            functools.partial(admin.post, f"/admin/keys/{key_id}/revoke")])
        assert revoked.status_code == 200 and rotated.status_code in (201, 404), rotated.text
        assert _chat(any_gateway, old) == 401
        if rotated.status_code == 201:
            new = rotated.json()
            any_gateway.keys.stack.canaries.append(new["key"])
            assert _chat(any_gateway, new["key"]) == 401, "the successor of a revoked key still works"
            assert admin.get(f"/admin/keys/{new['id']}").json()["state"] == "revoked"
    # After a rotation, revoking the old key revokes the successor too, and the audit names both.
    old, key_id = any_gateway.keys.customer()
    new = admin.post(f"/admin/keys/{key_id}/rotate", json={"grace_seconds": 30}).json()
    any_gateway.keys.stack.canaries.append(new["key"])
    revoked = admin.post(f"/admin/keys/{key_id}/revoke").json()
    assert revoked["revoked_successors"] == [new["id"]]
    assert _chat(any_gateway, new["key"]) == 401
    about_new = admin.get("/admin/audit", params={"subject": new["id"], "event": "key_revoked"}).json()["data"]
    assert [e["reason"] for e in about_new] == [f"predecessor={key_id}"]


def test_out_of_range_expiry_and_balance_are_a_400_on_both_stores(any_gateway: RunningGateway) -> None:
    """The store refuses what it cannot keep (a year past 8999, a balance past 10^15 micro-USD); the admin API says
    so with a 400 and writes nothing, instead of a 500."""
    with _admin(any_gateway) as admin:
        account = admin.post("/admin/accounts", json={"name": "cap"}).json()["id"]
        assert admin.post(f"/admin/accounts/{account}/credits",
                          json={"amount_micro_usd": 10**15, "reason": "max"}).status_code == 200
        over = admin.post(f"/admin/accounts/{account}/credits", json={"amount_micro_usd": 1, "reason": "one more"})
        assert over.status_code == 400, over.text
        assert over.json()["error"]["code"] == "invalid_request"
        assert admin.get(f"/admin/accounts/{account}").json()["balance_micro_usd"] == 10**15
        before = len(admin.get("/admin/keys").json()["data"])
        far = admin.post("/admin/keys", json={"name": "far", "models": ["chat-model"], "account_id": account,
                                              "expires_at": "9999-12-31T23:59:59-23:59"})
        assert far.status_code == 400, far.text
        assert "expires_at" in far.json()["error"]["message"]
        listed = admin.get("/admin/keys")
        assert listed.status_code == 200 and len(listed.json()["data"]) == before


def test_no_admin_change_applies_while_the_audit_log_cannot_be_written(own_gateway: RunningGateway,
                                                                       workdir: Path) -> None:
    """The audit blackout: with the head row deleted, every admin change is refused (503) and nothing changes."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{workdir / 'admin-hardening.db'}")
    with engine.begin() as conn:
        head = conn.execute(sa.text("SELECT * FROM audit_head")).mappings().one()
        conn.execute(sa.text("DELETE FROM audit_head"))
    try:
        with _admin(own_gateway) as admin:
            with engine.connect() as conn:
                accounts_before = conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar()
            refused = admin.post("/admin/accounts", json={"name": "during blackout"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "audit_unavailable"
            key = admin.post("/admin/keys", json={"name": "x", "models": ["chat-model"],
                                                  "account_id": own_gateway.keys.rich_account})
            assert key.status_code == 503 and "key" not in key.json()
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar() == accounts_before
            assert admin.get("/admin/keys").status_code == 200  # reading is not a change
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO audit_head (id, seq, mac) VALUES (:id, :seq, :mac)"), dict(head))
        engine.dispose()
    with _admin(own_gateway) as admin:
        assert admin.post("/admin/accounts", json={"name": "after"}).status_code == 201
