"""HAZMAT-adjacent: process settings (``GATEWAY_*``). They name where secrets are, never hold them.

Credential files (role_id, secret_id, token) must not be readable by group or others; boot refuses them otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.boot.errors import BootError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    vault_addr: str = "http://127.0.0.1:8200"
    vault_auth: Literal["approle", "token"] = "approle"
    vault_role_id_file: Path | None = None
    vault_secret_id_file: Path | None = None
    vault_token_file: Path | None = None
    vault_mount: str = Field(default="secret", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    vault_path: str = Field(default="gateway", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    vault_approle_mount: str = Field(default="approle", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    vault_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    database_url: str = "sqlite:///var/gateway.db"
    policy_file: Path = Path("policy/gateway.yaml")
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace_seconds: int = Field(default=30, ge=1, le=3600)
    log_format: Literal["json", "text"] = "json"
    # Shared rate-limit counters for a fleet; unset: in-memory counters per process.
    redis_url: str | None = None
    redis_password_file: Path | None = None
    # Dangerous: with Redis unreachable, let traffic through without rate limits instead of answering 503.
    unsafe_rate_limit_fail_open: bool = False

    @field_validator("redis_url", "database_url")
    @classmethod
    def _no_password_in_url(cls, value: str | None) -> str | None:
        # A password in a URL would sit in the environment; use a 0600 file (Redis) or ~/.pgpass (Postgres).
        if value and re.match(r"^[a-z0-9+]+://[^/@]*:[^/@]*@", value):
            raise ValueError("must not carry a password; use GATEWAY_REDIS_PASSWORD_FILE or ~/.pgpass")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("vault_addr")
    @classmethod
    def _vault_addr(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            # Secrets and tokens would cross the network in clear text.
            raise ValueError("plain http is allowed only to a loopback address; use https")
        return value.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "GATEWAY_" + str(first["loc"][0]).upper() if first["loc"] else "GATEWAY_*"
        raise BootError("settings", f"{name}: {first['msg']}") from None


def read_credential_file(path: Path | None, setting: str) -> str:
    """Read a credential file that only its owner may read; refuse anything else."""
    if path is None:
        raise BootError("settings", f"{setting} is not set")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BootError("settings", f"{setting}: file {path} does not exist") from None
    except OSError as exc:
        raise BootError("settings", f"{setting}: file {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise BootError("settings", f"{setting}: {path} is not a regular file")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BootError(
            "settings", f"{setting}: file {path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it"
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise BootError("settings", f"{setting}: file {path} cannot be read") from None
    if not value:
        raise BootError("settings", f"{setting}: file {path} is empty")
    return value
