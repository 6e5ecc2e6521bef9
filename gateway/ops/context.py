"""What every operator command starts from: the settings, the store, the audit log, who acts, and the one-line exit.

Errors print one line naming the step; no secret values.
"""

from __future__ import annotations

import os
import pwd
import sys
from typing import NoReturn

import sqlalchemy as sa

from gateway.audit.log import AuditLog
from gateway.boot import operator
from gateway.boot.errors import BootError
from gateway.boot.fleet import open_database
from gateway.boot.settings import Settings, load_settings, require_database
from gateway.boot.vault import VaultSecrets


def cli_actor() -> str:
    """Who runs the host CLI, for the audit trail: ``cli:<user name>`` from the effective uid (not the environment,
    which the caller sets)."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid{uid}"
    return f"cli:{name}"[:64]


def die(exc: BootError) -> NoReturn:
    """Print the failed step's one line and exit 2."""
    print(exc.line(), file=sys.stderr)
    raise SystemExit(2)


def open_settings() -> Settings:
    try:
        return load_settings()
    except BootError as exc:
        die(exc)


def open_engine(settings: Settings, core: VaultSecrets | None = None) -> sa.Engine:
    """The configured store; never a new, empty one in the working directory when none is configured. With
    GATEWAY_DATABASE_PASSWORD_FROM_VAULT its password comes from ``core``, read from Vault now if not given (a
    command that also needs the audit key or pepper passes what it read: one login, one secret_id)."""
    require_configured_database(settings)
    if settings.database_password_from_vault and core is None:
        core = core_secrets(settings)
    try:
        return open_database(settings, core.postgres_password if core is not None else None)
    except BootError as exc:
        die(exc)
    except Exception as exc:  # noqa: BLE001 - any failure opening the store becomes one boot line
        die(BootError("database", f"cannot open the store ({type(exc).__name__})"))


def open_store_and_core(settings: Settings) -> tuple[sa.Engine, VaultSecrets]:
    """The store and the core secrets for a command that needs both, from one Vault login."""
    require_configured_database(settings)
    core = core_secrets(settings)
    return open_engine(settings, core), core


def require_configured_database(settings: Settings) -> None:
    """Refuse before the Vault login (which uses up a secret_id) when no store is configured."""
    try:
        require_database(settings)
    except BootError as exc:
        die(exc)


def core_secrets(settings: Settings) -> VaultSecrets:
    """The core secrets from Vault with the configured credentials, or the one-line exit."""
    try:
        return operator.core_secrets(settings)
    except BootError as exc:
        die(exc)


def open_audit(settings: Settings, engine: sa.Engine, core: VaultSecrets | None = None) -> AuditLog:
    """The audit log, keyed with the audit key from ``core`` or else read from Vault."""
    core = core or core_secrets(settings)
    return AuditLog(engine, core.audit_key.reveal().encode("utf-8"))
