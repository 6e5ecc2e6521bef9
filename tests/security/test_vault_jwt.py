"""Platform identity login (GATEWAY_VAULT_AUTH=jwt) against a real OpenBao: its jwt auth method trusts a test key pair
and issuer, and the gateway's role binds an audience, a subject and a claim, as for a Kubernetes projected
service-account token or a CI OIDC token. A token that misses any binding, or has expired, stops the boot with one line
naming what was wrong, never the token."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import hvac
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.boot.bootstrap import JwtBinding, configure_jwt, write_private_file
from gateway.boot.errors import BootError
from gateway.boot.settings import Settings
from gateway.devstack.openbao import free_port
from tests.support import Stack, assert_runtime_token_only, boot_check, boot_refusal_line, run_gateway

ISSUER = "https://issuer.example.test"
AUDIENCE = "gateway-vault"
SUBJECT = "system:serviceaccount:llm:gateway"
CLAIMS = {"kubernetes.io/namespace": "llm"}
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
APPROLE_FILES = ("GATEWAY_VAULT_ROLE_ID_FILE", "GATEWAY_VAULT_SECRET_ID_FILE")


@pytest.fixture(scope="module")
def jwt_stack(stack: Stack) -> Stack:
    public = SIGNING_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    role = configure_jwt(stack.root(), Settings(vault_addr=stack.vault_addr),
                         JwtBinding(public_keys=(public,), issuer=ISSUER, audience=AUDIENCE, subject=SUBJECT,
                                    claims=CLAIMS))
    assert role == "gateway"
    return stack


def _token(key: ec.EllipticCurvePrivateKey = SIGNING_KEY, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, **CLAIMS, "iat": now, "nbf": now,
                                 "exp": now + 600}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="ES256")


def _projected(folder: Path, token: str, mode: int = 0o644) -> Path:
    """The token laid out as Kubernetes' projected volume does: the path is a symlink into a timestamped folder, the
    file is 0644 unless the pod sets defaultMode."""
    data = folder / "..2026_12_08_00_00_00.000000001"
    data.mkdir(parents=True)
    (data / "token").write_text(token)
    (data / "token").chmod(mode)
    (folder / "..data").symlink_to(data.name)
    (folder / "token").symlink_to("..data/token")
    return folder / "token"


def _boot_check(stack: Stack, folder: Path, token_file: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    return boot_check(stack, folder, drop=APPROLE_FILES, unseen=(token_file.read_text(),),
                      **{"GATEWAY_VAULT_AUTH": "jwt", "GATEWAY_VAULT_JWT_FILE": str(token_file),
                         "GATEWAY_VAULT_JWT_ROLE": "gateway", **overrides})


def test_a_projected_token_logs_in(jwt_stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S6"""
    result = _boot_check(jwt_stack, tmp_path, _projected(tmp_path / "sa", _token()))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all boot checks passed" in result.stdout


def _expired() -> dict[str, object]:
    # Beyond Vault's default expiration leeway (150 s).
    now = int(time.time())
    return {"iat": now - 1800, "nbf": now - 1800, "exp": now - 900}


@pytest.mark.parametrize(("claims", "reason"), [
    ({"aud": "another-audience"}, "the token's audience (aud) is not one the role accepts"),
    ({"sub": "system:serviceaccount:llm:someone-else"}, "the token's subject (sub) is not the role's bound subject"),
    ({"iss": "https://issuer.attacker.test"}, "the token's issuer (iss) is not the configured issuer"),
    (_expired(), "the token has expired (exp)"),
    ({"kubernetes.io/namespace": "other"}, "a claim does not match the role's bound claims"),
], ids=["audience", "subject", "issuer", "expired", "bound-claim"])
def test_a_token_that_misses_a_binding_is_refused(jwt_stack: Stack, tmp_path: Path, claims: dict[str, object],
                                                  reason: str) -> None:
    """threat-model: TM-S6"""
    line = boot_refusal_line(_boot_check(jwt_stack, tmp_path, _projected(tmp_path / "sa", _token(**claims))))
    assert line == f"gateway: boot failed at vault login: JWT login refused: {reason}", line


