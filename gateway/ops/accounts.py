"""``gateway accounts``: create, credit, list and show credit accounts on the store directly; changes audited."""

from __future__ import annotations

from typing import Any

from gateway.boot.errors import BootError
from gateway.credits.ledger import ACCOUNT_ID, BalanceLimit, SqlLedger, UnknownAccount, account_page
from gateway.ops.context import cli_actor, die, open_audit, open_engine, open_settings, open_store_and_core


def create_account(name: str) -> dict[str, Any]:
    settings = open_settings()
    engine, core = open_store_and_core(settings)
    audit = open_audit(settings, engine, core)
    account = SqlLedger(engine).create_account(name)
    audit.record("account_created", actor=cli_actor(), subject=account.id)
    return account.public(with_created_at=False)


def credit_account(account_id: str, amount: int, reason: str) -> dict[str, Any]:
    if not reason or len(reason) > 200 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in reason):
        die(BootError("accounts credit", "--reason must be 1 to 200 characters without control characters"))
    settings = open_settings()
    engine, core = open_store_and_core(settings)
    audit = open_audit(settings, engine, core)
    try:
        account = SqlLedger(engine).top_up(account_id, amount, reason)
    except UnknownAccount:
        die(BootError("accounts credit", f"no account with id {account_id}"))
    except BalanceLimit as exc:  # the message is ours and fixed
        die(BootError("accounts credit", str(exc)))
    audit.record("credits_added", actor=cli_actor(), subject=account_id, reason=f"amount_micro_usd={amount}")
    return account.public(with_created_at=False)


def show_account(account_id: str) -> dict[str, Any]:
    ledger = SqlLedger(open_engine(open_settings()))
    account = ledger.get_account(account_id)
    if account is None:
        die(BootError("accounts show", f"no account with id {account_id}"))
    return {**account.public(with_created_at=False), "recent_ledger": ledger.recent_entries(account_id)}


def list_accounts(limit: int, after_id: str | None) -> dict[str, Any]:
    """A page of accounts in id order, shaped like ``GET /admin/accounts`` (without ``created_at``, as the other
    account commands)."""
    if after_id is not None and not ACCOUNT_ID.fullmatch(after_id):
        die(BootError("accounts list", "--after-id must be an account id (acct_ and 24 hexadecimal digits)"))
    page = SqlLedger(open_engine(open_settings())).list_accounts(limit=limit, after_id=after_id)
    return account_page(page, limit, with_created_at=False)
