"""The ledger on SQLite and Postgres: atomic reservations, exactly-once closing, sweeper, parity check."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.credits.ledger import InsufficientCredit, KeyCap, SqlLedger, UnknownAccount
from tests.support import fresh_store


@pytest.fixture()
def ledger(store_url: str) -> SqlLedger:
    return SqlLedger(fresh_store(store_url, "ledger_entries", "reservations", "key_spend", "accounts"))


def _funded(ledger: SqlLedger, amount: int) -> str:
    account = ledger.create_account("t")
    ledger.top_up(account.id, amount, "test")
    return account.id


def test_reserve_settle_release(ledger: SqlLedger) -> None:
    account = _funded(ledger, 1000)
    assert ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=300, cap=None) == 700
    assert ledger.settle("r1", 120) == 880
    assert ledger.settle("r1", 120) is None  # closes exactly once
    ledger.reserve(request_id="r2", account_id=account, key_id="k", amount=500, cap=None)
    ledger.release("r2", "upstream_error")
    state = ledger.get_account(account)
    assert state is not None and (state.balance_micro_usd, state.reserved_micro_usd) == (880, 0)
    kinds = [entry["kind"] for entry in ledger.recent_entries(account)]
    assert kinds == ["release", "reserve", "release", "settle", "reserve", "topup"]
    assert ledger.check() == []


def test_insufficient_credit_writes_nothing(ledger: SqlLedger) -> None:
    account = _funded(ledger, 100)
    ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=60, cap=None)
    with pytest.raises(InsufficientCredit):
        ledger.reserve(request_id="r2", account_id=account, key_id="k", amount=41, cap=None)
    assert ledger.reserve(request_id="r3", account_id=account, key_id="k", amount=40, cap=None) == 0
    assert ledger.open_reservations() == 2
    assert ledger.check() == []


def test_charge_is_capped_at_the_reservation(ledger: SqlLedger) -> None:
    account = _funded(ledger, 100)
    ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=10, cap=None)
    assert ledger.settle("r1", 50) == 90
    assert ledger.check() == []


def test_key_cap_per_period(ledger: SqlLedger) -> None:
    account = _funded(ledger, 10_000)
    cap = KeyCap(amount_micro_usd=100, period="daily")
    ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=80, cap=cap)
    with pytest.raises(InsufficientCredit) as caught:
        ledger.reserve(request_id="r2", account_id=account, key_id="k", amount=30, cap=cap)
    assert caught.value.scope == "key_cap"
    ledger.settle("r1", 50)  # 50 spent, cap has 50 left
    ledger.reserve(request_id="r3", account_id=account, key_id="k", amount=50, cap=cap)
    ledger.reserve(request_id="r4", account_id=account, key_id="other", amount=90, cap=cap)  # caps are per key
    assert ledger.check() == []
    state = ledger.get_account(account)
    assert state is not None and state.reserved_micro_usd == 140


def test_sweeper_expires_only_stale_reservations(ledger: SqlLedger) -> None:
    account = _funded(ledger, 1000)
    ledger.reserve(request_id="old", account_id=account, key_id="k", amount=100, cap=None)
    assert ledger.sweep(timedelta(hours=1)) == 0
    assert ledger.sweep(timedelta(seconds=0)) == 1
    assert ledger.settle("old", 100) is None  # a late settlement cannot charge an expired reservation
    state = ledger.get_account(account)
    assert state is not None and (state.balance_micro_usd, state.reserved_micro_usd) == (1000, 0)
    assert ledger.recent_entries(account)[0]["kind"] == "expire"
    assert ledger.check() == []


def test_check_names_the_drifting_account(ledger: SqlLedger) -> None:
    good = _funded(ledger, 10)
    bad = _funded(ledger, 10)
    with ledger._engine.begin() as conn:  # tamper behind the ledger's back
        conn.execute(sa.text("UPDATE accounts SET balance_micro_usd = 11 WHERE id = :id"), {"id": bad})
    drifts = ledger.check()
    assert [(d.account_id, d.field, d.stored, d.expected) for d in drifts] == [(bad, "balance_micro_usd", 11, 10)]
    assert good not in {d.account_id for d in drifts}


def test_unknown_account(ledger: SqlLedger) -> None:
    with pytest.raises(UnknownAccount):
        ledger.top_up("acct_missing", 5, "x")
    with pytest.raises(InsufficientCredit):
        ledger.reserve(request_id="r", account_id="acct_missing", key_id="k", amount=1, cap=None)


def test_concurrent_reservations_never_overspend(ledger: SqlLedger) -> None:
    account = _funded(ledger, 100)
    granted: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for attempt in range(10):
            request_id = f"c{index}-{attempt}"
            try:
                ledger.reserve(request_id=request_id, account_id=account, key_id="k", amount=7, cap=None)
            except InsufficientCredit:
                continue
            with lock:
                granted.append(request_id)
            ledger.settle(request_id, 7)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 80 attempts of 7 against 100: exactly 14 fit, whatever the interleaving.
    assert len(granted) == 14
    state = ledger.get_account(account)
    assert state is not None and (state.balance_micro_usd, state.reserved_micro_usd) == (2, 0)
    assert ledger.check() == []
