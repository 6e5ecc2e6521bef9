"""The ledger's request path on a SQLite file: one statement per transaction, on a connection of its own.

Under load the ledger's cost was its number of calls into SQLite, not its SQL: each call releases the GIL, and every
release on the ledger thread is a hand-off with the event loop (docs/benchmarks.md). Here a reservation is one
``INSERT INTO ledger_reserve … RETURNING`` and a close (settle, release, expire) one ``INSERT INTO ledger_close …
RETURNING``, each run in autocommit: SQLite runs a statement, its triggers included, as one write transaction, so
each is atomic on its own, like the Postgres path's data-modifying CTEs. The two targets are TEMP views whose
INSTEAD OF triggers do the work, with the same effects and the same ledger entries, in the same order, as the
portable path in :mod:`gateway.credits.ledger`:

* reserve: refuse (``RAISE(ABORT)``, nothing written) unless ``balance − reserved >= amount``; add to ``reserved``;
  the reservation row; a ``reserve`` entry. The statement takes the write lock before it reads (SQLite begins a write
  transaction at the start of any statement that writes), so no other writer moves the balance between the check and
  the update.
* close: only a reservation still ``open`` is closed (a second closer finds none and writes nothing); the charge is
  capped at the reservation; ``settle`` then ``release``/``expire`` entries; the key cap's spend when it has a period.

The views, triggers and the one-row scratch table live in the connection's TEMP schema: nothing is added to the
database file, other connections (the CLI, the sweeper's portable reads, an older process) never see them, and a
migration is not needed. The connection is the ledger's alone and serialised by a lock; the Python ``sqlite3``
module's statement cache keeps both statements prepared.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from gateway.store.engine import sqlite_pragmas

# The message of the reservation trigger's refusal (written out in the trigger below); anything else raised by the
# statement is a store failure.
REFUSED = "insufficient credit"

_SCHEMA = (
    ("CREATE TEMP VIEW ledger_reserve (request_id, account_id, key_id, amount, at) "
    "AS SELECT NULL, NULL, NULL, NULL, NULL"),
    """CREATE TEMP TRIGGER ledger_reserve_do INSTEAD OF INSERT ON ledger_reserve BEGIN
        SELECT RAISE(ABORT, 'insufficient credit') WHERE NOT EXISTS (
            SELECT 1 FROM accounts WHERE id = NEW.account_id
            AND balance_micro_usd - reserved_micro_usd >= NEW.amount);
        UPDATE accounts SET reserved_micro_usd = reserved_micro_usd + NEW.amount WHERE id = NEW.account_id;
        INSERT INTO reservations (request_id, account_id, key_id, period, amount_micro_usd, state, created_at)
            VALUES (NEW.request_id, NEW.account_id, NEW.key_id, '', NEW.amount, 'open', NEW.at);
        INSERT INTO ledger_entries (account_id, key_id, request_id, kind, amount_micro_usd, reason, created_at)
            VALUES (NEW.account_id, NEW.key_id, NEW.request_id, 'reserve', NEW.amount, NULL, NEW.at);
    END""",
    ("CREATE TEMP TABLE ledger_closing (request_id TEXT, account_id TEXT, key_id TEXT, period TEXT, "
    "reserved INTEGER, charge INTEGER)"),
    ("CREATE TEMP VIEW ledger_close (request_id, state, charge, rest_kind, reason, at) "
    "AS SELECT NULL, NULL, NULL, NULL, NULL, NULL"),
    """CREATE TEMP TRIGGER ledger_close_do INSTEAD OF INSERT ON ledger_close BEGIN
        DELETE FROM ledger_closing;
        INSERT INTO ledger_closing (request_id, account_id, key_id, period, reserved, charge)
            SELECT request_id, account_id, key_id, period, amount_micro_usd, MIN(NEW.charge, amount_micro_usd)
            FROM reservations WHERE request_id = NEW.request_id AND state = 'open';
        UPDATE reservations SET state = NEW.state, closed_at = NEW.at
            WHERE request_id = NEW.request_id AND state = 'open';
        UPDATE accounts SET balance_micro_usd = balance_micro_usd - (SELECT charge FROM ledger_closing),
                            reserved_micro_usd = reserved_micro_usd - (SELECT reserved FROM ledger_closing)
            WHERE id = (SELECT account_id FROM ledger_closing);
        UPDATE key_spend SET spent_micro_usd = spent_micro_usd + (SELECT charge FROM ledger_closing),
                             reserved_micro_usd = reserved_micro_usd - (SELECT reserved FROM ledger_closing)
            WHERE key_id = (SELECT key_id FROM ledger_closing WHERE period <> '')
            AND period = (SELECT period FROM ledger_closing);
        INSERT INTO ledger_entries (account_id, key_id, request_id, kind, amount_micro_usd, reason, created_at)
            SELECT account_id, key_id, request_id, 'settle', charge, NULL, NEW.at FROM ledger_closing
            WHERE charge > 0;
        INSERT INTO ledger_entries (account_id, key_id, request_id, kind, amount_micro_usd, reason, created_at)
            SELECT account_id, key_id, request_id, NEW.rest_kind, reserved - charge, NEW.reason, NEW.at
            FROM ledger_closing WHERE reserved > charge;
    END""",
)

RESERVE = ("INSERT INTO ledger_reserve (request_id, account_id, key_id, amount, at) VALUES (?, ?, ?, ?, ?) "
           "RETURNING (SELECT balance_micro_usd - reserved_micro_usd FROM accounts WHERE id = account_id)")
CLOSE = ("INSERT INTO ledger_close (request_id, state, charge, rest_kind, reason, at) VALUES (?, ?, ?, ?, ?, ?) "
         "RETURNING (SELECT a.balance_micro_usd - a.reserved_micro_usd FROM accounts a "
         "JOIN ledger_closing c ON a.id = c.account_id), (SELECT charge FROM ledger_closing)")


class SqliteHotPath:
    """Reserve and close on a SQLite file, one statement each. Raises ``sqlite3.Error`` on a store failure and
    ``sqlite3.IntegrityError`` with the message :data:`REFUSED` when the account cannot cover a reservation."""

    def __init__(self, engine: sa.Engine, database: str) -> None:
        self._database = database
        # The DateTime columns as SQLAlchemy stores them on SQLite, so rows read back through the engine are the same.
        self._at = sa.DateTime(timezone=True).dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def _connection(self) -> sqlite3.Connection:
        # A SQLite connection must not cross a fork (`gateway serve --workers` forks after the boot): a process opens
        # its own the first time it writes, and never uses one its parent opened.
        if self._conn is None or self._pid != os.getpid():
            # Autocommit (isolation_level=None): each statement is its own transaction. Used by one thread at a time,
            # under the lock, though not always the same thread.
            conn = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
            sqlite_pragmas(conn, None)
            for statement in _SCHEMA:
                conn.execute(statement)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _stamp(self, at: datetime) -> Any:
        return self._at(at) if self._at is not None else at

    def reserve(self, request_id: str, account_id: str, key_id: str, amount: int, at: datetime) -> int:
        """Returns the account's available credit after the reservation."""
        with self._lock:
            # fetchall, not fetchone: the statement (and with it the write transaction) ends only once its
            # RETURNING rows are read to the end; a half-read cursor would keep the write lock.
            (row,) = self._connection().execute(RESERVE, (request_id, account_id, key_id, amount,
                                                          self._stamp(at))).fetchall()
        return int(row[0])

    def close(self, request_id: str, state: str, charge: int, rest_kind: str, reason: str | None,
              at: datetime) -> tuple[int, int] | None:
        """Close the reservation if it is open: (available credit after, the charge applied), else None."""
        with self._lock:
            (row,) = self._connection().execute(CLOSE, (request_id, state, charge, rest_kind, reason,
                                                        self._stamp(at))).fetchall()  # to the end, as above
        if row[0] is None:
            return None
        return int(row[0]), int(row[1])
