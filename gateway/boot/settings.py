"""HAZMAT-adjacent: process settings (``GATEWAY_*``). They name where secrets are, never hold them.

Credential files (role_id, secret_id or its wrapping token, token, the TLS client key, which is also the credential of a
``cert`` login) must not be readable by group or others; boot refuses them otherwise. The CA bundle and client
certificate are public but must not be writable by anyone else: whoever can rewrite the CA bundle chooses which Vault
the gateway trusts. A platform identity token (the JWT a Kubernetes projected volume or a CI runner writes) is
short-lived, bound to an audience and written by the platform, often 0644 and owned by root behind a symlink: it is
checked like the CA bundle (owner, not writable by others) plus its shape, not like a credential file (see
:func:`read_identity_token`).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.boot.errors import BootError
from gateway.policy import is_loopback_host

# Relative to the working directory. ``gateway serve`` uses (and creates) it when GATEWAY_DATABASE_URL is unset; the
# operator commands use it only if it already exists (require_database).
DEFAULT_DATABASE_URL = "sqlite:///var/gateway.db"
# The AppRole role `gateway secrets bootstrap` creates and boot logs in with (a wrapped secret_id must come from it).
APPROLE_ROLE = "gateway"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    vault_addr: str = "http://127.0.0.1:8200"
    vault_auth: Literal["approle", "token", "jwt", "kubernetes", "cert"] = "approle"
    vault_role_id_file: Path | None = None
    vault_secret_id_file: Path | None = None
    # The secret_id file holds a response-wrapping token (``gateway secrets issue-secret-id --wrap-ttl``), unwrapped
    # at boot after its creation path is checked.
    vault_secret_id_wrapped: bool = False
    vault_token_file: Path | None = None
    # Platform identity (GATEWAY_VAULT_AUTH=jwt or kubernetes): the file holding a signed JWT (a Kubernetes projected
    # service-account token, a CI OIDC token) and the role to log in with, at Vault's jwt or kubernetes auth method.
    vault_jwt_file: Path | None = None
    vault_jwt_role: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    vault_jwt_mount: str = Field(default="jwt", pattern=r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64})*$")
    vault_kubernetes_mount: str = Field(default="kubernetes", pattern=r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64})*$")
    # TLS certificate login (GATEWAY_VAULT_AUTH=cert): the mTLS client certificate and key below are the credential;
    # the role (certs/<name>) is optional, without it Vault tries every role of the mount.
    vault_cert_role: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    vault_cert_mount: str = Field(default="cert", pattern=r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64})*$")
    vault_mount: str = Field(default="secret", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    vault_path: str = Field(default="gateway", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    vault_approle_mount: str = Field(default="approle", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    vault_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # TLS to Vault: a private CA bundle (PEM) instead of certifi's, and a client certificate and key for mTLS.
    vault_cacert: Path | None = None
    vault_client_cert: Path | None = None
    vault_client_key: Path | None = Field(default=None, validate_default=True)
    database_url: str = DEFAULT_DATABASE_URL
    policy_file: Path = Path("policy/gateway.yaml")
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace_seconds: int = Field(default=30, ge=1, le=3600)
    # Worker processes forked from the booted master (`gateway serve --workers N`); more than one needs redis_url.
    workers: int = Field(default=1, ge=1, le=64)
    log_format: Literal["json", "text"] = "json"
    # Shared rate-limit counters for a fleet; unset: in-memory counters per process.
    redis_url: str | None = None
    redis_password_file: Path | None = None
    # Datastore passwords from Vault (`<mount>/<path>/datastores`, fields postgres_password and redis_password), read
    # at boot with the other secrets and handed to the drivers in memory.
    redis_password_from_vault: bool = False
    database_password_from_vault: bool = False
    # Dangerous: with Redis unreachable, let traffic through without rate limits instead of answering 503.
    unsafe_rate_limit_fail_open: bool = False

    @field_validator("redis_url", "database_url")
    @classmethod
    def _no_password_in_url(cls, value: str | None) -> str | None:
        # A password in a URL would sit in the environment; use Vault, a 0600 file (Redis) or ~/.pgpass (Postgres).
        if value and url_carries_credential(value):
            raise ValueError("must not carry a password, in the user part or as a query parameter; keep it in Vault "
                             "(GATEWAY_DATABASE_PASSWORD_FROM_VAULT, GATEWAY_REDIS_PASSWORD_FROM_VAULT), "
                             "GATEWAY_REDIS_PASSWORD_FILE or ~/.pgpass")
        return value

    @field_validator("redis_password_from_vault")
    @classmethod
    def _one_redis_password_source(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("redis_password_file") is not None:
            raise ValueError("cannot be set together with GATEWAY_REDIS_PASSWORD_FILE: both name the Redis "
                             "password; keep one")
        if value and not info.data.get("redis_url"):
            raise ValueError("is set but GATEWAY_REDIS_URL is not")
        return value

    @field_validator("database_password_from_vault")
    @classmethod
    def _database_password_for_postgres(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not str(info.data.get("database_url", "")).startswith("postgresql"):
            raise ValueError("applies to a postgresql URL in GATEWAY_DATABASE_URL only")
        if value and "PGPASSWORD" in os.environ:
            # libpq would ignore it (an explicit password wins), but it is a second password, in the environment.
            raise ValueError("is set and so is PGPASSWORD in the environment; unset PGPASSWORD")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        # redis-py reads TLS options from the query: a rediss:// URL must keep the certificate and host name checks.
        for name, option in parse_qsl(urlsplit(value or "").query, keep_blank_values=True):
            if (name == "ssl_cert_reqs" and option.lower() != "required") or (
                    name == "ssl_check_hostname" and option.lower() not in ("true", "1", "yes")):
                raise ValueError(f"must not weaken TLS ({name}={option[:20]})")
        return value

    @field_validator("vault_addr")
    @classmethod
    def _vault_addr(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be scheme://host[:port] without a user part, query or fragment")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            # Secrets and tokens would cross the network in clear text.
            raise ValueError("plain http is allowed only to a loopback address; use https")
        return value.rstrip("/")

    @field_validator("vault_cacert")
    @classmethod
    def _cacert_needs_https(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and str(info.data.get("vault_addr", "")).startswith("http://"):
            raise ValueError("is set but GATEWAY_VAULT_ADDR is plain http; use an https address")
        return value

    @field_validator("vault_client_key")
    @classmethod
    def _client_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("vault_client_cert") is None):
            raise ValueError("GATEWAY_VAULT_CLIENT_CERT and GATEWAY_VAULT_CLIENT_KEY go together; set both or neither")
        return value

    @field_validator("vault_client_key")
    @classmethod
    def _cert_login_needs_mtls(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # The certificate is the credential and is presented in the TLS handshake: no https, nothing to present.
        if info.data.get("vault_auth") != "cert":
            return value
        if str(info.data.get("vault_addr", "")).startswith("http://"):
            raise ValueError("GATEWAY_VAULT_AUTH=cert needs an https GATEWAY_VAULT_ADDR: the client certificate is "
                             "presented in the TLS handshake")
        if value is None:
            raise ValueError("GATEWAY_VAULT_AUTH=cert needs the client certificate and key it logs in with "
                             "(GATEWAY_VAULT_CLIENT_CERT, GATEWAY_VAULT_CLIENT_KEY)")
        return value


# Query parameters that carry a credential: libpq's password and sslpassword, redis-py's password and ssl_password
# (redis-py passes any unknown query parameter on to its connection), and the generic names.
CREDENTIAL_QUERY_PARAMETERS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword", "ssl_password", "token",
                                         "auth", "secret", "key", "api_key", "apikey", "access_token",
                                         "auth_token", "credentials"})


def url_carries_credential(url: str) -> bool:
    """True when ``url`` holds a password in its user part or a credential-named query parameter."""
    # A colon before an "@" ahead of the path: a password, however the URL's parser splits the rest (SQLAlchemy takes
    # "?" and "#" into the user part where urllib ends the host there).
    if re.match(r"^[A-Za-z0-9+.-]+://[^/@]*:[^/]*@", url):
        return True
    parts = urlsplit(url)
    if parts.password is not None:
        return True
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        lowered = name.strip().lower().replace("-", "_")
        if lowered in CREDENTIAL_QUERY_PARAMETERS or any(word in lowered for word in ("password", "passwd", "secret",
                                                                                     "token")):
            return True
    return False


def redacted_url(url: str) -> str:
    """``url`` reduced to scheme, host, port and path, for error lines: no user part, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "GATEWAY_" + str(first["loc"][0]).upper() if first["loc"] else "GATEWAY_*"
        raise BootError("settings", f"{name}: {first['msg']}") from None


