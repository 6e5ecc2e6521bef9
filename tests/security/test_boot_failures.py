"""Every boot failure exits non-zero before the port opens, with one clear line and no secret value."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import pytest

from gateway.devstack.openbao import free_port
from tests.support import Stack, any_listed, port_open, run_gateway


def _boot(stack: Stack, folder: Path, check: bool = False, **overrides: str):
    port = free_port()
    env = stack.env(folder, f"sqlite:///{folder / 'gw.db'}", port, **overrides)
    result = run_gateway(["serve", "--check"] if check else ["serve"], env)
    return result, port, env


def _assert_refused(result, port: int, stack: Stack, step: str, words: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("gateway: boot failed")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert f"at {step}:" in lines[0] and words in lines[0], lines[0]
    assert "Uvicorn running" not in result.stderr + result.stdout
    assert not port_open("127.0.0.1", port)
    assert any_listed(result.stdout + result.stderr, stack.canaries) == []


def test_check_mode_passes_and_opens_no_port(stack: Stack, tmp_path: Path) -> None:
    result, port, _ = _boot(stack, tmp_path, check=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all boot checks passed" in result.stdout
    assert not port_open("127.0.0.1", port)


def test_vault_down(stack: Stack, tmp_path: Path) -> None:
    result, port, _ = _boot(stack, tmp_path, GATEWAY_VAULT_ADDR=f"http://127.0.0.1:{free_port()}")
    _assert_refused(result, port, stack, "vault login", "unreachable")


def test_wrong_secret_id(stack: Stack, tmp_path: Path) -> None:
    stack.fresh_credentials(tmp_path)
    (tmp_path / "secret_id").write_text("00000000-0000-0000-0000-000000000000")
    result, port, _ = _boot(stack, tmp_path / "x", GATEWAY_VAULT_SECRET_ID_FILE=str(tmp_path / "secret_id"))
    _assert_refused(result, port, stack, "vault login", "AppRole login refused")


@pytest.mark.slow
def test_secret_id_is_single_use(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-T5"""
    first, _, env = _boot(stack, tmp_path, check=True)
    assert first.returncode == 0, first.stderr[-2000:]
    port = free_port()
    again = run_gateway(["serve"], {**env, "GATEWAY_PORT": str(port)})
    _assert_refused(again, port, stack, "vault login", "AppRole login refused")


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_workers_without_redis_are_refused(stack: Stack, tmp_path: Path, how: str) -> None:
    """threat-model: TM-T18 — in-memory rate-limit counters per worker would grant every limit N times: refused
    before the Vault login, so the secret_id is still good."""
    port = free_port()
    env = stack.env(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}", port)
    if how == "flag":
        result = run_gateway(["serve", "--workers", "2"], env)
    else:
        result = run_gateway(["serve"], {**env, "GATEWAY_WORKERS": "2"})
    _assert_refused(result, port, stack, "workers", "needs GATEWAY_REDIS_URL")
    assert run_gateway(["serve", "--check"], env).returncode == 0


