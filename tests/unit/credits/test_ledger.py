"""The ledger on SQLite and Postgres: atomic reservations, exactly-once closing, sweeper, parity check."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.credits.ledger import (
    ACCOUNT_ID,
    InsufficientCredit,
    KeyCap,
    SqlLedger,
    UnknownAccount,
    account_page,
)
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
    with pytest.raises(InsufficientCredit) as caught:
        ledger.reserve(request_id="r2", account_id=account, key_id="k", amount=41, cap=None)
    # The refusal says which limit, what was asked and what that limit had left.
    assert (caught.value.scope, caught.value.needed, caught.value.available) == ("account", 41, 40)
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
    assert (caught.value.scope, caught.value.needed, caught.value.available, caught.value.period) == \
        ("key_cap", 30, 20, "daily")
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
    with ledger.engine.begin() as conn:  # tamper behind the ledger's back
        conn.execute(sa.text("UPDATE accounts SET balance_micro_usd = 11 WHERE id = :id"), {"id": bad})
    drifts = ledger.check()
    assert [(d.account_id, d.field, d.stored, d.expected) for d in drifts] == [(bad, "balance_micro_usd", 11, 10)]
    assert good not in {d.account_id for d in drifts}


def test_unknown_account(ledger: SqlLedger) -> None:
    with pytest.raises(UnknownAccount):
        ledger.top_up("acct_missing", 5, "x")
    with pytest.raises(InsufficientCredit) as caught:
        ledger.reserve(request_id="r", account_id="acct_missing", key_id="k", amount=1, cap=None)
    assert (caught.value.needed, caught.value.available) == (1, 0)


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


def test_the_account_refusal_names_the_account_even_with_a_key_cap(ledger: SqlLedger) -> None:
    account = _funded(ledger, 100)
    with pytest.raises(InsufficientCredit) as caught:
        ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=101,
                       cap=KeyCap(amount_micro_usd=1000, period="monthly"))
    assert (caught.value.scope, caught.value.needed, caught.value.available) == ("account", 101, 100)
    # A cap lowered below what the key already spent leaves nothing, never a negative figure.
    ledger.reserve(request_id="r2", account_id=account, key_id="k", amount=60, cap=KeyCap(1000, "none"))
    ledger.settle("r2", 60)
    with pytest.raises(InsufficientCredit) as lowered:
        ledger.reserve(request_id="r3", account_id=account, key_id="k", amount=1, cap=KeyCap(50, "none"))
    assert (lowered.value.scope, lowered.value.available, lowered.value.period) == ("key_cap", 0, "none")
    assert ledger.check() == []


def test_list_accounts_pages_in_id_order(ledger: SqlLedger) -> None:
    created = sorted(ledger.create_account(f"a{i}").id for i in range(5))
    ledger.top_up(created[1], 7, "t")
    first = ledger.list_accounts(limit=2)
    assert [a.id for a in first] == created[:2] and first[1].balance_micro_usd == 7
    assert account_page(first, 2)["next_after_id"] == created[1]
    second = ledger.list_accounts(limit=2, after_id=created[1])
    assert [a.id for a in second] == created[2:4]
    last = ledger.list_accounts(limit=2, after_id=created[3])
    assert [a.id for a in last] == created[4:]
    page = account_page(last, 2, with_created_at=False)
    assert page["next_after_id"] is None and page["data"] == [last[0].public(with_created_at=False)]
    assert ledger.list_accounts(limit=2, after_id=created[4]) == []
    assert account_page([], 2)["next_after_id"] is None
    assert all(ACCOUNT_ID.fullmatch(account_id) for account_id in created)
