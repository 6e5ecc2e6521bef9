"""HAZMAT: applying the Vault side (policy, AppRole role, secrets) with an operator token.

Used by ``gateway secrets bootstrap``, ``gateway secrets issue-secret-id`` (plain or response-wrapped secret_ids),
``gateway secrets jwt-setup`` (Vault's jwt auth method and the gateway's role there), ``gateway secrets cert-setup``
(Vault's TLS certificate auth method and the gateway's role there) and ``gateway dev``. Generated secrets
come from Python's :mod:`secrets` module and go straight to Vault; credential files are created with mode 0600.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import hvac
import hvac.exceptions
import requests

from gateway.boot.errors import BootError
from gateway.boot.litellm_mount import check_transport_environment
from gateway.boot.secret import Secret
from gateway.boot.settings import APPROLE_ROLE, Settings
from gateway.boot.vault import DATASTORE_FIELDS, check_distinct, check_strong, new_client, transport_error

POLICY_NAME = "gateway-runtime"
ROLE_NAME = APPROLE_ROLE


def secrets_dir() -> Path:
    """The repository's secrets/ folder (policy and role as code)."""
    candidates = [Path.cwd() / "secrets", Path(__file__).resolve().parents[2] / "secrets"]
    for candidate in candidates:
        if (candidate / "gateway-runtime.hcl").is_file():
            return candidate
    raise BootError("bootstrap", "cannot find secrets/gateway-runtime.hcl (run from the repository root)")


def render_policy(settings: Settings, folder: Path | None = None) -> str:
    text = ((folder or secrets_dir()) / "gateway-runtime.hcl").read_text(encoding="utf-8")
    return text.replace("secret/data/gateway/", f"{settings.vault_mount}/data/{settings.vault_path}/")


def render_issuer_policy(settings: Settings, folder: Path | None = None, *, wrapped_only: bool = False) -> str:
    """``secrets/secret-id-issuer.hcl`` (or ``secret-id-issuer-wrapped.hcl``, which lets Vault hand out secret_ids
    only response-wrapped) for the configured AppRole mount: what a secret_id issuer may do."""
    name = "secret-id-issuer-wrapped.hcl" if wrapped_only else "secret-id-issuer.hcl"
    text = ((folder or secrets_dir()) / name).read_text(encoding="utf-8")
    return text.replace('path "auth/approle/', f'path "auth/{settings.vault_approle_mount}/')


