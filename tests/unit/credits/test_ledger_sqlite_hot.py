"""The SQLite request path: one statement per transaction, with the same rows as the portable path."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.credits.ledger import InsufficientCredit, KeyCap, LedgerUnavailable, SqlLedger
from gateway.store.engine import open_store


def _ledger(path: Path, *, hot: bool) -> SqlLedger:
    ledger = SqlLedger(open_store(f"sqlite:///{path}"))
    assert ledger._hot is not None  # a SQLite file always gets the hot path
    if not hot:
        ledger._hot = None  # the portable path, for comparison
    return ledger


def _script(ledger: SqlLedger) -> str:
    """The same sequence on either path: grants, a refusal, a capped charge, a release, an expiry, a key cap's close,
    a second close that must do nothing."""
    account = ledger.create_account("t").id
    ledger.top_up(account, 1000, "test")
    assert ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=300, cap=None) == 700
    assert ledger.settle("r1", 120) == 880
    assert ledger.settle("r1", 120) is None
    with pytest.raises(InsufficientCredit) as caught:
        ledger.reserve(request_id="r2", account_id=account, key_id="k", amount=881, cap=None)
    assert (caught.value.scope, caught.value.needed, caught.value.available) == ("account", 881, 880)
    ledger.reserve(request_id="r3", account_id=account, key_id="k", amount=10, cap=None)
    assert ledger.settle("r3", 50) == 870  # capped at the reservation
    ledger.reserve(request_id="r4", account_id=account, key_id="k", amount=40, cap=None)
    ledger.release("r4", "upstream_error")
    ledger.reserve(request_id="r5", account_id=account, key_id="k2", amount=60, cap=KeyCap(100, "daily"))
    assert ledger.settle("r5", 25) == 845
    ledger.reserve(request_id="r6", account_id=account, key_id="k", amount=5, cap=None)
    assert ledger.sweep(timedelta(seconds=0)) == 1
    assert ledger.check() == []
    return account


def _rows(ledger: SqlLedger) -> dict[str, Any]:
    with ledger.engine.connect() as conn:
        return {
            "accounts": conn.execute(sa.text(
                "SELECT name, balance_micro_usd, reserved_micro_usd FROM accounts")).all(),
            "reservations": conn.execute(sa.text(
                "SELECT request_id, key_id, period, amount_micro_usd, state, typeof(created_at), "
                "typeof(closed_at), length(created_at) FROM reservations ORDER BY request_id")).all(),
            "entries": conn.execute(sa.text(
                "SELECT key_id, request_id, kind, amount_micro_usd, reason, typeof(created_at), length(created_at) "
                "FROM ledger_entries ORDER BY id")).all(),
            "key_spend": conn.execute(sa.text(
                "SELECT key_id, spent_micro_usd, reserved_micro_usd FROM key_spend")).all(),
        }


def test_the_hot_path_writes_what_the_portable_path_writes(tmp_path: Path) -> None:
    hot, portable = _ledger(tmp_path / "hot.db", hot=True), _ledger(tmp_path / "portable.db", hot=False)
    account = _script(hot)
    _script(portable)
    assert _rows(hot) == _rows(portable)
    # Timestamps written by the hot path read back through SQLAlchemy as the portable ones do.
    assert all(entry["created_at"] for entry in hot.recent_entries(account))


def test_one_statement_per_reservation_and_per_settlement(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "hot.db", hot=True)
    account = ledger.create_account("t").id
    ledger.top_up(account, 1000, "test")
    ledger.reserve(request_id="warm", account_id=account, key_id="k", amount=1, cap=None)  # opens the connection
    assert ledger._hot is not None and ledger._hot._conn is not None
    top_level: list[str] = []
    real = ledger._hot._conn

    class Counting:  # every statement the ledger hands SQLite goes through execute()
        def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
            top_level.append(sql)
            return real.execute(sql, params)

    ledger._hot._conn = Counting()  # type: ignore[assignment]
    through_engine: list[str] = []
    sa.event.listen(ledger.engine, "before_cursor_execute", lambda *args: through_engine.append(args[2]))
    ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=300, cap=None)
    assert [s.split()[2] for s in top_level] == ["ledger_reserve"]
    ledger.settle("r1", 120)
    assert [s.split()[2] for s in top_level] == ["ledger_reserve", "ledger_close"]
    assert through_engine == []


def test_a_store_failure_is_unavailable_not_a_refusal(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "hot.db", hot=True)
    account = ledger.create_account("t").id
    ledger.top_up(account, 1000, "test")
    ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=1, cap=None)
    # The same request id again breaks the reservations' primary key: a store failure (503), nothing written.
    with pytest.raises(LedgerUnavailable):
        ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=1, cap=None)
    assert ledger.open_reservations() == 1 and ledger.check() == []


def test_the_schema_file_gets_nothing_of_the_hot_path(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "hot.db", hot=True)
    account = ledger.create_account("t").id
    ledger.top_up(account, 10, "test")
    ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=1, cap=None)
    other = sqlite3.connect(tmp_path / "hot.db")
    names = {row[0] for row in other.execute("SELECT name FROM sqlite_schema")}
    other.close()
    assert not {"ledger_reserve", "ledger_close", "ledger_closing", "ledger_reserve_do", "ledger_close_do"} & names


def test_each_statement_commits_before_it_returns(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "hot.db", hot=True)
    account = ledger.create_account("t").id
    ledger.top_up(account, 1000, "test")
    ledger.reserve(request_id="r1", account_id=account, key_id="k", amount=300, cap=None)
    assert ledger._hot is not None and ledger._hot._conn is not None
    assert not ledger._hot._conn.in_transaction  # the write lock is not held between requests
    # Another connection can write at once (no busy wait behind a statement left half-read).
    other = sqlite3.connect(tmp_path / "hot.db", timeout=0)
    other.execute("BEGIN IMMEDIATE")
    other.rollback()
    ledger.settle("r1", 100)
    assert not ledger._hot._conn.in_transaction
    other.execute("BEGIN IMMEDIATE")
    other.rollback()
    other.close()


def test_a_forked_process_opens_its_own_connection(tmp_path: Path) -> None:
    import os

    ledger = _ledger(tmp_path / "hot.db", hot=True)
    account = ledger.create_account("t").id
    ledger.top_up(account, 1000, "test")
    ledger.reserve(request_id="parent", account_id=account, key_id="k", amount=1, cap=None)
    assert ledger._hot is not None
    parents = ledger._hot._conn
    ledger.engine.dispose(close=False)  # as `gateway serve --workers` drops the inherited pool
    pid = os.fork()
    if pid == 0:  # the child: its first write opens a connection of its own
        code = 1
        try:
            ledger.reserve(request_id="child", account_id=account, key_id="k", amount=1, cap=None)
            code = 0 if ledger._hot._conn is not parents else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ledger.open_reservations() == 2 and ledger.check() == []
