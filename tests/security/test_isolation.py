"""Secrets isolation after boot: nothing in the environment, no live Vault token, nothing in files we wrote.

threat-model: TM-T1, TM-T4
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import hvac
import hvac.exceptions
import pytest

from gateway.devstack.openbao import free_port
from tests.support import REPO, GatewayProcess, Stack, StandIn, any_listed, start_gateway


def _live_gateway_tokens(stack: Stack) -> list[str]:
    root = stack.root()
    accessors = root.list("auth/token/accessors")["data"]["keys"]
    live = []
    for accessor in accessors:
        try:
            info = root.auth.token.lookup_accessor(accessor)["data"]
        except hvac.exceptions.InvalidRequest:
            continue
        if "gateway-runtime" in (info.get("policies") or []):
            live.append(accessor)
    return live


@pytest.mark.slow
def test_no_secret_in_environment_after_litellm_started(stack: Stack, tmp_path: Path) -> None:
    env = stack.env(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}", free_port())
    result = subprocess.run([sys.executable, str(REPO / "tests/security/boot_probe.py")], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE-REPORT "))
    report = json.loads(line.removeprefix("PROBE-REPORT "))
    # LiteLLM really started with our bridge and models...
    assert report["custom_auth"] == "gateway.pipeline.bridge"
    assert report["router_models"] == ["chat-model", "echo-error-model", "embed-model", "failing-model",
                                       "other-chat-model", "slow-model", "text-model"]
    # LiteLLM's hooks for features the gateway does not use were switched off (TM-T13), the rest kept...
    # ...and the gateway's approval check was added, last, so it sees each call after every other hook (TM-E5).
    kept = ["ResponsesIDSecurity", "SkillsInjectionHook", "_PROXY_SensitiveDataRoutingHandler"]
    assert report["callbacks"]["callbacks"] == sorted([*kept, "ApprovalCheck"])
    assert report["last_callback"] == "ApprovalCheck"
    assert report["callbacks"]["_async_success_callback"] == sorted([*kept, "method"])  # + the router's own
    assert report["seed_request_destinations"] == "_no_tenant_destinations"
    # ...it tried to reach nothing beyond this host (LiteLLM fetches a cost map at import unless told not to)...
    assert report["non_local_lookups"] == []
    # ...and the boot heap (LiteLLM's ~700k objects) is frozen out of the collector's full passes.
    assert report["gc_frozen"] > 100_000
    # ...and no secret is left in the environment (names or values), nor the sentinel we used to start it.
    assert not report["worker_config_left"]
    assert any_listed(json.dumps(report["environ"]), stack.canaries) == []
    assert "LITELLM_MASTER_KEY" not in report["environ"]
    # Nothing we wrote holds a secret: the store holds digests only.
    for written in tmp_path.rglob("*"):
        if written.is_file() and written.name not in ("secret_id", "role_id"):
            data = written.read_bytes().decode("utf-8", "replace")
            assert any_listed(data, [stack.master_key, stack.pepper, stack.provider_key]) == [], written


def test_boot_token_is_revoked_approle(gateway, stack: Stack) -> None:
    # The session gateway booted with AppRole; every token issued under the runtime policy is gone.
    assert gateway.process.process.poll() is None
    assert _live_gateway_tokens(stack) == []


@pytest.mark.slow
def test_boot_token_is_revoked_token_auth(stack: Stack, tmp_path: Path) -> None:
    token = stack.root().auth.token.create(policies=["gateway-runtime"], no_default_policy=True, ttl="5m",
                                           num_uses=4)["auth"]["client_token"]
    stack.canaries.append(token)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    port = free_port()
    env = stack.env(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}", port, GATEWAY_VAULT_AUTH="token",
                    GATEWAY_VAULT_TOKEN_FILE=str(token_file))
    gateway = GatewayProcess(env, tmp_path / "gw.log", port).start()
    try:
        with pytest.raises(hvac.exceptions.Forbidden):
            hvac.Client(url=stack.vault_addr, token=token).auth.token.lookup_self()
        assert any_listed(gateway.output(), stack.canaries) == []
    finally:
        gateway.stop()


def _runtime_login(stack: Stack, folder: Path) -> hvac.Client:
    role_id_file, secret_id_file = stack.fresh_credentials(folder)
    client = hvac.Client(url=stack.vault_addr)
    client.auth.approle.login(role_id=role_id_file.read_text(), secret_id=secret_id_file.read_text())
    stack.canaries.append(client.token)
    return client


def test_runtime_token_reads_its_paths_and_nothing_else(stack: Stack, tmp_path: Path) -> None:
    kv = _runtime_login(stack, tmp_path / "a").secrets.kv.v2
    assert kv.read_secret_version(path="gateway/core", raise_on_deleted_version=True)["data"]["data"]["master_key"]
    assert kv.read_secret_version(path="gateway/providers", raise_on_deleted_version=True)["data"]["data"]["standin"]
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.create_or_update_secret(path="gateway/core", secret={"master_key": "sk-x"})
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.list_secrets(path="gateway")
    kv = _runtime_login(stack, tmp_path / "b").secrets.kv.v2
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.read_secret_version(path="other", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.read_secret_metadata(path="gateway/core")
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.delete_latest_version_of_secret(path="gateway/core")


def test_runtime_token_has_few_uses(stack: Stack, tmp_path: Path) -> None:
    from gateway.boot.bootstrap import role_definition

    uses = role_definition()["token_num_uses"]
    assert isinstance(uses, int) and 0 < uses <= 5
    kv = _runtime_login(stack, tmp_path).secrets.kv.v2
    for _ in range(uses):
        kv.read_secret_version(path="gateway/core", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.read_secret_version(path="gateway/core", raise_on_deleted_version=True)


def test_runtime_token_cannot_touch_vault_configuration(stack: Stack, tmp_path: Path) -> None:
    client = _runtime_login(stack, tmp_path)
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.read_policy("gateway-runtime")
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.approle.generate_secret_id(role_name="gateway")
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.read_secret_metadata(path="gateway/core")
    client.auth.token.revoke_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.read_secret_version(path="gateway/core", raise_on_deleted_version=True)


@pytest.mark.slow
def test_litellm_calls_no_provider_on_its_own(stack: Stack, standin: StandIn, workdir: Path) -> None:
    # LiteLLM's proxy schedules a model-info refresh at start (and every few minutes) that calls each deployment's
    # api_base with the provider key, outside any request and so outside the approval check (TM-E5). It is switched
    # off: a provider hears from the gateway only for an approved request.
    standin.recorder.clear()
    started = start_gateway(stack, workdir, "gw-no-own-calls", f"sqlite:///{workdir / 'no-own-calls.db'}")
    try:
        time.sleep(3)  # the refresh runs as soon as LiteLLM's scheduler starts; give it time to show up
        assert standin.recorder.all() == []
    finally:
        started.process.stop()