def require_database(settings: Settings) -> None:
    """For the operator commands: refuse to run on a store nobody configured. With GATEWAY_DATABASE_URL unset, the
    default SQLite file is used only if it exists: opening it would otherwise create an empty store, and a command
    such as ``keys list`` would quietly answer from it (``[]``) instead of from the gateway's store."""
    if "database_url" in settings.model_fields_set:
        return
    default = Path(DEFAULT_DATABASE_URL.removeprefix("sqlite:///"))
    if not default.exists():
        raise BootError("database", f"GATEWAY_DATABASE_URL is not set and the default store {default} does not exist "
                                    f"in {Path.cwd()}; set it to the gateway's store (for `gateway dev`: set -a; . "
                                    "the file its --env-file wrote; set +a)")


def _open_regular_file(path: Path, setting: str) -> tuple[int, os.stat_result]:
    """A descriptor on ``path`` opened without following a symlink, and its status, once it is known to be a regular
    file: what is checked afterwards is what is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BootError("settings", f"{setting}: file {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BootError(
                "settings", f"{setting}: {path} is a symlink; point the setting at the file itself"
            ) from None
        raise BootError("settings", f"{setting}: file {path} cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise BootError("settings", f"{setting}: file {path} cannot be read") from None
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BootError("settings", f"{setting}: {path} is not a regular file")
    return fd, info


def read_credential_file(path: Path | None, setting: str) -> str:
    """Read a credential file that the gateway's user owns and only it may read; refuse anything else.

    The file is opened without following a symlink (``O_NOFOLLOW``) and checked on the open descriptor, so what is
    checked is what is read: a regular file, owned by this process's effective user, with no group or other access.
    A file someone else owns could be rewritten by them (a secret_id of their choosing, a token they also hold)."""
    if path is None:
        raise BootError("settings", f"{setting} is not set")
    fd, info = _open_regular_file(path, setting)
    with os.fdopen(fd, "rb") as handle:
        if info.st_uid != os.geteuid():
            raise BootError("settings", f"{setting}: file {path} belongs to another user (uid {info.st_uid}); "
                                        "credential files must belong to the gateway's user")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BootError(
                "settings",
                f"{setting}: file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it",
            )
        try:
            value = handle.read().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise BootError("settings", f"{setting}: file {path} cannot be read") from None
    if not value:
        raise BootError("settings", f"{setting}: file {path} is empty")
    return value


def check_public_file(path: Path, setting: str, *, marker: bytes = b"-----BEGIN CERTIFICATE-----",
                      what: str = "PEM certificate") -> bytes:
    """Refuse a public trust file (CA bundle, client certificate, an issuer's public key) that is not a regular PEM
    file holding ``marker``, is a symlink, belongs to someone other than this user or root, or is writable by others:
    they could swap what the gateway trusts. Returns its content."""
    fd, info = _open_regular_file(path, setting)
    with os.fdopen(fd, "rb") as handle:
        if info.st_uid not in (os.geteuid(), 0):
            raise BootError("settings", f"{setting}: file {path} belongs to another user (uid {info.st_uid}); it "
                                        "must belong to the gateway's user or root")
        if info.st_mode & stat.S_IWOTH:
            raise BootError("settings", f"{setting}: file {path} is writable by others "
                                        f"(mode {stat.S_IMODE(info.st_mode):o}); chmod o-w it")
        try:
            content = handle.read(1_000_000)
        except OSError:
            raise BootError("settings", f"{setting}: file {path} cannot be read") from None
    if marker not in content:
        raise BootError("settings", f"{setting}: file {path} holds no {what}")
    return content


# A compact JWS: three base64url parts (header, claims, signature). Anything else is not a token Vault could accept.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}")
MAX_IDENTITY_TOKEN_BYTES = 64 * 1024


def read_identity_token(path: Path | None, setting: str) -> str:
    """Read a platform identity token (a signed JWT) that the platform wrote: a regular file, which may be reached
    through symlinks (Kubernetes swaps projected tokens in by a symlink), owned by this user or root and writable by
    neither group nor others, holding one compact JWS.

    It is not held to the credential-file rule (0600, owned by the gateway's user): Kubernetes writes projected
    service-account tokens as root with mode 0644 unless the pod sets ``defaultMode``, and the token is useless
    beyond its audience (only Vault's jwt role accepts it) and its expiry (minutes to an hour). Whoever may write
    the file could only hand boot another token that the role's bound issuer, audience, subject and claims accept."""
    if path is None:
        raise BootError("settings", f"{setting} is not set")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BootError("settings", f"{setting}: file {path} does not exist") from None
    except OSError as exc:
        raise BootError("settings", f"{setting}: file {path} cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BootError("settings", f"{setting}: {path} is not a regular file")
        if info.st_uid not in (os.geteuid(), 0):
            raise BootError("settings", f"{setting}: file {path} belongs to another user (uid {info.st_uid}); it "
                                        "must belong to the gateway's user or root")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise BootError("settings", f"{setting}: file {path} is writable by group or others "
                                        f"(mode {stat.S_IMODE(info.st_mode):o}); chmod go-w it")
        content = os.read(fd, MAX_IDENTITY_TOKEN_BYTES + 1)
    except OSError:
        raise BootError("settings", f"{setting}: file {path} cannot be read") from None
    finally:
        os.close(fd)
    if len(content) > MAX_IDENTITY_TOKEN_BYTES:
        raise BootError("settings", f"{setting}: file {path} is larger than {MAX_IDENTITY_TOKEN_BYTES} bytes")
    try:
        value = content.decode("ascii").strip()
    except UnicodeDecodeError:
        raise BootError("settings", f"{setting}: file {path} does not hold a JWT (compact JWS)") from None
    if not value:
        raise BootError("settings", f"{setting}: file {path} is empty")
    if not _COMPACT_JWS.fullmatch(value):
        raise BootError("settings", f"{setting}: file {path} does not hold a JWT (compact JWS)")
    return value


def vault_tls(settings: Settings) -> tuple[str | bool, tuple[str, str] | None]:
    """What hvac's ``verify`` and ``cert`` take, after the files' checks: the CA bundle's path (True: certifi's
    bundle) and the client certificate and key paths (None: no mTLS)."""
    verify: str | bool = True
    if settings.vault_cacert is not None:
        check_public_file(settings.vault_cacert, "GATEWAY_VAULT_CACERT")
        verify = str(settings.vault_cacert)
    if settings.vault_client_cert is None or settings.vault_client_key is None:
        return verify, None
    check_public_file(settings.vault_client_cert, "GATEWAY_VAULT_CLIENT_CERT")
    # Read only for its checks (owner, 0600, no symlink); requests loads it again from the path.
    key = read_credential_file(settings.vault_client_key, "GATEWAY_VAULT_CLIENT_KEY")
    del key
    return verify, (str(settings.vault_client_cert), str(settings.vault_client_key))
