"""Balances stay integers within a cap, and ``ledger check`` sees what SQL behind the ledger's back can change.

threat-model: TM-TP2
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway.credits.ledger import (
    MAX_BALANCE_MICRO_USD,
    BalanceLimit,
    KeyCap,
    SqlLedger,
    UnknownAccount,
)
from tests.support import fresh_store

LEDGER_TABLES = ("ledger_entries", "reservations", "key_spend", "accounts")


@pytest.fixture()
def ledger(store_url: str) -> Iterator[SqlLedger]:
    yield SqlLedger(fresh_store(store_url, *LEDGER_TABLES))
    # These tests corrupt the ledger on purpose; the Postgres test database outlives them (later modules run
    # `ledger check` on it), so the damage is cleared here too.
    fresh_store(store_url, *LEDGER_TABLES).dispose()


def _sql(ledger: SqlLedger, statement: str, **params: object) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def _funded(ledger: SqlLedger, amount: int) -> str:
    account = ledger.create_account("t")
    ledger.top_up(account.id, amount, "test")
    return account.id


def _capped_spend(ledger: SqlLedger, account: str, key: str = "key_capped") -> None:
    cap = KeyCap(1_000, "monthly")
    for i, charge in enumerate((300, 200)):
        ledger.reserve(request_id=f"r{i}", account_id=account, key_id=key, amount=400, cap=cap)
        ledger.settle(f"r{i}", charge)
    ledger.reserve(request_id="r-open", account_id=account, key_id=key, amount=100, cap=cap)
    assert ledger.check() == []


def test_balances_and_top_ups_are_capped(ledger: SqlLedger) -> None:
    account = ledger.create_account("whale").id
    with pytest.raises(BalanceLimit):
        ledger.top_up(account, MAX_BALANCE_MICRO_USD + 1, "too much at once")
    ledger.top_up(account, MAX_BALANCE_MICRO_USD - 5, "almost all")
    with pytest.raises(BalanceLimit):
        ledger.top_up(account, 6, "one past the cap")
    with pytest.raises(BalanceLimit):  # past 2^63 on SQLite the sum used to turn into a float
        ledger.top_up(account, MAX_BALANCE_MICRO_USD, "far past the cap")
    assert isinstance(BalanceLimit("x"), ValueError)
    final = ledger.top_up(account, 5, "exactly the cap")
    assert final.balance_micro_usd == MAX_BALANCE_MICRO_USD and isinstance(final.balance_micro_usd, int)
    assert [e["kind"] for e in ledger.recent_entries(account)] == ["topup", "topup"]
    assert ledger.check() == []
    with pytest.raises(UnknownAccount):
        ledger.top_up("acct_missing", 5, "x")


def test_a_reset_of_a_keys_spend_is_caught(ledger: SqlLedger) -> None:
    account = _funded(ledger, 10_000)
    _capped_spend(ledger, account)
    _sql(ledger, "UPDATE key_spend SET spent_micro_usd = 0 WHERE key_id = 'key_capped'")
    drifts = ledger.check()
    assert [(d.scope, d.account_id, d.field.split(" ")[0], d.stored, d.expected) for d in drifts] == [
        ("key", "key_capped", "spent_micro_usd", 0, 500)]
    assert drifts[0].describe().startswith("key key_capped spent_micro_usd (period ")
    _sql(ledger, "DELETE FROM key_spend WHERE key_id = 'key_capped'")
    assert sorted((d.field.split(" ")[0], d.stored, d.expected) for d in ledger.check()) == [
        ("reserved_micro_usd", 0, 100), ("spent_micro_usd", 0, 500)]


def test_a_deleted_account_row_is_caught(ledger: SqlLedger) -> None:
    kept = _funded(ledger, 10)
    gone = _funded(ledger, 10)
    ledger.reserve(request_id="r1", account_id=gone, key_id="k", amount=3, cap=None)
    _sql(ledger, "DELETE FROM accounts WHERE id = :id", id=gone)
    drifts = ledger.check()
    assert [(d.account_id, d.field) for d in drifts] == [(gone, "account_row")]
    assert drifts[0].describe() == f"account {gone} has 2 ledger entries but no account row"
    assert kept not in drifts[0].describe()


def test_entries_of_an_unknown_kind_are_caught(ledger: SqlLedger) -> None:
    account = _funded(ledger, 10)
    _sql(ledger, "INSERT INTO ledger_entries (account_id, kind, amount_micro_usd, created_at) "
                 "SELECT account_id, 'refund', 10, created_at FROM ledger_entries WHERE account_id = :id", id=account)
    drifts = ledger.check()
    assert [(d.account_id, d.field, d.stored) for d in drifts] == [(account, "unknown_kind:refund", 1)]
    assert drifts[0].describe() == f"account {account} has 1 ledger entries of unknown kind 'refund'"
