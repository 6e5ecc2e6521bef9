"""The CLI on the store and on Vault: keys create/list/revoke, admin-key create, secrets bootstrap/issue-secret-id."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import httpx
import sqlalchemy as sa

from gateway.audit.log import GENESIS, AuditLog
from gateway.devstack.openbao import free_port
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store
from gateway.store.schema import audit_events
from tests.support import RunningGateway, Stack, any_listed, run_gateway

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}


def _env(stack: Stack, gateway: RunningGateway, folder: Path) -> dict[str, str]:
    # The session gateway's store, and a fresh single-use secret_id for the pepper read.
    database = gateway.process.env["GATEWAY_DATABASE_URL"]
    return stack.env(folder, database, free_port())


def test_keys_create_list_revoke_against_a_running_gateway(stack: Stack, gateway: RunningGateway, tmp_path: Path) -> None:
    created = run_gateway(["keys", "create", "--name", "cli", "--model", "chat-model", "--account-id",
                           gateway.keys.rich_account], _env(stack, gateway, tmp_path))
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    key = record["key"]
    stack.canaries.append(key)
    assert "not shown again" in created.stderr
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT, headers=bearer).status_code == 200

    listed = run_gateway(["keys", "list"], _env(stack, gateway, tmp_path / "l"))
    assert listed.returncode == 0
    entries = json.loads(listed.stdout)
    assert any(e["id"] == record["id"] for e in entries)
    assert key not in listed.stdout and any_listed(listed.stdout, stack.canaries) == []

    revoked = run_gateway(["keys", "revoke", record["id"]], _env(stack, gateway, tmp_path / "r"))
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["state"] == "revoked"
    # The gateway checks the store on every request: a revocation from the host takes effect at once.
    assert httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT, headers=bearer).status_code == 401

    missing = run_gateway(["keys", "revoke", "key_nope"], _env(stack, gateway, tmp_path / "m"))
    assert missing.returncode != 0 and "no key with id key_nope" in missing.stderr


def test_keys_create_refuses_models_outside_the_policy(stack: Stack, gateway: RunningGateway, tmp_path: Path) -> None:
    result = run_gateway(["keys", "create", "--name", "x", "--model", "gpt-unknown", "--account-id",
                          gateway.keys.rich_account], _env(stack, gateway, tmp_path))
    assert result.returncode != 0 and "not exposed" in result.stderr


def test_admin_key_create(stack: Stack, gateway: RunningGateway, tmp_path: Path) -> None:
    result = run_gateway(["admin-key", "create", "--name", "ops"], _env(stack, gateway, tmp_path))
    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)["key"]
    stack.canaries.append(key)
    assert key.startswith("lgw_ak_")
    admin = httpx.get(gateway.base_url + "/admin/keys", headers={"Authorization": f"Bearer {key}"})
    assert admin.status_code == 200
    assert httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT,
                      headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_secrets_bootstrap_cli(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "operator-token"
    token_file.write_text(stack.root_token)
    token_file.chmod(0o600)
    provider_file = tmp_path / "provider"
    provider_file.write_text(stack.provider_key)
    provider_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_VAULT_ADDR"] = stack.vault_addr
    credentials = tmp_path / "creds"
    result = run_gateway(["secrets", "bootstrap", "--operator-token-file", str(token_file), "--credentials-dir",
                          str(credentials), "--provider-key-file", f"standin={provider_file}"], env)
    assert result.returncode == 0, result.stderr
    for name in ("role_id", "secret_id"):
        mode = stat.S_IMODE((credentials / name).stat().st_mode)
        assert mode == 0o600
    stack.canaries.append((credentials / "secret_id").read_text())
    # Re-running keeps the existing master key and pepper (no silent rotation).
    core = stack.root().secrets.kv.v2.read_secret_version(path="gateway/core", raise_on_deleted_version=True)
    assert core["data"]["data"]["master_key"] == stack.master_key
    assert any_listed(result.stdout + result.stderr, stack.canaries) == []
    issued = run_gateway(["secrets", "issue-secret-id", "--operator-token-file", str(token_file),
                          "--credentials-dir", str(tmp_path / "next")], env)
    assert issued.returncode == 0 and (tmp_path / "next/secret_id").exists()
    stack.canaries.append((tmp_path / "next/secret_id").read_text())
    token_file.chmod(0o644)
    refused = run_gateway(["secrets", "issue-secret-id", "--operator-token-file", str(token_file),
                           "--credentials-dir", str(tmp_path / "again")], env)
    assert refused.returncode != 0 and "accessible by group or others" in refused.stderr


def _store_env(stack: Stack, folder: Path, database_url: str, **overrides: str) -> dict[str, str]:
    return stack.env(folder, database_url, free_port(), **overrides)


def _one_line_no_traceback(stderr: str) -> bool:
    return "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_audit_verify_names_each_break_with_exit_1_never_a_traceback(stack: Stack, tmp_path: Path) -> None:
    """A garbled MAC, a deleted head row and a rewound head are breaks (exit 1), named on stderr.

    threat-model: TM-R1"""
    database_url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = open_store(database_url)
    audit = AuditLog(engine, stack.audit_key.encode())
    for i in range(4):
        audit.record("key_created", actor="cli", subject=f"key_{i}")
    seq, mac = audit.head()
    runs = iter(range(100))

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return run_gateway(["audit", "verify", *args], _store_env(stack, tmp_path / f"v{next(runs)}", database_url))

    ok = verify("--expect-head", f"{seq}:{mac}")
    assert ok.returncode == 0 and "audit chain intact (4 entries), holds head 4" in ok.stdout, ok.stderr
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET mac = :m WHERE seq = 2"), {"m": "é" * 64})
    garbled = verify()
    assert garbled.returncode == 1 and "audit chain broken at seq 2: MAC does not match" in garbled.stderr
    assert "Traceback" not in garbled.stderr
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET mac = :m WHERE seq = 2"), {"m": _mac_of(audit, engine, 2)})
        conn.execute(sa.text("DELETE FROM audit_head"))
    headless = verify()
    assert headless.returncode == 1 and "head row missing" in headless.stderr
    assert "Traceback" not in headless.stderr
    # Put an older head back after dropping the newest entries: consistent on its own, rewound against the log.
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE seq > 2"))
        conn.execute(sa.text("INSERT INTO audit_head (id, seq, mac) VALUES (1, 2, :m)"), {"m": _mac_of(audit, engine, 2)})
    assert verify().returncode == 0
    rewound = verify("--expect-head", f"audit_head={seq}:{mac}")
    assert rewound.returncode == 1 and f"audit chain broken at seq {seq}: rewound" in rewound.stderr
    malformed = verify("--expect-head", "4:not-a-mac")
    assert malformed.returncode == 2 and _one_line_no_traceback(malformed.stderr)


def _mac_of(audit: AuditLog, engine: sa.Engine, seq: int) -> str:
    """The MAC entry ``seq`` should carry, recomputed from the chain (the test's way to repair a garbled one)."""
    previous = GENESIS
    with engine.connect() as conn:
        for item in conn.execute(sa.select(audit_events).where(audit_events.c.seq <= seq).order_by(audit_events.c.seq)):
            previous = audit._mac(previous, dict(item._mapping))
    return previous


def test_a_failing_command_is_one_line_and_exit_3(stack: Stack, tmp_path: Path) -> None:
    """A date out of range breaks ``keys list`` and an overflowing sum ``ledger check``: exit 3, one line, no
    traceback unless GATEWAY_LOG_LEVEL=DEBUG; never exit 1 (a finding) nor a traceback."""
    database_url = f"sqlite:///{tmp_path / 'crash.db'}"
    engine = open_store(database_url)
    key_id = SqlKeyStore(engine).insert(kind="ck", name="k", digest="d" * 64, models=["m"], expires_at=None,
                                        account_id="acct_1").id
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_keys SET expires_at = '10000-01-01 00:00:00.000000' WHERE id = :id"),
                     {"id": key_id})
        for request_id in ("a", "b"):
            conn.execute(sa.text("INSERT INTO ledger_entries (account_id, request_id, kind, amount_micro_usd, "
                                 "created_at) VALUES ('acct_1', :r, 'topup', 9223372036854775807, "
                                 "'2026-01-01 00:00:00.000000')"), {"r": request_id})
    for command in (["keys", "list"], ["ledger", "check"]):
        crashed = run_gateway(command, _store_env(stack, tmp_path / command[0], database_url))
        assert crashed.returncode == 3, (command, crashed.stderr)
        assert _one_line_no_traceback(crashed.stderr), crashed.stderr
        assert "failed unexpectedly" in crashed.stderr and "nothing was verified" in crashed.stderr
    debug = run_gateway(["keys", "list"], _store_env(stack, tmp_path / "debug", database_url,
                                                     GATEWAY_LOG_LEVEL="DEBUG"))
    assert debug.returncode == 3 and "Traceback" in debug.stderr


