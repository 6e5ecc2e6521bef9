"""TLS certificate login (GATEWAY_VAULT_AUTH=cert) against a real OpenBao serving https: its cert auth method trusts a
client CA for one common name, and the gateway logs in with the mTLS client certificate, nothing delivered before the
start. A certificate from another CA, with another name, or expired stops the boot with one line naming the cause,
never Vault's text."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.boot.bootstrap import configure_cert, write_private_file
from gateway.boot.settings import Settings
from gateway.devstack.openbao import DevVault, free_port, start_dev_vault
from tests.support import (
    GatewayProcess,
    Keys,
    StandIn,
    TlsStack,
    any_listed,
    assert_runtime_token_only,
    boot_check,
    boot_refusal_line,
    bootstrapped_tls_stack,
    issue_certificate,
    run_gateway,
    write_certificate,
    write_private_key,
)

APPROLE_FILES = ("GATEWAY_VAULT_ROLE_ID_FILE", "GATEWAY_VAULT_SECRET_ID_FILE")
COMMON_NAME = "gateway.llm.internal"
REFUSED = "gateway: boot failed at vault login: certificate login refused: "
# What Vault says when it refuses a certificate; boot looks for it and never prints it.
VAULT_WORDS = ("invalid certificate", "no chain matching", "x509:", "failed to verify", "no client certificate found")

Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@dataclass
class CertVault:
    """The dev OpenBao and its two extra listeners, served under a CA of the test's own (``server_ca``)."""

    vault: DevVault
    client_ca: Pair
    server_ca: Path
    strict_addr: str
    blind_addr: str


@dataclass
class CertStack:
    stack: TlsStack
    vault: CertVault
    folder: Path

    def client(self, name: str, common_name: str = COMMON_NAME, *, issuer: Pair | None = None,
               expired: bool = False) -> tuple[Path, Path]:
        """A client certificate and its 0600 key, signed by the role's client CA unless ``issuer`` is given."""
        cert, key = issue_certificate(common_name, issuer or self.vault.client_ca, expired=expired)
        return (write_certificate(cert, self.folder / f"{name}.pem"),
                write_private_key(key, self.folder / f"{name}-key.pem"))


@pytest.fixture(scope="module")
def cert_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertVault]:
    """A dev OpenBao serving https (``-dev-tls``), whose listener asks for a client certificate without requiring one,
    so the cert method sees whichever certificate the client presents; plus a listener that requires one signed by
    the client CA (``strict``) and one that never asks for one (``blind``, ``tls_disable_client_certs``)."""
    folder = tmp_path_factory.mktemp("cert-vault")
    client_ca = issue_certificate("gateway-client-ca")
    server_ca = issue_certificate("listener-ca")
    server_cert, server_key = issue_certificate("vault", server_ca, server=True)
    tls = (f'  tls_cert_file = "{write_certificate(server_cert, folder / "server.pem")}"\n'
           f'  tls_key_file = "{write_private_key(server_key, folder / "server-key.pem")}"\n')
    strict, blind = free_port(), free_port()
    config = folder / "listeners.hcl"
    config.write_text(
        f'listener "tcp" {{\n  address = "127.0.0.1:{strict}"\n{tls}'
        f'  tls_client_ca_file = "{write_certificate(client_ca[0], folder / "client-ca.pem")}"\n'
        '  tls_require_and_verify_client_cert = true\n}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{blind}"\n{tls}  tls_disable_client_certs = true\n}}\n'
    )
    vault = start_dev_vault(folder / "openbao.log", tls_dir=folder / "tls", extra_config=config)
    try:
        yield CertVault(vault, client_ca, write_certificate(server_ca[0], folder / "listener-ca.pem"),
                        f"https://127.0.0.1:{strict}", f"https://127.0.0.1:{blind}")
    finally:
        vault.stop()


