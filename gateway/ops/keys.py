"""``gateway keys`` and ``gateway admin-key``: create, list and revoke keys on the store directly, audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.boot.errors import BootError
from gateway.boot.fleet import build_invalidations
from gateway.credits.ledger import SqlLedger
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import InvalidExpiry, SqlKeyStore
from gateway.ops.context import (
    cli_actor,
    core_secrets,
    die,
    open_audit,
    open_engine,
    open_settings,
    open_store_and_core,
)
from gateway.policy import PolicyError, load_policy


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
    """A new key (reads the pepper from Vault): its plaintext, shown once, and its public record."""
    settings = open_settings()
    # The store's password, when it is in Vault, comes with the pepper: one login.
    core = core_secrets(settings) if settings.database_password_from_vault else None
    if kind is KeyKind.CUSTOMER:
        engine = open_engine(settings, core)
        if account_id is None or SqlLedger(engine).get_account(account_id) is None:
            die(BootError("keys create", f"no account with id {account_id}"))
    if kind is KeyKind.CUSTOMER:
        try:
            exposed = set(load_policy(settings.policy_file).model_names())
        except PolicyError as exc:
            die(BootError("policy", str(exc)))
        unknown = sorted(set(models) - exposed)
        if unknown:
            die(BootError("keys create", f"model {unknown[0]!r} is not exposed by {settings.policy_file}"))
    core = core or core_secrets(settings)
    engine = open_engine(settings, core)
    service = KeyService(SqlKeyStore(engine), KeyHasher(core.pepper.reveal().encode("utf-8")))
    audit = open_audit(settings, engine, core)
    try:
        plaintext, record = service.issue(kind, name=name, models=models, expires_at=expires_at,
                                          account_id=account_id, spend_cap_micro_usd=spend_cap_micro_usd,
                                          spend_cap_period=spend_cap_period, rpm_limit=rpm_limit, tpm_limit=tpm_limit)
    except InvalidExpiry as exc:  # the message is ours and fixed: never a value
        die(BootError("keys create", str(exc)))
    audit.record("admin_key_created" if kind is KeyKind.ADMIN else "key_created", actor=cli_actor(),
                 subject=record.id)
    return plaintext, record.public(datetime.now(UTC))


def list_keys() -> list[dict[str, Any]]:
    settings = open_settings()
    now = datetime.now(UTC)
    return [r.public(now) for r in SqlKeyStore(open_engine(settings)).list()]


def revoke_key(key_id: str) -> dict[str, Any] | None:
    """The revoked key's public record, or None when there is no key ``key_id``."""
    settings = open_settings()
    engine, core = open_store_and_core(settings)
    audit = open_audit(settings, engine, core)
    actor = cli_actor()
    # Like the admin API: the key and every key rotated from it (a rotation racing this revocation leaves no live key).
    record, successors = SqlKeyStore(engine).revoke_line(key_id, by=actor)
    if record is not None:
        audit.record("key_revoked", actor=actor, subject=key_id,
                     reason=f"successors_revoked={len(successors)}" if successors else None)
        for successor in successors:
            audit.record("key_revoked", actor=actor, subject=successor, reason=f"predecessor={key_id}")
        # Running replicas drop their cached copies now when the fleet shares Redis; else within the cache TTL.
        invalidations = build_invalidations(settings, core.redis_password)
        for revoked in (key_id, *successors):
            invalidations.publish(revoked)
    return None if record is None else record.public(datetime.now(UTC))
