"""TLS to Vault with a private CA, against a real OpenBao serving https (``-dev-tls``) and, for mTLS, a listener that
requires a client certificate: boot trusts the configured CA and nothing else, with one line when it refuses."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest

from gateway.boot.bootstrap import bootstrap
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings
from gateway.devstack.openbao import (
    DevVault,
    free_port,
    start_dev_vault,
)
from tests.support import (
    StandIn,
    TlsStack,
    any_listed,
    boot_check,
    boot_refusal_line,
    bootstrapped_tls_stack,
    issue_certificate,
    run_gateway,
    write_certificate,
    write_policy,
    write_private_key,
)

NOT_TRUSTED = "vault login: Vault's TLS certificate is not trusted (GATEWAY_VAULT_CACERT)"


@pytest.fixture(scope="module")
def tls_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevVault]:
    folder = tmp_path_factory.mktemp("tls-vault")
    vault = start_dev_vault(folder / "openbao.log", tls_dir=folder / "tls")
    yield vault
    vault.stop()


@pytest.fixture(scope="module")
def tls_stack(tls_vault: DevVault, standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> TlsStack:
    assert tls_vault.ca_file is not None and tls_vault.addr.startswith("https://127.0.0.1:")
    return bootstrapped_tls_stack(tls_vault.addr, tls_vault.root_token, tls_vault.ca_file, tmp_path_factory.mktemp("tls"),
                         standin)


def test_boot_trusts_the_configured_ca(tls_stack: TlsStack, tmp_path: Path) -> None:
    """threat-model: TM-I6"""
    result = boot_check(tls_stack, tmp_path, GATEWAY_VAULT_CACERT=str(tls_stack.ca_file))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all boot checks passed" in result.stdout


def test_without_the_ca_certifi_does_not_trust_a_private_ca(tls_stack: TlsStack, tmp_path: Path) -> None:
    """threat-model: TM-I6"""
    line = boot_refusal_line(boot_check(tls_stack, tmp_path))
    assert line.endswith(NOT_TRUSTED), line


def test_environment_ca_variables_do_not_add_trust(tls_stack: TlsStack, tmp_path: Path) -> None:
    """threat-model: TM-I6"""
    line = boot_refusal_line(boot_check(tls_stack, tmp_path, REQUESTS_CA_BUNDLE=str(tls_stack.ca_file),
                                     SSL_CERT_FILE=str(tls_stack.ca_file)))
    assert line.endswith(NOT_TRUSTED), line


def test_a_server_not_signed_by_the_configured_ca_is_refused(tls_stack: TlsStack, tmp_path: Path) -> None:
    """threat-model: TM-I6"""
    other_ca = write_certificate(issue_certificate("not-the-vault-ca")[0], tmp_path / "other-ca.pem")
    line = boot_refusal_line(boot_check(tls_stack, tmp_path / "x", GATEWAY_VAULT_CACERT=str(other_ca)))
    assert line.endswith(NOT_TRUSTED), line


def test_a_ca_with_plain_http_is_a_settings_error(tls_stack: TlsStack, tmp_path: Path) -> None:
    port = free_port()
    result = boot_check(tls_stack, tmp_path, GATEWAY_VAULT_ADDR=f"http://127.0.0.1:{port}",
                         GATEWAY_VAULT_CACERT=str(tls_stack.ca_file))
    line = boot_refusal_line(result)
    assert "at settings:" in line and "GATEWAY_VAULT_CACERT" in line, line


def test_a_world_writable_ca_bundle_is_refused(tls_stack: TlsStack, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls_stack.ca_file.read_bytes())
    ca.chmod(0o666)
    line = boot_refusal_line(boot_check(tls_stack, tmp_path / "x", GATEWAY_VAULT_CACERT=str(ca)))
    assert "at settings: GATEWAY_VAULT_CACERT" in line and "writable by others" in line, line


@dataclass
class MtlsVault:
    addr: str
    ca_file: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path
    other_client_key: Path


@pytest.fixture(scope="module")
def mtls_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MtlsVault, str]]:
    """A dev OpenBao with a second listener that requires a client certificate signed by the client CA."""
    folder = tmp_path_factory.mktemp("mtls")
    server_ca = issue_certificate("vault-server-ca")
    client_ca = issue_certificate("vault-client-ca")
    server_cert, server_key = issue_certificate("vault", server_ca, server=True)
    client_cert, client_key = issue_certificate("gateway", client_ca)
    stranger_cert, stranger_key = issue_certificate("stranger", issue_certificate("stranger-ca"))
    ca_file = write_certificate(server_ca[0], folder / "server-ca.pem")
    port = free_port()
    config = folder / "listener.hcl"
    config.write_text(
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
        f'  tls_cert_file = "{write_certificate(server_cert, folder / "server.pem")}"\n'
        f'  tls_key_file = "{write_private_key(server_key, folder / "server-key.pem")}"\n'
        f'  tls_client_ca_file = "{write_certificate(client_ca[0], folder / "client-ca.pem")}"\n'
        '  tls_require_and_verify_client_cert = true\n}\n'
    )
    vault = start_dev_vault(folder / "openbao.log", extra_config=config)
    try:
        yield MtlsVault(f"https://127.0.0.1:{port}", ca_file, write_certificate(client_cert, folder / "client.pem"),
                        write_private_key(client_key, folder / "client-key.pem"),
                        write_certificate(stranger_cert, folder / "stranger.pem"),
                        write_private_key(stranger_key, folder / "stranger-key.pem")), vault.root_token
    finally:
        vault.stop()


@pytest.fixture(scope="module")
def mtls_stack(mtls_vault: tuple[MtlsVault, str], standin: StandIn,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[TlsStack, MtlsVault]:
    vault, token = mtls_vault
    stack = TlsStack(vault.addr, token, tmp_path_factory.mktemp("mtls-stack"),
                     write_policy(tmp_path_factory.mktemp("mtls-policy") / "policy.yaml", standin.base_url),
                     "provider-canary-" + secrets.token_urlsafe(24), ca_file=vault.ca_file)
    client = hvac.Client(url=vault.addr, token=token, verify=str(vault.ca_file),
                         cert=(str(vault.client_cert), str(vault.client_key)))
    bootstrap(client, Settings(vault_addr=vault.addr), provider_keys={"standin": Secret(stack.provider_key)},
              credentials_dir=stack.workdir / "boot")
    stack.root = lambda: client  # type: ignore[method-assign]  # every Vault call of this stack needs the client cert
    stack.load_core()
    stack.canaries += [stack.provider_key, token]
    return stack, vault


def test_mtls_boot_presents_the_client_certificate(mtls_stack: tuple[TlsStack, MtlsVault], tmp_path: Path) -> None:
    """threat-model: TM-I6"""
    stack, vault = mtls_stack
    result = boot_check(stack, tmp_path, GATEWAY_VAULT_CACERT=str(vault.ca_file),
                         GATEWAY_VAULT_CLIENT_CERT=str(vault.client_cert),
                         GATEWAY_VAULT_CLIENT_KEY=str(vault.client_key))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all boot checks passed" in result.stdout


@pytest.mark.parametrize("which", ["none", "stranger"])
def test_mtls_without_an_accepted_client_certificate_is_refused(mtls_stack: tuple[TlsStack, MtlsVault],
                                                                tmp_path: Path, which: str) -> None:
    stack, vault = mtls_stack
    overrides = {"GATEWAY_VAULT_CACERT": str(vault.ca_file)}
    if which == "stranger":
        overrides |= {"GATEWAY_VAULT_CLIENT_CERT": str(vault.other_client_cert),
                      "GATEWAY_VAULT_CLIENT_KEY": str(vault.other_client_key)}
    line = boot_refusal_line(boot_check(stack, tmp_path, **overrides))
    assert line.endswith("vault login: the TLS handshake with Vault failed (GATEWAY_VAULT_CACERT, "
                         "GATEWAY_VAULT_CLIENT_CERT, GATEWAY_VAULT_CLIENT_KEY)"), line


def test_mtls_client_key_readable_by_others_is_refused(mtls_stack: tuple[TlsStack, MtlsVault], tmp_path: Path) -> None:
    stack, vault = mtls_stack
    key = tmp_path / "client-key.pem"
    key.write_bytes(vault.client_key.read_bytes())
    key.chmod(0o640)
    line = boot_refusal_line(boot_check(stack, tmp_path / "x", GATEWAY_VAULT_CACERT=str(vault.ca_file),
                                     GATEWAY_VAULT_CLIENT_CERT=str(vault.client_cert),
                                     GATEWAY_VAULT_CLIENT_KEY=str(key)))
    assert "at settings: GATEWAY_VAULT_CLIENT_KEY" in line and "accessible by group or others" in line, line


@pytest.mark.parametrize("with_ca", [True, False])
def test_operator_commands_use_the_configured_ca(tls_stack: TlsStack, tmp_path: Path, with_ca: bool) -> None:
    token_file = tmp_path / "operator-token"
    token_file.write_text(tls_stack.root_token)
    token_file.chmod(0o600)
    env = tls_stack.env(tmp_path / "boot", f"sqlite:///{tmp_path / 'gw.db'}", free_port())
    if with_ca:
        env["GATEWAY_VAULT_CACERT"] = str(tls_stack.ca_file)
    result = run_gateway(["secrets", "issue-secret-id", "--operator-token-file", str(token_file),
                          "--credentials-dir", str(tmp_path / "issued")], env)
    assert any_listed(result.stdout + result.stderr, [*tls_stack.canaries, tls_stack.root_token]) == []
    if with_ca:
        assert result.returncode == 0, result.stderr[-2000:]
        assert (tmp_path / "issued" / "secret_id").exists()
    else:
        line = boot_refusal_line(result)
        assert line.endswith("bootstrap: Vault's TLS certificate is not trusted (GATEWAY_VAULT_CACERT)"), line