@pytest.fixture(scope="module")
def cert_stack(cert_vault: CertVault, standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> CertStack:
    vault = cert_vault.vault
    assert vault.ca_file is not None
    stack = bootstrapped_tls_stack(vault.addr, vault.root_token, vault.ca_file, tmp_path_factory.mktemp("cert"),
                                   standin)
    ca_pem = cert_vault.client_ca[0].public_bytes(serialization.Encoding.PEM).decode()
    role = configure_cert(stack.root(), Settings(vault_addr=stack.vault_addr), ca_pem, COMMON_NAME)
    assert role == "gateway"
    return CertStack(stack, cert_vault, tmp_path_factory.mktemp("clients"))


def _cert_env(stack: TlsStack, cert: Path, key: Path, **overrides: str) -> dict[str, str]:
    return {"GATEWAY_VAULT_AUTH": "cert", "GATEWAY_VAULT_CACERT": str(stack.ca_file),
            "GATEWAY_VAULT_CLIENT_CERT": str(cert), "GATEWAY_VAULT_CLIENT_KEY": str(key),
            "GATEWAY_VAULT_CERT_ROLE": "gateway", **overrides}


def _boot_check(stack: TlsStack, folder: Path, cert: Path, key: Path, *, drop: tuple[str, ...] = (),
                **overrides: str) -> subprocess.CompletedProcess[str]:
    return boot_check(stack, folder, drop=APPROLE_FILES + drop, unseen=(key.read_text(),),
                      **_cert_env(stack, cert, key, **overrides))


def _refusal(result: subprocess.CompletedProcess[str]) -> str:
    line = boot_refusal_line(result)
    assert not any(words in result.stderr for words in VAULT_WORDS), result.stderr[-2000:]
    return line


@pytest.mark.parametrize("role", ["gateway", None], ids=["named-role", "any-role"])
def test_a_client_certificate_logs_in(cert_stack: CertStack, tmp_path: Path, role: str | None) -> None:
    """threat-model: TM-S7"""
    cert, key = cert_stack.client("good")
    result = _boot_check(cert_stack.stack, tmp_path, cert, key, drop=() if role else ("GATEWAY_VAULT_CERT_ROLE",))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all boot checks passed" in result.stdout


def test_the_cert_role_gives_the_runtime_policy_and_nothing_more(cert_stack: CertStack) -> None:
    """threat-model: TM-S7"""
    cert, key = cert_stack.client("lookup")
    client = hvac.Client(url=cert_stack.stack.vault_addr, verify=str(cert_stack.stack.ca_file),
                         cert=(str(cert), str(key)))
    client.auth.cert.login(name="gateway")
    assert_runtime_token_only(client)


def test_a_certificate_from_another_ca_is_refused(cert_stack: CertStack, tmp_path: Path) -> None:
    """threat-model: TM-S7"""
    cert, key = cert_stack.client("stranger", issuer=issue_certificate("stranger-ca"))
    line = _refusal(_boot_check(cert_stack.stack, tmp_path, cert, key))
    assert line == REFUSED + ("the client certificate is not signed by the CA of role 'gateway' at auth/cert, or the "
                              "role does not exist (GATEWAY_VAULT_CERT_ROLE)"), line


def test_a_common_name_the_role_does_not_allow_is_refused(cert_stack: CertStack, tmp_path: Path) -> None:
    """threat-model: TM-S7"""
    cert, key = cert_stack.client("other-name", "intruder.llm.internal")
    line = _refusal(_boot_check(cert_stack.stack, tmp_path, cert, key))
    assert line == REFUSED + "the certificate's names (common name, DNS SANs) are not allowed", line


def test_an_expired_certificate_is_refused(cert_stack: CertStack, tmp_path: Path) -> None:
    """threat-model: TM-S7"""
    cert, key = cert_stack.client("expired", expired=True)
    line = _refusal(_boot_check(cert_stack.stack, tmp_path, cert, key))
    assert line == REFUSED + "the client certificate has expired or is not valid yet", line


def test_a_mount_without_the_cert_method_is_named(cert_stack: CertStack, tmp_path: Path) -> None:
    cert, key = cert_stack.client("mount")
    line = _refusal(_boot_check(cert_stack.stack, tmp_path, cert, key, GATEWAY_VAULT_CERT_MOUNT="nowhere"))
    assert line.endswith("no cert auth method at auth/nowhere? GATEWAY_VAULT_CERT_MOUNT)"), line


def test_a_client_key_others_may_read_is_refused(cert_stack: CertStack, tmp_path: Path) -> None:
    """threat-model: TM-S7"""
    cert, key = cert_stack.client("loose")
    key.chmod(0o640)
    line = _refusal(_boot_check(cert_stack.stack, tmp_path, cert, key))
    assert line.startswith("gateway: boot failed at settings: GATEWAY_VAULT_CLIENT_KEY"), line
    assert "accessible by group or others" in line, line


def test_a_listener_that_requires_client_certificates_lets_the_login_through(cert_stack: CertStack,
                                                                              tmp_path: Path) -> None:
    """threat-model: TM-S7"""
    cert, key = cert_stack.client("strict")
    result = _boot_check(cert_stack.stack, tmp_path, cert, key, GATEWAY_VAULT_ADDR=cert_stack.vault.strict_addr,
                         GATEWAY_VAULT_CACERT=str(cert_stack.vault.server_ca))
    assert result.returncode == 0, result.stderr[-2000:]
    # There a certificate from another CA does not get past the handshake.
    cert, key = cert_stack.client("strict-stranger", issuer=issue_certificate("stranger-ca"))
    line = _refusal(_boot_check(cert_stack.stack, tmp_path / "x", cert, key,
                                GATEWAY_VAULT_ADDR=cert_stack.vault.strict_addr,
                                GATEWAY_VAULT_CACERT=str(cert_stack.vault.server_ca)))
    assert line.endswith("vault login: the TLS handshake with Vault failed (GATEWAY_VAULT_CACERT, "
                         "GATEWAY_VAULT_CLIENT_CERT, GATEWAY_VAULT_CLIENT_KEY)"), line


def test_a_listener_that_never_asks_for_the_certificate_is_named(cert_stack: CertStack, tmp_path: Path) -> None:
    cert, key = cert_stack.client("blind")
    line = _refusal(_boot_check(cert_stack.stack, tmp_path, cert, key, GATEWAY_VAULT_ADDR=cert_stack.vault.blind_addr,
                                GATEWAY_VAULT_CACERT=str(cert_stack.vault.server_ca)))
    assert line == REFUSED + "Vault's listener did not ask for the client certificate", line


@pytest.mark.parametrize(("overrides", "drop", "words"), [
    ({"GATEWAY_VAULT_ADDR": "http://127.0.0.1:8200", "GATEWAY_VAULT_CACERT": ""}, (),
     "GATEWAY_VAULT_AUTH=cert needs an https GATEWAY_VAULT_ADDR"),
    ({}, ("GATEWAY_VAULT_CLIENT_CERT", "GATEWAY_VAULT_CLIENT_KEY"),
     "GATEWAY_VAULT_AUTH=cert needs the client certificate and key it logs in with"),
], ids=["plain-http", "no-certificate"])
def test_cert_without_https_or_a_certificate_is_a_settings_error(cert_stack: CertStack, tmp_path: Path,
                                                                 overrides: dict[str, str], drop: tuple[str, ...],
                                                                 words: str) -> None:
    """threat-model: TM-S7"""
    cert, key = cert_stack.client("settings")
    environment = {name: value for name, value in overrides.items() if value}
    dropped = drop + tuple(name for name, value in overrides.items() if not value)
    line = _refusal(_boot_check(cert_stack.stack, tmp_path, cert, key, drop=dropped, **environment))
    assert line.startswith("gateway: boot failed at settings: GATEWAY_VAULT_CLIENT_KEY"), line
    assert words in line, line


def test_a_gateway_logged_in_by_certificate_serves_a_request(cert_stack: CertStack, tmp_path: Path) -> None:
    """threat-model: TM-S7"""
    stack = cert_stack.stack
    cert, key = cert_stack.client("serving")
    database_url = f"sqlite:///{tmp_path / 'gw.db'}"
    port = free_port()
    environment = stack.env(tmp_path / "unused", database_url, port, **_cert_env(stack, cert, key))
    for name in APPROLE_FILES:
        environment.pop(name)
    process = GatewayProcess(environment, tmp_path / "gateway.log", port).start()
    try:
        keys = Keys(stack, database_url)
        customer_key, _ = keys.customer()
        client = openai.OpenAI(base_url=process.base_url + "/v1", api_key=customer_key, max_retries=0)
        answer = client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content
    finally:
        process.stop()
    assert any_listed(process.output(), [*stack.canaries, key.read_text()]) == []


def test_cert_setup_from_the_cli_then_boot(cert_stack: CertStack, tmp_path: Path) -> None:
    """threat-model: TM-S7"""
    stack = cert_stack.stack
    ca = issue_certificate("ci-client-ca")
    ca_file = write_certificate(ca[0], tmp_path / "ci-ca.pem")
    operator_token = tmp_path / "operator.token"
    write_private_file(operator_token, stack.root_token)
    mount = {"GATEWAY_VAULT_CERT_MOUNT": "cert-ci", "GATEWAY_VAULT_CERT_ROLE": "gateway-ci",
             "GATEWAY_VAULT_CACERT": str(stack.ca_file)}
    env = {**stack.env(tmp_path / "unused", "sqlite://", free_port()), **mount}
    setup = run_gateway(["secrets", "cert-setup", "--operator-token-file", str(operator_token), "--ca-file",
                         str(ca_file), "--common-name", "gateway.ci.internal"], env)
    assert setup.returncode == 0, setup.stderr[-2000:]
    assert "GATEWAY_VAULT_CERT_ROLE=gateway-ci" in setup.stdout
    cert, key = cert_stack.client("ci", "gateway.ci.internal", issuer=ca)
    result = _boot_check(stack, tmp_path, cert, key, **mount)
    assert result.returncode == 0, result.stderr[-2000:]
    # The role at the other mount trusts only its own CA: the module's client CA does not log in there.
    cert, key = cert_stack.client("not-ci", "gateway.ci.internal")
    line = _refusal(_boot_check(stack, tmp_path / "again", cert, key, **mount))
    assert line.startswith(REFUSED + "the client certificate is not signed by the CA of role 'gateway-ci'"), line


@pytest.mark.parametrize(("mode", "content", "common_name", "words"), [
    (0o646, None, "gateway.llm.internal", "is writable by others"),
    (0o644, "not a certificate", "gateway.llm.internal", "holds no PEM certificate"),
    (0o644, None, "*.llm.internal", "--common-name must be a host or service name"),
], ids=["world-writable", "not-pem", "wildcard"])
def test_cert_setup_refuses_a_ca_others_could_swap_or_a_wildcard(cert_stack: CertStack, tmp_path: Path, mode: int,
                                                                  content: str | None, common_name: str,
                                                                  words: str) -> None:
    """threat-model: TM-S7"""
    stack = cert_stack.stack
    ca_file = tmp_path / "ca.pem"
    if content is None:
        write_certificate(issue_certificate("some-ca")[0], ca_file)
    else:
        ca_file.write_text(content)
    ca_file.chmod(mode)
    operator_token = tmp_path / "operator.token"
    write_private_file(operator_token, stack.root_token)
    env = {**stack.env(tmp_path / "unused", "sqlite://", free_port()), "GATEWAY_VAULT_CERT_MOUNT": "cert-never",
           "GATEWAY_VAULT_CACERT": str(stack.ca_file)}
    setup = run_gateway(["secrets", "cert-setup", "--operator-token-file", str(operator_token), "--ca-file",
                         str(ca_file), "--common-name", common_name], env)
    assert setup.returncode == 2
    lines = [line for line in setup.stderr.splitlines() if line.startswith("gateway:")]
    assert len(lines) == 1 and words in lines[0], lines
    assert "cert-never/" not in stack.root().sys.list_auth_methods()["data"]
