"""TLS to Vault with a private CA, against a real OpenBao serving https (``-dev-tls``) and, for mTLS, a listener that
requires a client certificate: boot trusts the configured CA and nothing else, with one line when it refuses."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.boot.bootstrap import bootstrap
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings
from gateway.devstack.openbao import (
    DevVault,
    free_port,
    start_dev_vault,
)
from tests.support import Stack, StandIn, any_listed, boot_check, boot_refusal_line, run_gateway, write_policy

NOT_TRUSTED = "vault login: Vault's TLS certificate is not trusted (GATEWAY_VAULT_CACERT)"


@dataclass
class TlsStack(Stack):
    """A Stack whose Vault speaks https under a CA of its own."""

    ca_file: Path = Path()

    def root(self) -> hvac.Client:
        return hvac.Client(url=self.vault_addr, token=self.root_token, verify=str(self.ca_file))


def _bootstrapped(vault_addr: str, root_token: str, ca_file: Path, workdir: Path, standin: StandIn) -> TlsStack:
    stack = TlsStack(vault_addr, root_token, workdir, write_policy(workdir / "policy.yaml", standin.base_url),
                     "provider-canary-" + secrets.token_urlsafe(24), ca_file=ca_file)
    bootstrap(stack.root(), Settings(vault_addr=vault_addr, vault_cacert=None),
              provider_keys={"standin": Secret(stack.provider_key)}, credentials_dir=workdir / "boot")
    stack.load_core()
    stack.canaries += [stack.provider_key, root_token]
    return stack


@pytest.fixture(scope="module")
def tls_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevVault]:
    folder = tmp_path_factory.mktemp("tls-vault")
    vault = start_dev_vault(folder / "openbao.log", tls_dir=folder / "tls")
    yield vault
    vault.stop()


@pytest.fixture(scope="module")
def tls_stack(tls_vault: DevVault, standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> TlsStack:
    assert tls_vault.ca_file is not None and tls_vault.addr.startswith("https://127.0.0.1:")
    return _bootstrapped(tls_vault.addr, tls_vault.root_token, tls_vault.ca_file, tmp_path_factory.mktemp("tls"),
                         standin)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)
    return path


def _issue(common_name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None, *,
           server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A throwaway CA (no issuer) or a leaf it signs, for a server on 127.0.0.1 or for a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1)))
    if issuer is None:
        builder = builder.issuer_name(_name(common_name)).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True).add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
        return builder.sign(key, hashes.SHA256()), key
    ca_cert, ca_key = issuer
    builder = builder.issuer_name(ca_cert.subject).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


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
    other_ca = _write_cert(_issue("not-the-vault-ca")[0], tmp_path / "other-ca.pem")
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
    server_ca = _issue("vault-server-ca")
    client_ca = _issue("vault-client-ca")
    server_cert, server_key = _issue("vault", server_ca, server=True)
    client_cert, client_key = _issue("gateway", client_ca)
    stranger_cert, stranger_key = _issue("stranger", _issue("stranger-ca"))
    ca_file = _write_cert(server_ca[0], folder / "server-ca.pem")
    port = free_port()
    config = folder / "listener.hcl"
    config.write_text(
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
        f'  tls_cert_file = "{_write_cert(server_cert, folder / "server.pem")}"\n'
        f'  tls_key_file = "{_write_key(server_key, folder / "server-key.pem")}"\n'
        f'  tls_client_ca_file = "{_write_cert(client_ca[0], folder / "client-ca.pem")}"\n'
        '  tls_require_and_verify_client_cert = true\n}\n'
    )
    vault = start_dev_vault(folder / "openbao.log", extra_config=config)
    try:
        yield MtlsVault(f"https://127.0.0.1:{port}", ca_file, _write_cert(client_cert, folder / "client.pem"),
                        _write_key(client_key, folder / "client-key.pem"),
                        _write_cert(stranger_cert, folder / "stranger.pem"),
                        _write_key(stranger_key, folder / "stranger-key.pem")), vault.root_token
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
