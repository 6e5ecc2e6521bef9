"""The master-key runbook: write a new master key in Vault, restart; virtual keys and the audit chain survive.

threat-model: TM-T4
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from gateway.devstack.openbao import dev_vault, free_port
from tests.support import GatewayProcess, Keys, Stack, run_gateway, write_policy

pytestmark = pytest.mark.slow


def test_rotate_master_key_then_restart(tmp_path: Path, standin, stack: Stack) -> None:
    with dev_vault(tmp_path / "bao.log") as vault:
        token_file = tmp_path / "operator-token"
        token_file.write_text(vault.root_token)
        token_file.chmod(0o600)
        provider_file = tmp_path / "provider"
        provider_file.write_text("provider-key-for-rotation")
        provider_file.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
        env["GATEWAY_VAULT_ADDR"] = vault.addr
        boot = run_gateway(["secrets", "bootstrap", "--operator-token-file", str(token_file), "--credentials-dir",
                            str(tmp_path / "c0"), "--provider-key-file", f"standin={provider_file}"], env)
        assert boot.returncode == 0, boot.stderr
        local = Stack(vault.addr, vault.root_token, tmp_path, write_policy(tmp_path / "policy.yaml", standin.base_url),
                      "provider-key-for-rotation")
        local.load_core()
        before = {"master_key": local.master_key, "pepper": local.pepper, "audit_key": local.audit_key}
        database_url = f"sqlite:///{tmp_path / 'gw.db'}"
        keys = Keys(local, database_url)
        key, _ = keys.customer()

        def serve(name: str) -> GatewayProcess:
            port = free_port()
            return GatewayProcess(local.env(tmp_path / name, database_url, port), tmp_path / f"{name}.log",
                                  port).start()

        first = serve("first")
        chat = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
        assert httpx.post(first.base_url + "/v1/chat/completions", json=chat,
                          headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code == 200
        rotated = run_gateway(["secrets", "bootstrap", "--operator-token-file", str(token_file), "--credentials-dir",
                               str(tmp_path / "c1"), "--rotate-master-key"], env)
        assert rotated.returncode == 0, rotated.stderr
        after = local.root().secrets.kv.v2.read_secret_version(path="gateway/core",
                                                               raise_on_deleted_version=True)["data"]["data"]
        assert after["master_key"] != before["master_key"]
        assert (after["pepper"], after["audit_key"]) == (before["pepper"], before["audit_key"])
        stack.canaries += [before["master_key"], after["master_key"], before["pepper"], before["audit_key"]]
        second = serve("second")  # the replacement replica, booted with the new master key
        first.stop()
        try:
            assert httpx.post(second.base_url + "/v1/chat/completions", json=chat,
                              headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code == 200
            verify = run_gateway(["audit", "verify"], local.env(tmp_path / "v", database_url, free_port()))
            assert verify.returncode == 0, verify.stderr
        finally:
            second.stop()