def test_a_token_signed_by_another_key_is_refused(jwt_stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S6"""
    forged = _token(ec.generate_private_key(ec.SECP256R1()))
    line = boot_refusal_line(_boot_check(jwt_stack, tmp_path, _projected(tmp_path / "sa", forged)))
    assert line.endswith("JWT login refused: the token's signature does not verify with the method's keys"), line


def test_an_unknown_role_is_named(jwt_stack: Stack, tmp_path: Path) -> None:
    line = boot_refusal_line(_boot_check(jwt_stack, tmp_path, _projected(tmp_path / "sa", _token()),
                                     GATEWAY_VAULT_JWT_ROLE="nobody"))
    assert "role 'nobody' does not exist at auth/jwt (GATEWAY_VAULT_JWT_ROLE)" in line, line


@pytest.mark.parametrize(("mode", "words"), [
    (0o666, "writable by group or others"),
    (0o620, "writable by group or others"),
])
def test_a_token_file_others_may_write_is_refused(jwt_stack: Stack, tmp_path: Path, mode: int, words: str) -> None:
    """threat-model: TM-S6"""
    line = boot_refusal_line(_boot_check(jwt_stack, tmp_path, _projected(tmp_path / "sa", _token(), mode=mode)))
    assert line.startswith("gateway: boot failed at settings: GATEWAY_VAULT_JWT_FILE") and words in line, line


def test_a_file_that_holds_no_jwt_is_refused(jwt_stack: Stack, tmp_path: Path) -> None:
    line = boot_refusal_line(_boot_check(jwt_stack, tmp_path, _projected(tmp_path / "sa", "not a token")))
    assert line.endswith("does not hold a JWT (compact JWS)"), line


def test_the_jwt_role_gives_the_runtime_policy_and_nothing_more(jwt_stack: Stack) -> None:
    """threat-model: TM-S6"""
    client = hvac.Client(url=jwt_stack.vault_addr)
    client.auth.jwt.jwt_login(role="gateway", jwt=_token(), path="jwt")
    assert_runtime_token_only(client)


def test_jwt_setup_from_the_cli_then_boot(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S6"""
    key = ec.generate_private_key(ec.SECP256R1())
    public_file = tmp_path / "issuer.pem"
    public_file.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    operator_token = tmp_path / "operator.token"
    write_private_file(operator_token, stack.root_token)
    mount = {"GATEWAY_VAULT_JWT_MOUNT": "jwt-ci", "GATEWAY_VAULT_JWT_ROLE": "gateway-ci"}
    env = {**stack.env(tmp_path / "unused", "sqlite://", free_port()), **mount}
    setup = run_gateway(["secrets", "jwt-setup", "--operator-token-file", str(operator_token),
                         "--public-key-file", str(public_file), "--issuer", "https://ci.example.test",
                         "--audience", "vault-ci", "--subject", "repo:example/gateway:ref:refs/heads/main",
                         "--bound-claim", "repository=example/gateway"], env)
    assert setup.returncode == 0, setup.stderr[-2000:]
    assert "GATEWAY_VAULT_JWT_ROLE=gateway-ci" in setup.stdout
    now = int(time.time())
    claims = {"iss": "https://ci.example.test", "aud": "vault-ci", "sub": "repo:example/gateway:ref:refs/heads/main",
              "repository": "example/gateway", "iat": now, "exp": now + 300}
    token_file = tmp_path / "ci" / "token"
    token_file.parent.mkdir()
    token_file.write_text(jwt.encode(claims, key, algorithm="ES256"))
    token_file.chmod(0o600)
    result = _boot_check(stack, tmp_path, token_file, **mount)
    assert result.returncode == 0, result.stderr[-2000:]
    other = {**claims, "repository": "example/fork"}
    token_file.write_text(jwt.encode(other, key, algorithm="ES256"))
    line = boot_refusal_line(_boot_check(stack, tmp_path, token_file, **mount))
    assert line.endswith("JWT login refused: a claim does not match the role's bound claims"), line


@pytest.mark.parametrize(("mode", "content", "words"), [
    (0o646, None, "is writable by others"),
    (0o644, "not a key", "holds no PEM public key (BEGIN PUBLIC KEY)"),
])
def test_jwt_setup_refuses_an_issuer_key_others_could_swap(stack: Stack, tmp_path: Path, mode: int,
                                                           content: str | None, words: str) -> None:
    """threat-model: TM-S6"""
    public_file = tmp_path / "issuer.pem"
    public_file.write_bytes(content.encode() if content is not None else SIGNING_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    public_file.chmod(mode)
    operator_token = tmp_path / "operator.token"
    write_private_file(operator_token, stack.root_token)
    env = {**stack.env(tmp_path / "unused", "sqlite://", free_port()), "GATEWAY_VAULT_JWT_MOUNT": "jwt-never"}
    setup = run_gateway(["secrets", "jwt-setup", "--operator-token-file", str(operator_token),
                         "--public-key-file", str(public_file), "--issuer", ISSUER, "--audience", AUDIENCE,
                         "--subject", SUBJECT], env)
    assert setup.returncode == 2
    lines = [line for line in setup.stderr.splitlines() if line.startswith("gateway:")]
    assert len(lines) == 1 and lines[0].startswith("gateway: boot failed at settings: --public-key-file: file ")
    assert words in lines[0], lines[0]
    assert "jwt-never/" not in stack.root().sys.list_auth_methods()["data"]


def test_jwt_setup_never_replaces_another_issuers_configuration(stack: Stack) -> None:
    # Vault replaces a jwt mount's config whole: writing the gateway's issuer over a CI's would break the CI's roles.
    def public(key: ec.EllipticCurvePrivateKey) -> str:
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    settings = Settings(vault_addr=stack.vault_addr, vault_jwt_mount="jwt-shared")
    ci = JwtBinding(public_keys=(public(ec.generate_private_key(ec.SECP256R1())),), issuer="https://ci.example.test",
                    audience="vault-ci", subject="repo:example/app:ref:refs/heads/main", claims={})
    configure_jwt(stack.root(), settings, ci)
    ours = JwtBinding(public_keys=(public(SIGNING_KEY),), issuer=ISSUER, audience=AUDIENCE, subject=SUBJECT,
                      claims=CLAIMS)
    with pytest.raises(BootError, match="auth/jwt-shared already trusts another issuer or other keys"):
        configure_jwt(stack.root(), settings, ours)
    assert stack.root().auth.jwt.read_config(path="jwt-shared")["data"]["bound_issuer"] == "https://ci.example.test"
    # The same binding again is fine: jwt-setup can be re-run.
    assert configure_jwt(stack.root(), settings, ci) == "gateway"
