"""Audit trail, honeytokens and the auditor's report, through the running gateway and the CLI.

threat-model: TM-R1, TM-R2
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from gateway.audit.log import AuditLog
from gateway.devstack.openbao import free_port
from gateway.store.engine import open_store
from tests.support import RunningGateway, Stack, StandIn, any_listed, run_gateway

HI = [{"role": "user", "content": "Hi"}]
EXPECTED_401 = {"error": {"message": "Invalid API key.", "type": "authentication_error", "param": None,
                          "code": "invalid_api_key"}}


def _admin(gateway: RunningGateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {gateway.admin_key}"},
                        timeout=30)


def test_admin_actions_and_denials_are_audited(gateway: RunningGateway, stack: Stack) -> None:
    admin = _admin(gateway)
    created = admin.post("/admin/keys", json={"name": "audited", "models": ["chat-model"],
                                              "account_id": gateway.keys.rich_account}).json()
    stack.canaries.append(created["key"])
    admin.post(f"/admin/keys/{created['id']}/revoke")
    denied = httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "chat-model", "messages": HI},
                        headers={"Authorization": f"Bearer {created['key']}"})
    assert denied.status_code == 401
    about_key = admin.get("/admin/audit", params={"subject": created["id"]}).json()["data"]
    assert [e["event"] for e in about_key] == ["key_revoked", "key_created"]
    assert all(e["actor"].startswith("key_") for e in about_key)
    denials = admin.get("/admin/audit", params={"event": "auth_denied", "actor": created["id"]}).json()["data"]
    assert denials[0]["reason"] == "revoked"
    assert denials[0]["request_id"] == denied.headers["x-request-id"]
    everything = admin.get("/admin/audit", params={"limit": 1000}).json()
    assert "boot" in {e["event"] for e in everything["data"]}
    assert any_listed(repr(everything), stack.canaries) == []
    # Paging walks back through the chain.
    page = admin.get("/admin/audit", params={"limit": 2}).json()
    older = admin.get("/admin/audit", params={"limit": 2, "before_seq": page["next_before_seq"]}).json()
    assert older["data"][0]["seq"] < page["data"][-1]["seq"]
    assert httpx.get(gateway.base_url + "/admin/audit",
                     headers={"Authorization": f"Bearer {gateway.customer_key}"}).status_code == 401


def test_honeytoken_use_raises_the_alarm_and_looks_like_any_401(gateway: RunningGateway, stack: Stack,
                                                                 standin: StandIn) -> None:
    admin = _admin(gateway)
    minted = admin.post("/admin/honeytokens", json={"name": "planted in the old CI config"})
    assert minted.status_code == 201
    canary, canary_id = minted.json()["key"], minted.json()["id"]
    stack.canaries.append(canary)
    assert canary.startswith("lgw_ck_")  # indistinguishable from a customer key
    standin.recorder.clear()
    used = httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "chat-model", "messages": HI},
                      headers={"Authorization": f"Bearer {canary}"})
    assert used.status_code == 401 and used.json() == EXPECTED_401
    assert standin.recorder.all() == []
    revoked = httpx.post(gateway.base_url + "/v1/keys/revoke", headers={"Authorization": f"Bearer {canary}"})
    assert revoked.json() == {"object": "key.revocation", "revoked": True}
    alarms = admin.get("/admin/audit", params={"event": "honeytoken_used", "actor": canary_id}).json()["data"]
    assert len(alarms) == 2
    assert '"level": "CRITICAL", "logger": "gateway.authn", "msg": "honeytoken key used"' in gateway.process.output()
    metrics = admin.get("/admin/metrics").text
    assert "gateway_honeytoken_uses_total 2.0" in metrics
    assert 'gateway_auth_denials_total{reason="honeytoken"}' in metrics
    assert canary_id not in metrics and canary not in metrics


def _env(stack: Stack, gateway: RunningGateway, folder: Path) -> dict[str, str]:
    return stack.env(folder, gateway.process.env["GATEWAY_DATABASE_URL"], free_port())


def test_audit_verify_cli_catches_tampering(stack: Stack, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'audit.db'}"
    audit = AuditLog(open_store(database_url), stack.audit_key.encode())
    for i in range(5):
        audit.record("key_created", actor="cli", subject=f"key_{i}")
    ok = run_gateway(["audit", "verify"], stack.env(tmp_path / "a", database_url, free_port()))
    assert ok.returncode == 0 and "intact (5 entries)" in ok.stdout
    with open_store(database_url).begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2"))
    broken = run_gateway(["audit", "verify"], stack.env(tmp_path / "b", database_url, free_port()))
    assert broken.returncode == 1 and "audit chain broken at seq 2" in broken.stderr


def test_auditors_report(stack: Stack, gateway: RunningGateway, tmp_path: Path) -> None:
    output = tmp_path / "report.md"
    result = run_gateway(["audit", "report", "--output", str(output)], _env(stack, gateway, tmp_path))
    assert result.returncode == 0, result.stderr
    report = output.read_text()
    for expected in ("| POST | `/v1/chat/completions` |", "| POST | `/admin/keys/{key_id}/revoke` | admin key |",
                     "Vault KV v2 `secret/gateway/core` field `master_key` | gateway-runtime",
                     "provider key `standin`", "| litellm | 1.106.12 | 1.106.12 | ok |",
                     "LiteLLM version check: passed", "Parity holds for every account.", "## Audit chain",
                     "Intact:", "| customer | active |", "| customer | honeytoken |"):
        assert expected in report, expected
    assert any_listed(report, stack.canaries) == []


@pytest.mark.slow
def test_a_gateway_refuses_to_start_without_its_audit_head(stack: Stack, tmp_path: Path) -> None:
    """With the head row deleted the chain can neither be extended nor checked: boot fails closed, and says why."""
    from tests.support import GatewayProcess

    url = f"sqlite:///{tmp_path / 'headless.db'}"
    engine = open_store(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_head"))
    engine.dispose()
    port = free_port()
    process = GatewayProcess(stack.env(tmp_path / "boot", url, port), tmp_path / "gateway.log", port)
    try:
        process.start(timeout=90)
    except RuntimeError:
        pass  # exited before opening its port: what this test wants
    else:
        process.stop()
        raise AssertionError("the gateway started without its audit head")
    assert "audit head row is missing" in process.output()
