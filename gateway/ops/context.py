"""HAZMAT: what the CLI's store and Vault commands do. Errors print one line naming the step; no secret values."""

from __future__ import annotations

import os
import pwd
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa

from gateway.audit.log import AuditLog, Broken
from gateway.boot import bootstrap as vault_bootstrap
from gateway.boot import vault
from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings, load_settings, read_credential_file
from gateway.credits.ledger import Account, BalanceLimit, Drift, SqlLedger, UnknownAccount
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import InvalidExpiry, SqlKeyStore
from gateway.policy import PolicyError, load_policy
from gateway.store.engine import open_store


def cli_actor() -> str:
    """Who runs the host CLI, for the audit trail: ``cli:<user name>`` from the effective uid (not the environment,
    which the caller sets)."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid{uid}"
    return f"cli:{name}"[:64]


def _die(exc: BootError) -> NoReturn:
    print(exc.line(), file=sys.stderr)
    raise SystemExit(2)


def _settings() -> Settings:
    try:
        return load_settings()
    except BootError as exc:
        _die(exc)


def _engine(settings: Settings) -> sa.Engine:
    try:
        return open_store(settings.database_url)
    except Exception as exc:  # noqa: BLE001 - any failure opening the store becomes one boot line
        _die(BootError("database", f"cannot open the store ({type(exc).__name__})"))


def _store(settings: Settings) -> SqlKeyStore:
    return SqlKeyStore(_engine(settings))


def _account_view(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "balance_micro_usd": account.balance_micro_usd,
            "reserved_micro_usd": account.reserved_micro_usd, "available_micro_usd": account.available_micro_usd}


def create_account(name: str) -> dict[str, Any]:
    settings = _settings()
    engine = _engine(settings)
    audit = _audit(settings, engine)
    account = SqlLedger(engine).create_account(name)
    audit.record("account_created", actor=cli_actor(), subject=account.id)
    return _account_view(account)


def credit_account(account_id: str, amount: int, reason: str) -> dict[str, Any]:
    if not reason or len(reason) > 200 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in reason):
        _die(BootError("accounts credit", "--reason must be 1 to 200 characters without control characters"))
    settings = _settings()
    engine = _engine(settings)
    audit = _audit(settings, engine)
    try:
        account = SqlLedger(engine).top_up(account_id, amount, reason)
    except UnknownAccount:
        _die(BootError("accounts credit", f"no account with id {account_id}"))
    except BalanceLimit as exc:  # the message is ours and fixed
        _die(BootError("accounts credit", str(exc)))
    audit.record("credits_added", actor=cli_actor(), subject=account_id, reason=f"amount_micro_usd={amount}")
    return _account_view(account)


def verify_audit(expect_head: tuple[int, str] | None = None) -> tuple[list[Broken], int]:
    """The chain's breaks and how many entries were walked; ``expect_head`` is a head logged earlier."""
    settings = _settings()
    audit = _audit(settings, _engine(settings))
    return audit.verify_chain(expect_head)


def show_account(account_id: str) -> dict[str, Any]:
    ledger = SqlLedger(_engine(_settings()))
    account = ledger.get_account(account_id)
    if account is None:
        _die(BootError("accounts show", f"no account with id {account_id}"))
    return {**_account_view(account), "recent_ledger": ledger.recent_entries(account_id)}


def check_ledger() -> list[Drift]:
    return SqlLedger(_engine(_settings())).check()


def sweep_ledger(ttl_seconds: int | None) -> tuple[int, int]:
    settings = _settings()
    if ttl_seconds is None:
        try:
            ttl_seconds = load_policy(settings.policy_file).credits.reservation_ttl_seconds
        except PolicyError as exc:
            _die(BootError("policy", str(exc)))
    engine = _engine(settings)
    ledger = SqlLedger(engine)
    expired = ledger.sweep(timedelta(seconds=ttl_seconds))
    # Audited when the audit key can be read. A sweep only releases (never charges) what requests left open, which
    # the gateways' own sweepers do every minute unaudited, so a missing Vault credential does not stop it; it is
    # said on stderr.
    try:
        audit = AuditLog(engine, core_from_vault(settings).audit_key.reveal().encode("utf-8"))
    except BootError as exc:
        print(f"gateway: sweep not audited ({exc.step}: {exc.message})", file=sys.stderr)
    else:
        audit.record("ledger_swept", actor=cli_actor(), reason=f"ttl_seconds={ttl_seconds} expired={expired}")
    return expired, ledger.open_reservations()