def role_definition(folder: Path | None = None, name: str = "approle-gateway.json") -> dict[str, object]:
    raw = json.loads(((folder or secrets_dir()) / name).read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def write_private_file(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` with mode 0600 from the first byte (no window where it is readable).

    The content goes to a new file created exclusively next to ``path`` (``O_CREAT | O_EXCL | O_NOFOLLOW``), which
    then replaces ``path`` in one rename. A symlink, or anything but a regular file we own, already at ``path`` is
    refused and left as it is: writing through it would hand the credential to whoever planted it. Our own regular
    file is replaced (``issue-secret-id`` delivers a fresh secret_id before every start)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise BootError("bootstrap", f"{path} is a symlink; remove it, credential files are written in place only")
        if not stat.S_ISREG(info.st_mode):
            raise BootError("bootstrap", f"{path} exists and is not a regular file")
        if info.st_uid != os.geteuid():
            raise BootError("bootstrap", f"{path} exists and belongs to another user (uid {info.st_uid}); remove it")
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            data = content.encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def operator_client(settings: Settings, token: Secret) -> hvac.Client:
    # The operator token and the secret_ids it issues must not travel through a proxy either.
    check_transport_environment()
    client = new_client(settings, token.reveal())
    try:
        ok = client.is_authenticated()
    except requests.exceptions.RequestException as exc:
        raise transport_error("bootstrap", settings, exc) from None
    if not ok:
        raise BootError("bootstrap", "the operator token was refused")
    return client


def _generated_master_key() -> str:
    # LiteLLM requires the "sk-" prefix; 48 random bytes as base64url (64 chars).
    return "sk-" + secrets.token_urlsafe(48)


@contextlib.contextmanager
def _vault_step(step: str, settings: Settings) -> Iterator[None]:
    """One line for whatever Vault does not do in an operator step: unreachable, or refused (the exception's type,
    never its text)."""
    try:
        yield
    except requests.exceptions.RequestException:
        raise BootError(step, f"Vault at {settings.vault_addr} is unreachable") from None
    except hvac.exceptions.VaultError as exc:
        raise BootError(step, f"Vault refused a {step} step ({type(exc).__name__})") from None


def _enable_auth_method(client: hvac.Client, settings: Settings, method: str, mount: str) -> None:
    """Enable the auth ``method`` at ``mount`` if nothing is mounted there yet, and write the runtime policy its role
    will carry."""
    auth_methods = client.sys.list_auth_methods()  # type: ignore[no-untyped-call]  # untyped in hvac's stubs
    if f"{mount}/" not in auth_methods.get("data", auth_methods):
        client.sys.enable_auth_method(method, path=mount)
    client.sys.create_or_update_policy(name=POLICY_NAME, policy=render_policy(settings))


def bootstrap(
    client: hvac.Client,
    settings: Settings,
    *,
    provider_keys: Mapping[str, Secret],
    credentials_dir: Path,
    rotate_core: bool = False,
    rotate_master_key: bool = False,
    datastore_passwords: Mapping[str, Secret] | None = None,
) -> tuple[Path, Path]:
    """Apply policy and role, write core, provider and datastore secrets, write role_id/secret_id files. Returns their
    paths. ``datastore_passwords`` maps ``postgres_password`` and ``redis_password`` to the values to store."""
    datastore_passwords = dict(datastore_passwords or {})
    _check_datastore_passwords(settings, datastore_passwords)
    with _vault_step("bootstrap", settings):
        mounts = client.sys.list_mounted_secrets_engines()  # type: ignore[no-untyped-call]  # untyped in hvac's stubs
        if f"{settings.vault_mount}/" not in mounts.get("data", mounts):
            client.sys.enable_secrets_engine("kv", path=settings.vault_mount, options={"version": "2"})
        _enable_auth_method(client, settings, "approle", settings.vault_approle_mount)
        client.auth.approle.create_or_update_approle(
            role_name=ROLE_NAME, mount_point=settings.vault_approle_mount, **role_definition()
        )
        core_path = f"{settings.vault_path}/core"
        existing = None
        if not rotate_core:
            try:
                existing = client.secrets.kv.v2.read_secret_version(
                    path=core_path, mount_point=settings.vault_mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                existing = None
        if existing is None:
            client.secrets.kv.v2.create_or_update_secret(
                path=core_path,
                mount_point=settings.vault_mount,
                secret={"master_key": _generated_master_key(), "pepper": secrets.token_urlsafe(48),
                        "audit_key": secrets.token_urlsafe(48)},
            )
        elif rotate_master_key:
            # A new LiteLLM master key only: the pepper (virtual keys) and the audit key (the chain) stay.
            client.secrets.kv.v2.patch(path=core_path, mount_point=settings.vault_mount,
                                       secret={"master_key": _generated_master_key()})
        if existing is not None and "audit_key" not in existing["data"]["data"]:
            # Added in a later version: add the missing field, keep the existing master key and pepper.
            client.secrets.kv.v2.patch(path=core_path, mount_point=settings.vault_mount,
                                       secret={"audit_key": secrets.token_urlsafe(48)})
        if provider_keys:
            _merge(client, settings, "providers", provider_keys)
        if datastore_passwords:
            _merge(client, settings, "datastores", datastore_passwords)
        return issue_credentials(client, settings, credentials_dir)


def _merge(client: hvac.Client, settings: Settings, sub_path: str, fields: Mapping[str, Secret]) -> None:
    """Write ``fields`` into ``<mount>/<path>/<sub_path>``, keeping the fields already there."""
    path = f"{settings.vault_path}/{sub_path}"
    current: dict[str, str] = {}
    with contextlib.suppress(hvac.exceptions.InvalidPath):  # none written yet
        current = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=settings.vault_mount, raise_on_deleted_version=True
        )["data"]["data"]
    current.update({name: value.reveal() for name, value in fields.items()})
    client.secrets.kv.v2.create_or_update_secret(path=path, mount_point=settings.vault_mount, secret=current)


def _check_datastore_passwords(settings: Settings, passwords: Mapping[str, Secret]) -> None:
    """The checks boot makes, made before anything is written: known fields, strong and different values."""
    where = f"{settings.vault_mount}/{settings.vault_path}/datastores"
    for name, password in passwords.items():
        if name not in DATASTORE_FIELDS:
            raise BootError("bootstrap", f"unknown datastore field {name!r}")
        check_strong(password, f"{where} field {name!r}")
    check_distinct({f"{where} field {name!r}": password for name, password in passwords.items()})


# A Vault duration for --wrap-ttl: seconds, minutes or hours (10s to 24h, checked in wrap_ttl_seconds).
_WRAP_TTL = re.compile(r"([1-9][0-9]{0,5})([smh]?)")
MIN_WRAP_TTL_SECONDS = 10
MAX_WRAP_TTL_SECONDS = 24 * 3600


def wrap_ttl_seconds(value: str) -> int:
    """``--wrap-ttl`` (``600``, ``600s``, ``10m``, ``1h``) in seconds; a BootError naming the option otherwise. Short is
    the point: a wrapping token found unusable at boot is the interception alarm, and a long TTL widens the window."""
    match = _WRAP_TTL.fullmatch(value.strip())
    if match is None:
        raise BootError("issue secret_id", "--wrap-ttl must be a duration such as 600s, 10m or 1h")
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not MIN_WRAP_TTL_SECONDS <= seconds <= MAX_WRAP_TTL_SECONDS:
        raise BootError("issue secret_id", "--wrap-ttl must be between 10s and 24h")
    return seconds


def issue_credentials(client: hvac.Client, settings: Settings, credentials_dir: Path,
                      wrap_ttl: str | None = None) -> tuple[Path, Path]:
    """Write role_id and a fresh single-use secret_id into ``credentials_dir`` (files 0600). With ``wrap_ttl`` the
    secret_id file holds a response-wrapping token for it instead, good for that long (boot unwraps it when
    GATEWAY_VAULT_SECRET_ID_WRAPPED is true)."""
    seconds = wrap_ttl_seconds(wrap_ttl) if wrap_ttl is not None else None
    role_id = client.auth.approle.read_role_id(role_name=ROLE_NAME, mount_point=settings.vault_approle_mount)
    secret_id = client.auth.approle.generate_secret_id(role_name=ROLE_NAME, mount_point=settings.vault_approle_mount,
                                                       wrap_ttl=f"{seconds}s" if seconds is not None else None)
    role_id_file = credentials_dir / "role_id"
    secret_id_file = credentials_dir / "secret_id"
    write_private_file(role_id_file, role_id["data"]["role_id"])
    if seconds is not None:
        wrap_info = secret_id.get("wrap_info") or {}
        if not wrap_info.get("token"):
            raise BootError("issue secret_id", "Vault did not wrap the secret_id (a policy may forbid wrapping)")
        write_private_file(secret_id_file, wrap_info["token"])
    else:
        write_private_file(secret_id_file, secret_id["data"]["secret_id"])
    del secret_id
    return role_id_file, secret_id_file


@dataclasses.dataclass(frozen=True)
class JwtBinding:
    """Who may log in through Vault's jwt method as the gateway: tokens signed by one of ``public_keys`` (PEM), from
    ``issuer``, for ``audience``, about ``subject``, carrying every claim in ``claims`` with that exact value."""

    public_keys: tuple[str, ...]
    issuer: str
    audience: str
    subject: str
    claims: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _pem_set(keys: object) -> set[str]:
    return {"".join(str(key).split()) for key in keys} if isinstance(keys, list) else set()


def _check_jwt_mount_free(client: hvac.Client, mount: str, binding: JwtBinding) -> None:
    """Refuse to replace a jwt mount's configuration that trusts another issuer or other keys: writing the config
    replaces it whole, so every other role of that mount (a CI's OIDC login, say) would stop working, or would start
    accepting the gateway's platform tokens. Running jwt-setup again with the same binding passes."""
    try:
        current = client.auth.jwt.read_config(path=mount).get("data") or {}
    except hvac.exceptions.InvalidPath:
        return  # a new mount: nothing configured yet
    configured = any(current.get(name) for name in ("jwt_validation_pubkeys", "jwks_url", "oidc_discovery_url"))
    same = (not current.get("jwks_url") and not current.get("oidc_discovery_url")
            and current.get("bound_issuer") == binding.issuer
            and _pem_set(current.get("jwt_validation_pubkeys")) == _pem_set(list(binding.public_keys)))
    if configured and not same:
        raise BootError("jwt setup", f"auth/{mount} already trusts another issuer or other keys; give the gateway a "
                                     "jwt mount of its own (GATEWAY_VAULT_JWT_MOUNT) rather than replace that "
                                     "configuration")


def configure_jwt(client: hvac.Client, settings: Settings, binding: JwtBinding) -> str:
    """Enable Vault's jwt auth method at ``GATEWAY_VAULT_JWT_MOUNT`` (if missing), trust ``binding``'s keys and issuer
    there, and write the gateway's role (``secrets/jwt-gateway.json`` plus the bound audience, subject and claims)
    with the runtime policy. Returns the role's name (``GATEWAY_VAULT_JWT_ROLE``, default ``gateway``)."""
    role = settings.vault_jwt_role or ROLE_NAME
    mount = settings.vault_jwt_mount
    definition = role_definition(name="jwt-gateway.json")
    with _vault_step("jwt setup", settings):
        _enable_auth_method(client, settings, "jwt", mount)
        _check_jwt_mount_free(client, mount, binding)
        client.auth.jwt.configure(jwt_validation_pubkeys=list(binding.public_keys), bound_issuer=binding.issuer,
                                  path=mount)
        client.auth.jwt.create_role(name=role, allowed_redirect_uris=[], bound_audiences=[binding.audience],
                                    bound_subject=binding.subject, bound_claims=dict(binding.claims) or None,
                                    path=mount, **definition)
    return role


def configure_cert(client: hvac.Client, settings: Settings, ca_pem: str, common_name: str) -> str:
    """Enable Vault's TLS certificate auth method at ``GATEWAY_VAULT_CERT_MOUNT`` (if missing) and write the gateway's
    role there (``secrets/cert-gateway.json``): client certificates signed by ``ca_pem`` whose common name is exactly
    ``common_name`` log in with the runtime policy. Returns the role's name (``GATEWAY_VAULT_CERT_ROLE``, default
    ``gateway``)."""
    role = settings.vault_cert_role or ROLE_NAME
    mount = settings.vault_cert_mount
    definition = role_definition(name="cert-gateway.json")
    with _vault_step("cert setup", settings):
        _enable_auth_method(client, settings, "cert", mount)
        client.auth.cert.create_ca_certificate_role(name=role, certificate=ca_pem, allowed_common_names=[common_name],
                                                    mount_point=mount, **definition)
    return role