def test_wrong_token(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s.not-a-real-token")
    token_file.chmod(0o600)
    result, port, _ = _boot(stack, tmp_path / "x", GATEWAY_VAULT_AUTH="token", GATEWAY_VAULT_TOKEN_FILE=str(token_file))
    _assert_refused(result, port, stack, "vault login", "token refused")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_credential_file_readable_by_others_is_refused(stack: Stack, tmp_path: Path, mode: int) -> None:
    stack.fresh_credentials(tmp_path)
    secret_id = tmp_path / "secret_id"
    secret_id.chmod(mode)
    result, port, _ = _boot(stack, tmp_path / "x", GATEWAY_VAULT_SECRET_ID_FILE=str(secret_id))
    _assert_refused(result, port, stack, "settings", "accessible by group or others")


BASE64URL_IN_ORDER = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SHARED_BODY = secrets.token_urlsafe(48)


def _write_core(stack: Stack, path: str, **fields: str) -> None:
    stack.root().secrets.kv.v2.create_or_update_secret(path=f"{path}/core", secret=fields)
    stack.root().secrets.kv.v2.create_or_update_secret(path=f"{path}/providers", secret={"standin": "p"})


def _grant(stack: Stack, path: str) -> None:
    # A runtime policy that may read this alternative path too (so the failure is about the value, not access).
    from gateway.boot.bootstrap import render_policy
    from gateway.boot.settings import Settings

    policy = render_policy(Settings(vault_addr=stack.vault_addr)) + render_policy(
        Settings(vault_addr=stack.vault_addr, vault_path=path))
    stack.root().sys.create_or_update_policy(name="gateway-runtime", policy=policy)


@pytest.mark.parametrize(
    ("name", "fields", "words"),
    [
        ("missing-core", None, "does not exist"),
        ("no-master", {"pepper": "p" * 64}, "no field 'master_key'"),
        ("empty-master", {"master_key": "", "pepper": "x"}, "empty"),
        ("public-master", {"master_key": "sk-1234", "pepper": "x"}, "publicly known"),
        ("short-master", {"master_key": "sk-" + "a1B2" * 5, "pepper": "x"}, "too short"),
        ("patterned-master", {"master_key": "sk-" + "ab" * 40, "pepper": "x"}, "does not look random"),
        ("alphabet-master", {"master_key": "sk-" + BASE64URL_IN_ORDER, "pepper": "x"}, "does not look random"),
        ("one-value-thrice", {"master_key": "sk-" + SHARED_BODY, "pepper": SHARED_BODY, "audit_key": SHARED_BODY},
         "same value"),
    ],
)
def test_bad_vault_secrets(stack: Stack, tmp_path: Path, name: str, fields: dict | None, words: str) -> None:
    path = f"gateway-{name}"
    _grant(stack, path)
    if fields is not None:
        _write_core(stack, path, **fields)
    result, port, _ = _boot(stack, tmp_path, GATEWAY_VAULT_PATH=path)
    step = "vault secrets" if words in ("publicly known", "too short", "does not look random", "same value") \
        else "vault read"
    _assert_refused(result, port, stack, step, words)


def test_path_outside_the_policy_is_denied(stack: Stack, tmp_path: Path) -> None:
    from gateway.boot.bootstrap import render_policy
    from gateway.boot.settings import Settings

    stack.root().sys.create_or_update_policy(name="gateway-runtime",
                                             policy=render_policy(Settings(vault_addr=stack.vault_addr)))
    _write_core(stack, "elsewhere", master_key="sk-" + "Zx9" * 30, pepper="y" * 64)
    result, port, _ = _boot(stack, tmp_path, GATEWAY_VAULT_PATH="elsewhere")
    _assert_refused(result, port, stack, "vault read", "permission denied")


@pytest.mark.parametrize("version", ["1.107.0", "1.82.7", "1.82.8", "1.106.11"])
def test_wrong_litellm_version(stack: Stack, tmp_path: Path, version: str) -> None:
    """threat-model: TM-T2"""
    # A distribution record earlier on sys.path makes importlib.metadata report this version for litellm.
    shadow = tmp_path / "shadow"
    info = shadow / f"litellm-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: litellm\nVersion: {version}\n")
    result, port, _ = _boot(stack, tmp_path, PYTHONPATH=str(shadow))
    words = "known-compromised" if version != "1.106.11" else "pinned to 1.106.12"
    _assert_refused(result, port, stack, "litellm version", words)


@pytest.mark.parametrize("variable", ["LITELLM_MASTER_KEY", "DATABASE_URL", "CONFIG_FILE_PATH",
                                      "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY"])
def test_litellm_environment_is_refused(stack: Stack, tmp_path: Path, variable: str) -> None:
    result, port, _ = _boot(stack, tmp_path, **{variable: "x"})
    _assert_refused(result, port, stack, "environment", variable)


@pytest.mark.slow
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                                      "all_proxy"])
def test_a_proxy_in_the_environment_stops_the_boot_before_the_vault_login(stack: Stack, tmp_path: Path,
                                                                          variable: str) -> None:
    """threat-model: TM-I6"""
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(8)
        proxy.settimeout(0.2)
        address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        result, port, env = _boot(stack, tmp_path, **{variable: address})
        _assert_refused(result, port, stack, "environment", f"{variable} is set")
        assert address not in result.stderr + result.stdout
        with pytest.raises(TimeoutError):
            proxy.accept()  # nothing went through the proxy
    # The secret_id was not spent: without the variable, the same credentials log in.
    env.pop(variable)
    again = run_gateway(["serve", "--check"], {**env, "GATEWAY_PORT": str(free_port())})
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.parametrize(("variable", "value"), [
    ("SSL_VERIFY", "False"), ("SSL_CERTIFICATE", "/tmp/client.pem"), ("SSL_SECURITY_LEVEL", "DEFAULT@SECLEVEL=0"),
    ("SSL_ECDH_CURVE", "prime192v1"), ("SSLKEYLOGFILE", "/tmp/keys.log"), ("AIOHTTP_TRUST_ENV", "True"),
    ("LITELLM_PROXY_API_BASE", "http://attacker.invalid"), ("LITELLM_PROXY_API_KEY", "x"),
    ("USE_LITELLM_PROXY", "True"), ("VAULT_CACERT", "/tmp/ca.pem"), ("VAULT_CAPATH", "/tmp"),
    ("VAULT_CLIENT_CERT", "/tmp/c.pem"), ("VAULT_CLIENT_KEY", "/tmp/k.pem"), ("LITELLM_MODE", "DEV"),
])
def test_tls_and_rerouting_variables_are_refused(stack: Stack, tmp_path: Path, variable: str, value: str) -> None:
    """threat-model: TM-I6"""
    result, port, _ = _boot(stack, tmp_path, **{variable: value})
    _assert_refused(result, port, stack, "environment", variable)
    assert value not in result.stderr.replace(variable, "")