def core_from_vault(settings: Settings) -> vault.VaultSecrets:
    """Pepper and audit key (and the master key, unused here) with the configured credentials; token revoked after."""
    client = vault.login(settings)
    try:
        return vault.read_secrets(client, settings, [])
    finally:
        vault.revoke_own_token(client)


def _audit(settings: Settings, engine: sa.Engine, core: vault.VaultSecrets | None = None) -> AuditLog:
    try:
        core = core or core_from_vault(settings)
    except BootError as exc:
        _die(exc)
    return AuditLog(engine, core.audit_key.reveal().encode("utf-8"))


def create_key(
    kind: KeyKind,
    *,
    name: str,
    models: list[str],
    expires_at: datetime | None,
    account_id: str | None,
    spend_cap_micro_usd: int | None = None,
    spend_cap_period: str = "none",
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
) -> tuple[str, dict[str, Any]]:
    settings = _settings()
    if kind is KeyKind.CUSTOMER:
        engine = _engine(settings)
        if account_id is None or SqlLedger(engine).get_account(account_id) is None:
            _die(BootError("keys create", f"no account with id {account_id}"))
    if kind is KeyKind.CUSTOMER:
        try:
            exposed = set(load_policy(settings.policy_file).model_names())
        except PolicyError as exc:
            _die(BootError("policy", str(exc)))
        unknown = sorted(set(models) - exposed)
        if unknown:
            _die(BootError("keys create", f"model {unknown[0]!r} is not exposed by {settings.policy_file}"))
    try:
        core = core_from_vault(settings)
    except BootError as exc:
        _die(exc)
    engine = _engine(settings)
    service = KeyService(SqlKeyStore(engine), KeyHasher(core.pepper.reveal().encode("utf-8")))
    audit = _audit(settings, engine, core)
    try:
        plaintext, record = service.issue(kind, name=name, models=models, expires_at=expires_at,
                                          account_id=account_id, spend_cap_micro_usd=spend_cap_micro_usd,
                                          spend_cap_period=spend_cap_period, rpm_limit=rpm_limit, tpm_limit=tpm_limit)
    except InvalidExpiry as exc:  # the message is ours and fixed: never a value
        _die(BootError("keys create", str(exc)))
    audit.record("admin_key_created" if kind is KeyKind.ADMIN else "key_created", actor=cli_actor(),
                 subject=record.id)
    return plaintext, record.public(datetime.now(UTC))


def list_keys() -> list[dict[str, Any]]:
    settings = _settings()
    now = datetime.now(UTC)
    return [r.public(now) for r in _store(settings).list()]


def revoke_key(key_id: str) -> dict[str, Any] | None:
    settings = _settings()
    engine = _engine(settings)
    audit = _audit(settings, engine)
    actor = cli_actor()
    # Like the admin API: the key and every key rotated from it (a rotation racing this revocation leaves no live key).
    record, successors = SqlKeyStore(engine).revoke_line(key_id, by=actor)
    if record is not None:
        audit.record("key_revoked", actor=actor, subject=key_id,
                     reason=f"successors_revoked={len(successors)}" if successors else None)
        for successor in successors:
            audit.record("key_revoked", actor=actor, subject=successor, reason=f"predecessor={key_id}")
    return None if record is None else record.public(datetime.now(UTC))


def _operator(settings: Settings, token_file: Path) -> Any:
    token = Secret(read_credential_file(token_file, "--operator-token-file"))
    return vault_bootstrap.operator_client(settings, token)


def bootstrap(token_file: Path, credentials_dir: Path, provider_specs: list[str], rotate_core: bool,
              rotate_master_key: bool = False) -> tuple[Path, Path]:
    settings = _settings()
    try:
        provider_keys: dict[str, Secret] = {}
        for spec in provider_specs:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise BootError("bootstrap", f"--provider-key-file {spec!r} must be NAME=PATH")
            provider_keys[name] = Secret(read_credential_file(Path(path), f"--provider-key-file {name}"))
        client = _operator(settings, token_file)
        return vault_bootstrap.bootstrap(
            client, settings, provider_keys=provider_keys, credentials_dir=credentials_dir, rotate_core=rotate_core,
            rotate_master_key=rotate_master_key,
        )
    except BootError as exc:
        _die(exc)


def issue_secret_id(token_file: Path, credentials_dir: Path) -> tuple[Path, Path]:
    settings = _settings()
    try:
        client = _operator(settings, token_file)
        return vault_bootstrap.issue_credentials(client, settings, credentials_dir)
    except BootError as exc:
        _die(exc)
