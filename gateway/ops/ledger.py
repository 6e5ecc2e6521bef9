"""``gateway ledger``: the parity check and the reservation sweeper, on the store directly."""

from __future__ import annotations

import sys
from datetime import timedelta

from gateway.audit.log import AuditLog
from gateway.boot import operator
from gateway.boot.errors import BootError
from gateway.credits.ledger import Drift, SqlLedger
from gateway.ops.context import cli_actor, core_secrets, die, open_engine, open_settings
from gateway.policy import PolicyError, load_policy


def check_ledger() -> list[Drift]:
    return SqlLedger(open_engine(open_settings())).check()


def sweep_ledger(ttl_seconds: int | None) -> tuple[int, int]:
    """Expire reservations open longer than ``ttl_seconds`` (default: the policy's): how many expired, how many stay
    open."""
    settings = open_settings()
    if ttl_seconds is None:
        try:
            ttl_seconds = load_policy(settings.policy_file).credits.reservation_ttl_seconds
        except PolicyError as exc:
            die(BootError("policy", str(exc)))
    # A store whose password is in Vault needs the login first; the audit key then comes from the same read.
    core = core_secrets(settings) if settings.database_password_from_vault else None
    engine = open_engine(settings, core)
    ledger = SqlLedger(engine)
    expired = ledger.sweep(timedelta(seconds=ttl_seconds))
    # Audited when the audit key can be read. A sweep only releases (never charges) what requests left open, which
    # the gateways' own sweepers do every minute unaudited, so a missing Vault credential does not stop it; it is
    # said on stderr.
    try:
        audit = AuditLog(engine, (core or operator.core_secrets(settings)).audit_key.reveal().encode("utf-8"))
    except BootError as exc:
        print(f"gateway: sweep not audited ({exc.step}: {exc.message})", file=sys.stderr)
    else:
        audit.record("ledger_swept", actor=cli_actor(), reason=f"ttl_seconds={ttl_seconds} expired={expired}")
    return expired, ledger.open_reservations()