def test_ca_bundle_variables_are_removed_not_honoured(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-I6"""
    bundle = tmp_path / "attacker-ca.pem"
    bundle.write_text("not a certificate\n")
    overrides = {name: str(bundle) for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
                                                "CURL_CA_BUNDLE")}
    result, _, _ = _boot(stack, tmp_path, check=True, **overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in overrides:
        assert f"{name} removed from the environment" in result.stderr


def test_credential_file_owned_by_another_user_is_refused(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S4"""
    stack.fresh_credentials(tmp_path)
    secret_id = tmp_path / "secret_id"
    os.chown(secret_id, 65534, 65534)
    result, port, _ = _boot(stack, tmp_path / "x", GATEWAY_VAULT_SECRET_ID_FILE=str(secret_id))
    _assert_refused(result, port, stack, "settings", "belongs to another user")


def test_credential_file_behind_a_symlink_is_refused(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S4"""
    stack.fresh_credentials(tmp_path)
    link = tmp_path / "secret_id_link"
    link.symlink_to(tmp_path / "secret_id")
    result, port, _ = _boot(stack, tmp_path / "x", GATEWAY_VAULT_SECRET_ID_FILE=str(link))
    _assert_refused(result, port, stack, "settings", "symlink")


@pytest.mark.parametrize(("variable", "value"), [
    ("GATEWAY_DATABASE_URL", "postgresql+psycopg://127.0.0.1:5432/test?password=hunter2-canary"),
    ("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0?password=hunter2-canary"),
    ("GATEWAY_REDIS_URL", "redis://:hunter2-canary@127.0.0.1:6379/0"),
])
def test_a_password_in_a_url_is_refused_and_never_printed(stack: Stack, tmp_path: Path, variable: str,
                                                          value: str) -> None:
    """threat-model: TM-I7"""
    result, port, _ = _boot(stack, tmp_path, **{variable: value})
    _assert_refused(result, port, stack, "settings", variable)
    assert "hunter2-canary" not in result.stderr + result.stdout


def test_redis_unreachable_names_host_port_and_database_only(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-I7"""
    redis_port = free_port()
    result, port, _ = _boot(stack, tmp_path, GATEWAY_REDIS_URL=f"redis://127.0.0.1:{redis_port}/3?socket_timeout=1")
    _assert_refused(result, port, stack, "redis", f"Redis at redis://127.0.0.1:{redis_port}/3 is unreachable")
    assert "socket_timeout" not in result.stderr


def test_bad_settings_and_policy(stack: Stack, tmp_path: Path) -> None:
    result, port, _ = _boot(stack, tmp_path, GATEWAY_VAULT_ADDR="http://vault.example.com:8200")
    _assert_refused(result, port, stack, "settings", "GATEWAY_VAULT_ADDR")
    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 1\nproviders: {}\nmodels:\n  - name: m\n    provider: nope\n    upstream_model: m\n")
    result, port, _ = _boot(stack, tmp_path / "p", GATEWAY_POLICY_FILE=str(broken))
    _assert_refused(result, port, stack, "policy", "unknown provider")


@pytest.fixture(autouse=True)
def _restore_runtime_policy(stack: Stack):
    yield
    from gateway.boot.bootstrap import render_policy
    from gateway.boot.settings import Settings

    stack.root().sys.create_or_update_policy(name="gateway-runtime",
                                             policy=render_policy(Settings(vault_addr=stack.vault_addr)))