def test_ledger_sweep_refuses_a_negative_ttl_and_is_audited(stack: Stack, gateway: RunningGateway,
                                                             tmp_path: Path) -> None:
    """threat-model: TM-R1"""
    import pwd

    from gateway.audit.log import AuditLog
    from gateway.store.engine import open_store

    refused = run_gateway(["ledger", "sweep", "--ttl-seconds", "-60"], _env(stack, gateway, tmp_path / "n"))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().count("\n") == 0 and "--ttl-seconds cannot be negative" in refused.stderr
    swept = run_gateway(["ledger", "sweep", "--ttl-seconds", "900"], _env(stack, gateway, tmp_path / "s"))
    assert swept.returncode == 0, swept.stderr
    expired = json.loads(swept.stdout)["expired"]
    audit = AuditLog(open_store(gateway.process.env["GATEWAY_DATABASE_URL"]), stack.audit_key.encode())
    actor = "cli:" + pwd.getpwuid(os.geteuid()).pw_name
    entry = audit.list(event="ledger_swept", limit=1)[0]
    assert entry["actor"] == actor and entry["reason"] == f"ttl_seconds=900 expired={expired}"
    credited = run_gateway(["accounts", "credit", gateway.keys.rich_account, "--amount-micro-usd", "77",
                            "--reason", "cli top-up"], _env(stack, gateway, tmp_path / "c"))
    assert credited.returncode == 0, credited.stderr
    entry = audit.list(event="credits_added", subject=gateway.keys.rich_account, limit=1)[0]
    assert entry["actor"] == actor and entry["reason"] == "amount_micro_usd=77"
    _, key_id = gateway.keys.customer()
    assert run_gateway(["keys", "revoke", key_id], _env(stack, gateway, tmp_path / "r")).returncode == 0
    assert audit.list(event="key_revoked", subject=key_id)[0]["actor"] == actor


