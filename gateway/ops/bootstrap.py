"""``gateway secrets``: bootstrap the Vault side, issue secret_ids and set up the jwt and cert logins with an operator
token read from a file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.boot import bedrock_credentials, operator
from gateway.boot.bootstrap import JwtBinding
from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.service_account import parse_service_account
from gateway.boot.settings import Settings, check_public_file, read_credential_file
from gateway.ops.context import die, open_settings
from gateway.policy import PolicyError, load_policy


def bootstrap(token_file: Path, credentials_dir: Path, provider_specs: list[str], rotate_core: bool,
              rotate_master_key: bool = False, *, postgres_password_file: Path | None = None,
              redis_password_file: Path | None = None) -> tuple[Path, Path]:
    """Apply policy, role and secrets; ``provider_specs`` are NAME=PATH; the datastore passwords come from 0600
    files. The role_id and secret_id files."""
    settings = open_settings()
    try:
        provider_keys: dict[str, Secret] = {}
        for spec in provider_specs:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise BootError("bootstrap", f"--provider-key-file {spec!r} must be NAME=PATH")
            value = read_credential_file(Path(path), f"--provider-key-file {name}")
            check_provider_credential(settings, name, value)
            provider_keys[name] = Secret(value)
        datastore_passwords: dict[str, Secret] = {}
        for field, file, option in (("postgres_password", postgres_password_file, "--postgres-password-file"),
                                    ("redis_password", redis_password_file, "--redis-password-file")):
            if file is not None:
                datastore_passwords[field] = Secret(read_credential_file(file, option))
        return operator.bootstrap_vault(
            settings, token_file, provider_keys=provider_keys, credentials_dir=credentials_dir,
            rotate_core=rotate_core, rotate_master_key=rotate_master_key, datastore_passwords=datastore_passwords,
        )
    except BootError as exc:
        die(exc)


def check_provider_credential(settings: Settings, name: str, value: str) -> None:
    """Refuse, before anything is written, a credential that cannot be its provider's: the policy's kind for ``name``
    decides (bedrock: an AWS credential; vertex_ai: a service account's JSON key); without one, a JSON object with
    ``aws_*`` keys (or no ``type``) is checked as an AWS credential, any other as a Google service account."""
    try:
        provider = load_policy(settings.policy_file).providers.get(name) if settings.policy_file.is_file() else None
    except PolicyError:
        provider = None  # the policy is checked at boot; the file's own shape is still checked below
    kind = provider.kind if provider is not None else None
    if kind is None and value.startswith("{"):
        # Without the policy's word, the JSON says what it means to be: AWS keys are named aws_*, and every Google
        # credential file names its "type" (a wrong type is then refused as no service account).
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        names = parsed if isinstance(parsed, dict) else {}
        kind = "bedrock" if any(str(name).startswith("aws_") for name in names) or "type" not in names else "vertex_ai"
    if kind == "vertex_ai":
        parse_service_account(value, f"--provider-key-file {name}")
    elif kind == "bedrock":
        try:
            bedrock_credentials.parse(value)
        except bedrock_credentials.CredentialShapeError as exc:
            raise BootError("bootstrap", f"--provider-key-file {name}: the file holds no AWS credential for kind "
                                         f"bedrock: it {exc}") from None


def issue_secret_id(token_file: Path, credentials_dir: Path, wrap_ttl: str | None = None) -> tuple[Path, Path]:
    """A fresh single-use secret_id (or a wrapping token for one): the role_id and secret_id files."""
    settings = open_settings()
    try:
        return operator.issue_secret_id(settings, token_file, credentials_dir, wrap_ttl)
    except BootError as exc:
        die(exc)


def jwt_setup(token_file: Path, public_key_files: list[Path], issuer: str, audience: str, subject: str,
              claim_specs: list[str]) -> str:
    """Vault's jwt method trusting the issuer's public keys, and the gateway's role bound to audience, subject and
    claims (NAME=VALUE). The role's name."""
    settings = open_settings()
    try:
        claims: dict[str, str] = {}
        for spec in claim_specs:
            name, sep, value = spec.partition("=")
            if not sep or not name or not value:
                raise BootError("jwt setup", f"--bound-claim {spec!r} must be NAME=VALUE")
            claims[name] = value
        for name, value in (("--issuer", issuer), ("--audience", audience), ("--subject", subject)):
            if not value.strip():
                raise BootError("jwt setup", f"{name} is empty")
        keys = tuple(read_public_key(path) for path in public_key_files)
        if not keys:
            raise BootError("jwt setup", "give at least one --public-key-file")
        return operator.jwt_setup(settings, token_file, JwtBinding(public_keys=keys, issuer=issuer,
                                                                   audience=audience, subject=subject, claims=claims))
    except BootError as exc:
        die(exc)


def read_public_key(path: Path) -> str:
    """An issuer's PEM public key: a trust anchor like the CA bundle, so held to the same file rules (regular file, no
    symlink, owned by this user or root, not writable by others)."""
    content = check_public_file(path, "--public-key-file", marker=b"-----BEGIN PUBLIC KEY-----",
                                what="PEM public key (BEGIN PUBLIC KEY)")
    try:
        return content.decode("ascii").strip()
    except UnicodeDecodeError:
        raise BootError("jwt setup", f"--public-key-file {path} is not ASCII PEM") from None


# A common name for the cert role: a host or service name, matched exactly (no glob: "*" would let any certificate the
# CA signs log in as the gateway).
_COMMON_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")


def cert_setup(token_file: Path, ca_file: Path, common_name: str) -> str:
    """Vault's cert method trusting the client CA in ``ca_file`` for certificates whose common name is exactly
    ``common_name``. The role's name."""
    settings = open_settings()
    try:
        if not _COMMON_NAME.fullmatch(common_name):
            raise BootError("cert setup", "--common-name must be a host or service name (letters, digits, '.', '-', "
                                          "'_'; no wildcard)")
        # The client CA is a trust anchor like the CA bundle: whoever may rewrite it chooses who logs in as the gateway.
        content = check_public_file(ca_file, "--ca-file")
        try:
            ca_pem = content.decode("ascii").strip()
        except UnicodeDecodeError:
            raise BootError("cert setup", f"--ca-file {ca_file} is not ASCII PEM") from None
        if not (ca_pem.startswith("-----BEGIN CERTIFICATE-----") and ca_pem.endswith("-----END CERTIFICATE-----")):
            # Vault takes PEM certificates only (and hvac would take anything else for a file name).
            raise BootError("cert setup", f"--ca-file {ca_file} must hold PEM certificates only, nothing around them")
        return operator.cert_setup(settings, token_file, ca_pem, common_name)
    except BootError as exc:
        die(exc)
