"""The CLI on the store and on Vault: keys create/list/revoke, admin-key create, secrets bootstrap/issue-secret-id."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx

from gateway.devstack.openbao import free_port
from tests.conftest import RunningGateway
from tests.support import Stack, any_listed, run_gateway

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