def test_accounts_list_pages_like_the_admin_api(stack: Stack, gateway: RunningGateway, tmp_path: Path) -> None:
    runs = iter(range(100))

    def accounts_list(*args: str) -> subprocess.CompletedProcess[str]:
        return run_gateway(["accounts", "list", *args], _env(stack, gateway, tmp_path / f"l{next(runs)}"))

    first = accounts_list("--limit", "1")
    assert first.returncode == 0, first.stderr
    page = json.loads(first.stdout)
    assert page["object"] == "list" and len(page["data"]) == 1 and page["next_after_id"] == page["data"][0]["id"]
    assert set(page["data"][0]) == {"id", "name", "balance_micro_usd", "reserved_micro_usd", "available_micro_usd"}
    rest = accounts_list("--after-id", page["next_after_id"], "--limit", "1000")
    assert rest.returncode == 0, rest.stderr
    following = json.loads(rest.stdout)
    ids = [item["id"] for item in page["data"] + following["data"]]
    assert ids == sorted(set(ids)) and gateway.keys.rich_account in ids
    admin = httpx.get(gateway.base_url + "/admin/accounts", params={"limit": 1000},
                      headers={"Authorization": f"Bearer {gateway.admin_key}"}).json()
    assert [item["id"] for item in admin["data"]] == ids
    for args, line in ((["--limit", "0"], "--limit must be from 1 to 1000"),
                       (["--after-id", "acct_\x01"], "--after-id must be an account id")):
        refused = accounts_list(*args)
        assert refused.returncode == 2 and line in refused.stderr and _one_line_no_traceback(refused.stderr), args
