"""The ledger: accounts, reservations and append-only entries, in integer micro-USD.

Invariants (``gateway ledger check`` verifies them for every account and key)::

    balance  == Σ topup − Σ settle
    reserved == Σ reserve − Σ settle − Σ release − Σ expire == Σ amount of open reservations
    0 <= reserved <= balance <= MAX_BALANCE_MICRO_USD (10^15, enforced by top_up)
    key_spend.spent    == Σ settle of the key's reservations in that cap period
    key_spend.reserved == Σ amount of the key's open reservations in that cap period
    every entry's kind is one of ENTRY_KINDS, and its account row exists

Every state change is one transaction. Reservation is a single conditional UPDATE (``... WHERE balance − reserved >=
amount``), so two concurrent requests can never both take the last credit, on SQLite (one writer at a time) or
Postgres (the row lock re-checks the condition). A reservation closes exactly once: settle, release and expire all
start with ``UPDATE reservations SET state = … WHERE state = 'open'`` and do nothing if another closer won.

The module is longer than most because it carries the hot path twice, as portable statements and as
single-statement CTEs (Postgres), with the same effects; keeping both next to each other keeps them in step. On a
SQLite file the request path's reservation (without a key cap) and every close run as one statement each on a
connection of the ledger's own (:mod:`gateway.credits.sqlite_hot`, the same effects again; a test compares the rows
both paths write); the portable statements remain for key-cap reservations, refusals' exact figures and in-memory
SQLite.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sqlite3
import uuid
from datetime import datetime, timedelta
from typing import Literal, Protocol, TypeGuard, get_args

import sqlalchemy as sa

from gateway.clock import SYSTEM_CLOCK, as_utc
from gateway.credits.sqlite_hot import REFUSED, SqliteHotPath
from gateway.store.schema import accounts, key_spend, ledger_entries, reservations

log = logging.getLogger("gateway.credits")


class InsufficientCredit(Exception):
    """The account (or the key's cap for this period) cannot cover the reservation.

    ``needed`` is the reservation that was refused and ``available`` what the refusing limit had left, both in
    micro-USD; ``period`` is the key cap's period ("none", "daily" or "monthly") when ``scope`` is "key_cap".
    ``available`` is read after the conditional UPDATE refused, on the same connection: on SQLite in the same write
    transaction (exact), on Postgres in a statement of its own (best effort: a concurrent request may have moved it
    since). It is never negative, and it is the caller's own account or key only.
    """

    def __init__(self, scope: str, *, needed: int = 0, available: int = 0, period: str | None = None) -> None:
        super().__init__(scope)
        self.scope = scope  # "account" or "key_cap"
        self.needed = needed
        self.available = available
        self.period = period


# Account ids as create_account issues them; the admin API and the CLI refuse anything else before a query.
ACCOUNT_ID = re.compile(r"acct_[0-9a-f]{24}")


class LedgerUnavailable(Exception):
    """The ledger's store failed: callers fail closed (503)."""


class UnknownAccount(Exception):
    pass


# The largest top-up and the largest balance the ledger keeps: 10^15 micro-USD (1e9 USD). Far below 2^63, so no sum of
# balances or entries the gateway writes can overflow a BIGINT (Postgres) or turn into a float (SQLite).
MAX_BALANCE_MICRO_USD = 10**15

# Every kind of ledger entry the gateway writes; ``check`` reports any other.
ENTRY_KINDS = ("topup", "reserve", "settle", "release", "expire")


class BalanceLimit(ValueError):
    """A top-up larger than, or leaving the balance above, ``MAX_BALANCE_MICRO_USD``. Nothing is written."""


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    balance_micro_usd: int
    reserved_micro_usd: int
    created_at: datetime

    @property
    def available_micro_usd(self) -> int:
        return self.balance_micro_usd - self.reserved_micro_usd

    def public(self, *, with_created_at: bool = True) -> dict[str, object]:
        """The account as the admin API and the CLI show it (the CLI has always left ``created_at`` out)."""
        view: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "balance_micro_usd": self.balance_micro_usd,
            "reserved_micro_usd": self.reserved_micro_usd,
            "available_micro_usd": self.available_micro_usd,
        }
        if with_created_at:
            view["created_at"] = self.created_at.isoformat()
        return view


def account_page(page: list[Account], limit: int, *, with_created_at: bool = True) -> dict[str, object]:
    """A page of :meth:`SqlLedger.list_accounts` as the admin API and the CLI show it. ``next_after_id`` is the cursor
    for the next page: the last id of a full page, None after a short one (the last)."""
    return {"object": "list", "data": [account.public(with_created_at=with_created_at) for account in page],
            "next_after_id": page[-1].id if page and len(page) == limit else None}


# How often a key's spend cap starts over: never, each UTC day, or each UTC month. A Literal rather than an enum so
# the admin API's schema and every answer show the plain text.
SpendCapPeriod = Literal["none", "daily", "monthly"]
SPEND_CAP_PERIODS: tuple[SpendCapPeriod, ...] = get_args(SpendCapPeriod)


def is_spend_cap_period(value: str) -> TypeGuard[SpendCapPeriod]:
    return value in SPEND_CAP_PERIODS


def spend_cap_period_label(period: str, now: datetime) -> str:
    """The period ``now`` (UTC) falls in, as key_spend rows name it: ``2026-11-30`` (daily), ``2026-11`` (monthly),
    else ``all``."""
    if period == "daily":
        return now.strftime("%Y-%m-%d")
    if period == "monthly":
        return now.strftime("%Y-%m")
    return "all"


@dataclasses.dataclass(frozen=True, slots=True)
class KeyCap:
    amount_micro_usd: int
    period: str  # a SpendCapPeriod

    def period_label(self, now: datetime) -> str:
        return spend_cap_period_label(self.period, now)


@dataclasses.dataclass(frozen=True, slots=True)
class Drift:
    """One disagreement between the stored state and the ledger. ``account_id`` is the key id when ``scope`` is
    "key" (a key's spend for a cap period)."""

    account_id: str
    field: str
    stored: int
    expected: int
    scope: str = "account"

    def describe(self) -> str:
        if self.field == "account_row":
            return f"account {self.account_id} has {self.expected} ledger entries but no account row"
        if self.field.startswith("unknown_kind:"):
            kind = self.field.removeprefix("unknown_kind:")
            return f"account {self.account_id} has {self.stored} ledger entries of unknown kind {kind!r}"
        return f"{self.scope} {self.account_id} {self.field}: stored {self.stored}, ledger says {self.expected}"


class Ledger(Protocol):
    # How many request-path writes the store takes at once: SQLite has one writer (more threads would only queue
    # on its file lock, in sleeps of up to 100 ms each), Postgres many.
    writers: int

    def reserve(self, *, request_id: str, account_id: str, key_id: str, amount: int, cap: KeyCap | None) -> int: ...
    def settle(self, request_id: str, charge: int) -> int | None: ...
    def release(self, request_id: str, reason: str) -> None: ...


def _now() -> datetime:
    return SYSTEM_CLOCK.now()


# The hot path (reserve and close, twice per request) uses fixed, prebuilt statements: the same SQL on SQLite and
# Postgres, no per-call statement construction or cache-key work.
_RESERVE_ACCOUNT = sa.text(
    "UPDATE accounts SET reserved_micro_usd = reserved_micro_usd + :amount "
    "WHERE id = :account_id AND balance_micro_usd - reserved_micro_usd >= :amount "
    "RETURNING balance_micro_usd, reserved_micro_usd")
_RESERVE_CAP = sa.text(
    "UPDATE key_spend SET reserved_micro_usd = reserved_micro_usd + :amount "
    "WHERE key_id = :key_id AND period = :period AND :cap - spent_micro_usd - reserved_micro_usd >= :amount")
# Read only after a reservation was refused, so the refusal can say what was left (never on the granting path).
_ACCOUNT_AVAILABLE = sa.text(
    "SELECT balance_micro_usd - reserved_micro_usd FROM accounts WHERE id = :account_id")
_CAP_USED = sa.text(
    "SELECT spent_micro_usd + reserved_micro_usd FROM key_spend WHERE key_id = :key_id AND period = :period")
_INSERT_RESERVATION = sa.text(
    "INSERT INTO reservations (request_id, account_id, key_id, period, amount_micro_usd, state, created_at) "
    "VALUES (:request_id, :account_id, :key_id, :period, :amount, 'open', :at)").bindparams(
    sa.bindparam("at", type_=sa.DateTime(timezone=True)))
_INSERT_ENTRY = sa.text(
    "INSERT INTO ledger_entries (account_id, key_id, request_id, kind, amount_micro_usd, reason, created_at) "
    "VALUES (:account_id, :key_id, :request_id, :kind, :amount, :reason, :at)").bindparams(
    sa.bindparam("at", type_=sa.DateTime(timezone=True)))
_CLOSE_RESERVATION = sa.text(
    "UPDATE reservations SET state = :state, closed_at = :at WHERE request_id = :request_id AND state = 'open' "
    "RETURNING account_id, key_id, period, amount_micro_usd").bindparams(
    sa.bindparam("at", type_=sa.DateTime(timezone=True)))
_CLOSE_ACCOUNT = sa.text(
    "UPDATE accounts SET balance_micro_usd = balance_micro_usd - :charge, "
    "reserved_micro_usd = reserved_micro_usd - :reserved WHERE id = :account_id "
    "RETURNING balance_micro_usd, reserved_micro_usd")
_CLOSE_CAP = sa.text(
    "UPDATE key_spend SET spent_micro_usd = spent_micro_usd + :charge, "
    "reserved_micro_usd = reserved_micro_usd - :reserved WHERE key_id = :key_id AND period = :period")


# On Postgres each hot-path transaction is one statement (data-modifying CTEs) run in autocommit: a single statement
# is atomic on its own, and one round trip replaces about seven. Same effects, same ledger entries as the portable path.
_PG_RESERVE = sa.text("""
WITH acc AS (
    UPDATE accounts SET reserved_micro_usd = reserved_micro_usd + :amount
    WHERE id = :account_id AND balance_micro_usd - reserved_micro_usd >= :amount
    RETURNING balance_micro_usd, reserved_micro_usd
), res AS (
    INSERT INTO reservations (request_id, account_id, key_id, period, amount_micro_usd, state, created_at)
    SELECT :request_id, :account_id, :key_id, '', :amount, 'open', :at FROM acc
), entry AS (
    INSERT INTO ledger_entries (account_id, key_id, request_id, kind, amount_micro_usd, reason, created_at)
    SELECT :account_id, :key_id, :request_id, 'reserve', :amount, NULL, :at FROM acc
)
SELECT balance_micro_usd, reserved_micro_usd FROM acc
""").bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True)))
_PG_CLOSE = sa.text("""
WITH res AS (
    UPDATE reservations SET state = :state, closed_at = :at
    WHERE request_id = :request_id AND state = 'open'
    RETURNING account_id, key_id, period, amount_micro_usd
), amt AS (
    SELECT account_id, key_id, period, amount_micro_usd AS reserved,
           LEAST(CAST(:charge AS BIGINT), amount_micro_usd) AS charge
    FROM res
), acc AS (
    UPDATE accounts a SET balance_micro_usd = a.balance_micro_usd - amt.charge,
                          reserved_micro_usd = a.reserved_micro_usd - amt.reserved
    FROM amt WHERE a.id = amt.account_id
    RETURNING a.balance_micro_usd, a.reserved_micro_usd
), cap AS (
    UPDATE key_spend k SET spent_micro_usd = k.spent_micro_usd + amt.charge,
                           reserved_micro_usd = k.reserved_micro_usd - amt.reserved
    FROM amt WHERE amt.period <> '' AND k.key_id = amt.key_id AND k.period = amt.period
), entries AS (
    INSERT INTO ledger_entries (account_id, key_id, request_id, kind, amount_micro_usd, reason, created_at)
    SELECT account_id, key_id, :request_id, kind, amount, reason, :at FROM (
        SELECT account_id, key_id, 'settle' AS kind, charge AS amount, CAST(NULL AS VARCHAR) AS reason, 1 AS ord
        FROM amt WHERE charge > 0
        UNION ALL
        SELECT account_id, key_id, :rest_kind, reserved - charge, :reason, 2 FROM amt WHERE reserved - charge > 0
    ) AS rows ORDER BY ord
)
SELECT acc.balance_micro_usd, acc.reserved_micro_usd, amt.reserved, amt.charge FROM acc, amt
""").bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True)))


def _account_available(conn: sa.Connection, account_id: str) -> int:
    """What the account has left, for a refusal's message (0 for an account that does not exist)."""
    left = conn.execute(_ACCOUNT_AVAILABLE, {"account_id": account_id}).scalar()
    return max(int(left or 0), 0)


def _account(m: sa.RowMapping) -> Account:
    return Account(m["id"], m["name"], m["balance_micro_usd"], m["reserved_micro_usd"], as_utc(m["created_at"]))


def _entry(conn: sa.Connection, *, account_id: str, kind: str, amount: int, key_id: str | None = None,
           request_id: str | None = None, reason: str | None = None, at: datetime) -> None:
    conn.execute(_INSERT_ENTRY, {"account_id": account_id, "key_id": key_id, "request_id": request_id, "kind": kind,
                                 "amount": amount, "reason": reason, "at": at})


class SqlLedger:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self.writers = 8 if self._postgres else 1
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgres else engine
        # On a SQLite file the request path is one statement per transaction on a connection of its own
        # (gateway.credits.sqlite_hot); an in-memory database has no second connection to open, and keeps the
        # portable path.
        database = engine.url.database
        self._hot = SqliteHotPath(engine, database) \
            if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:") else None

    @property
    def engine(self) -> sa.Engine:
        """The store the ledger writes to (the auditor's tools and tests read it directly)."""
        return self._engine

    # --- accounts -----------------------------------------------------------------------------------------------

    def create_account(self, name: str) -> Account:
        account = Account("acct_" + uuid.uuid4().hex[:24], name, 0, 0, _now())
        with self._engine.begin() as conn:
            conn.execute(accounts.insert().values(
                id=account.id, name=name, balance_micro_usd=0, reserved_micro_usd=0, created_at=account.created_at))
        return account

    def get_account(self, account_id: str) -> Account | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(accounts).where(accounts.c.id == account_id)).first()
        return None if row is None else _account(row._mapping)

    def list_accounts(self, *, limit: int = 100, after_id: str | None = None) -> list[Account]:
        """Up to ``limit`` accounts in id order, starting after ``after_id`` (the last id of the previous page).

        Ids are random, so the order is not creation order; it is stable, and paging by the primary key costs one
        index range per page. An account created while an operator pages may land before the cursor and be missed.
        """
        query = sa.select(accounts).order_by(accounts.c.id).limit(limit)
        if after_id is not None:
            query = query.where(accounts.c.id > after_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_account(row._mapping) for row in rows]

    def top_up(self, account_id: str, amount: int, reason: str) -> Account:
        if amount <= 0:
            raise ValueError("amount must be a positive number of micro-USD")
        if amount > MAX_BALANCE_MICRO_USD:
            raise BalanceLimit(f"a top-up is at most {MAX_BALANCE_MICRO_USD} micro-USD")
        at = _now()
        with self._engine.begin() as conn:
            # The bound is written as balance <= MAX - amount so the database never computes a sum past it.
            updated = conn.execute(accounts.update().where(
                accounts.c.id == account_id, accounts.c.balance_micro_usd <= MAX_BALANCE_MICRO_USD - amount)
                .values(balance_micro_usd=accounts.c.balance_micro_usd + amount)).rowcount
            if updated != 1:
                if conn.execute(sa.select(accounts.c.id).where(accounts.c.id == account_id)).first() is None:
                    raise UnknownAccount(account_id)
                raise BalanceLimit(f"a balance is at most {MAX_BALANCE_MICRO_USD} micro-USD")
            _entry(conn, account_id=account_id, kind="topup", amount=amount, reason=reason[:200], at=at)
        account = self.get_account(account_id)
        if account is None:
            raise UnknownAccount(account_id)
        return account

    def recent_entries(self, account_id: str, limit: int = 50) -> list[dict[str, object]]:
        query = (sa.select(ledger_entries).where(ledger_entries.c.account_id == account_id)
                 .order_by(ledger_entries.c.id.desc()).limit(limit))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {"kind": r.kind, "amount_micro_usd": r.amount_micro_usd, "request_id": r.request_id, "key_id": r.key_id,
             "reason": r.reason, "created_at": as_utc(r.created_at).isoformat()}
            for r in rows
        ]

    # --- the request path ---------------------------------------------------------------------------------------

    def reserve(self, *, request_id: str, account_id: str, key_id: str, amount: int, cap: KeyCap | None) -> int:
        """Reserve ``amount`` for this request; returns the account's available credit after it.

        Raises :class:`InsufficientCredit` (nothing written) or :class:`LedgerUnavailable`.
        """
        if amount <= 0:
            raise ValueError("a reservation must be positive")
        at = _now()
        period = cap.period_label(at) if cap else ""
        if self._postgres and cap is None:
            return self._pg_reserve(request_id, account_id, key_id, amount, at)
        if self._hot is not None and cap is None:
            try:
                return self._hot.reserve(request_id, account_id, key_id, amount, at)
            except sqlite3.IntegrityError as refused:
                if str(refused) != REFUSED:
                    log.exception("ledger reserve failed", extra={"request_id": request_id})
                    raise LedgerUnavailable() from None
                # Refused, nothing written. The portable path below says exactly what was left, read in its own
                # write transaction (or grants the reservation, should credit have been freed since).
            except sqlite3.Error:
                log.exception("ledger reserve failed", extra={"request_id": request_id})
                raise LedgerUnavailable() from None
        try:
            with self._engine.begin() as conn:
                taken = conn.execute(_RESERVE_ACCOUNT, {"amount": amount, "account_id": account_id}).first()
                if taken is None:
                    raise InsufficientCredit("account", needed=amount,
                                             available=_account_available(conn, account_id))
                if cap is not None:
                    self._take_cap(conn, key_id, period, amount, cap)
                conn.execute(_INSERT_RESERVATION, {"request_id": request_id, "account_id": account_id,
                                                   "key_id": key_id, "period": period, "amount": amount, "at": at})
                _entry(conn, account_id=account_id, kind="reserve", amount=amount, key_id=key_id,
                       request_id=request_id, at=at)
        except InsufficientCredit:
            raise
        except sa.exc.SQLAlchemyError:
            log.exception("ledger reserve failed", extra={"request_id": request_id})
            raise LedgerUnavailable() from None
        return int(taken.balance_micro_usd - taken.reserved_micro_usd)

    def _pg_reserve(self, request_id: str, account_id: str, key_id: str, amount: int, at: datetime) -> int:
        try:
            with self._autocommit.connect() as conn:
                taken = conn.execute(_PG_RESERVE, {"amount": amount, "account_id": account_id, "key_id": key_id,
                                                   "request_id": request_id, "at": at}).first()
                # Refused: what was left, read by a second statement after the refusal (see InsufficientCredit).
                left = _account_available(conn, account_id) if taken is None else 0
        except sa.exc.SQLAlchemyError:
            log.exception("ledger reserve failed", extra={"request_id": request_id})
            raise LedgerUnavailable() from None
        if taken is None:
            raise InsufficientCredit("account", needed=amount, available=left)
        return int(taken.balance_micro_usd - taken.reserved_micro_usd)

    def _take_cap(self, conn: sa.Connection, key_id: str, period: str, amount: int, cap: KeyCap) -> None:
        exists = conn.execute(sa.select(key_spend.c.key_id).where(
            key_spend.c.key_id == key_id, key_spend.c.period == period)).first()
        if exists is None:
            try:
                with conn.begin_nested():
                    conn.execute(key_spend.insert().values(key_id=key_id, period=period, spent_micro_usd=0,
                                                           reserved_micro_usd=0))
            except sa.exc.IntegrityError:
                pass  # another request created the row first
        taken = conn.execute(_RESERVE_CAP, {"amount": amount, "key_id": key_id, "period": period,
                                            "cap": cap.amount_micro_usd}).rowcount
        if taken != 1:
            used = conn.execute(_CAP_USED, {"key_id": key_id, "period": period}).scalar()
            raise InsufficientCredit("key_cap", needed=amount, period=cap.period,
                                     available=max(cap.amount_micro_usd - int(used or 0), 0))

    def _close(self, request_id: str, state: str, charge: int, reason: str | None) -> int | None:
        """Close an open reservation, charging ``charge`` (capped at the reservation). Returns available credit
        after, or None if the reservation was not open (already closed by someone else)."""
        at = _now()
        if self._postgres:
            return self._pg_close(request_id, state, charge, reason, at)
        if self._hot is not None:
            closed = self._hot.close(request_id, state, charge, "expire" if state == "expired" else "release",
                                     reason, at)
            if closed is None:
                return None
            available, charged = closed
            if charged < charge:
                log.error("charge above reservation", extra={"request_id": request_id, "reason": "charge_capped"})
            return available
        with self._engine.begin() as conn:
            row = conn.execute(_CLOSE_RESERVATION, {"state": state, "at": at, "request_id": request_id}).first()
            if row is None:
                return None
            reserved = int(row.amount_micro_usd)
            if charge > reserved:
                # Should not happen (max_tokens bounds the output and the prompt estimate is an upper bound). Never
                # charge past the reservation: the balance could go negative, and the budget would be overspent.
                log.error("charge above reservation", extra={"request_id": request_id, "reason": "charge_capped"})
                charge = reserved
            left = conn.execute(_CLOSE_ACCOUNT, {"charge": charge, "reserved": reserved,
                                                 "account_id": row.account_id}).first()
            if row.period:
                conn.execute(_CLOSE_CAP, {"charge": charge, "reserved": reserved, "key_id": row.key_id,
                                          "period": row.period})
            common = {"account_id": row.account_id, "key_id": row.key_id, "request_id": request_id, "at": at}
            if charge:
                _entry(conn, kind="settle", amount=charge, **common)
            rest_kind = "expire" if state == "expired" else "release"
            if reserved - charge:
                _entry(conn, kind=rest_kind, amount=reserved - charge, reason=reason, **common)
        return None if left is None else int(left.balance_micro_usd - left.reserved_micro_usd)

    def _pg_close(self, request_id: str, state: str, charge: int, reason: str | None, at: datetime) -> int | None:
        with self._autocommit.connect() as conn:
            row = conn.execute(_PG_CLOSE, {
                "state": state, "at": at, "request_id": request_id, "charge": charge, "reason": reason,
                "rest_kind": "expire" if state == "expired" else "release"}).first()
        if row is None:
            return None
        if row.charge < charge:
            log.error("charge above reservation", extra={"request_id": request_id, "reason": "charge_capped"})
        return int(row.balance_micro_usd - row.reserved_micro_usd)

    def settle(self, request_id: str, charge: int) -> int | None:
        """Charge the real cost and release the rest of the reservation. Returns available credit after."""
        if charge < 0:
            raise ValueError("a charge cannot be negative")
        try:
            return self._close(request_id, "settled", charge, None)
        except (sa.exc.SQLAlchemyError, sqlite3.Error):
            log.exception("ledger settle failed", extra={"request_id": request_id})
            raise LedgerUnavailable() from None

    def release(self, request_id: str, reason: str) -> None:
        """Release the whole reservation (nothing was billed)."""
        try:
            self._close(request_id, "released", 0, reason)
        except (sa.exc.SQLAlchemyError, sqlite3.Error):
            log.exception("ledger release failed", extra={"request_id": request_id})
            raise LedgerUnavailable() from None

    # --- maintenance ------------------------------------------------------------------------------------------

    def sweep(self, older_than: timedelta) -> int:
        """Expire reservations open for longer than ``older_than`` (a process killed mid-request leaves them open).
        Each expiry is a ledger entry. Returns how many were expired."""
        cutoff = _now() - older_than
        with self._engine.connect() as conn:
            stale = conn.execute(sa.select(reservations.c.request_id).where(
                reservations.c.state == "open", reservations.c.created_at <= cutoff)).scalars().all()
        expired = 0
        for request_id in stale:
            if self._close(request_id, "expired", 0, "sweeper") is not None:
                expired += 1
                log.warning("reservation expired", extra={"request_id": request_id, "reason": "sweeper"})
        return expired

    def ping(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def open_reservations(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(reservations)
                                    .where(reservations.c.state == "open")).scalar_one())

    def check(self) -> list[Drift]:
        """Compare every account's stored balance and reservation, and every key's spend per cap period, with what
        the ledger and reservations imply; name entries of an unknown kind and entries whose account row is gone."""
        sums = (sa.select(
            ledger_entries.c.account_id,
            sa.func.coalesce(sa.func.sum(sa.case((ledger_entries.c.kind == "topup", ledger_entries.c.amount_micro_usd),
                                                 else_=0)), 0).label("topups"),
            sa.func.coalesce(sa.func.sum(sa.case((ledger_entries.c.kind == "settle", ledger_entries.c.amount_micro_usd),
                                                 else_=0)), 0).label("settled"),
            sa.func.coalesce(sa.func.sum(sa.case((ledger_entries.c.kind == "reserve", ledger_entries.c.amount_micro_usd),
                                                 else_=0)), 0).label("reserves"),
            sa.func.coalesce(sa.func.sum(sa.case((ledger_entries.c.kind.in_(("release", "expire")),
                                                  ledger_entries.c.amount_micro_usd), else_=0)), 0).label("freed"),
        ).group_by(ledger_entries.c.account_id))
        open_sums = (sa.select(reservations.c.account_id, sa.func.sum(reservations.c.amount_micro_usd).label("open"))
                     .where(reservations.c.state == "open").group_by(reservations.c.account_id))
        unknown_kinds = (sa.select(ledger_entries.c.account_id, ledger_entries.c.kind, sa.func.count().label("n"))
                         .where(ledger_entries.c.kind.not_in(ENTRY_KINDS))
                         .group_by(ledger_entries.c.account_id, ledger_entries.c.kind))
        counts = (sa.select(ledger_entries.c.account_id, sa.func.count().label("n"))
                  .group_by(ledger_entries.c.account_id))
        # A key's spend per cap period, from its settled charges: each settle entry's reservation names the period.
        settled_by_key = (sa.select(reservations.c.key_id, reservations.c.period,
                                    sa.func.sum(ledger_entries.c.amount_micro_usd).label("spent"))
                          .select_from(ledger_entries.join(reservations,
                                                           reservations.c.request_id == ledger_entries.c.request_id))
                          .where(ledger_entries.c.kind == "settle", reservations.c.period != "")
                          .group_by(reservations.c.key_id, reservations.c.period))
        open_by_key = (sa.select(reservations.c.key_id, reservations.c.period,
                                 sa.func.sum(reservations.c.amount_micro_usd).label("open"))
                       .where(reservations.c.state == "open", reservations.c.period != "")
                       .group_by(reservations.c.key_id, reservations.c.period))
        drifts: list[Drift] = []
        with self._engine.begin() as conn:
            # One snapshot, so the sums and the stored balances agree even while traffic runs (SQLite: the read
            # transaction already sees one snapshot in WAL mode).
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            else:
                # pysqlite opens transactions only before writes; open one so the three reads share a snapshot.
                conn.exec_driver_sql("BEGIN")
            ledger = {r.account_id: r for r in conn.execute(sums)}
            open_by = {r.account_id: int(r.open or 0) for r in conn.execute(open_sums)}
            entry_counts = {r.account_id: int(r.n) for r in conn.execute(counts)}
            drifts += [Drift(r.account_id, f"unknown_kind:{r.kind}", int(r.n), 0) for r in conn.execute(unknown_kinds)]
            spent = {(r.key_id, r.period): int(r.spent or 0) for r in conn.execute(settled_by_key)}
            held = {(r.key_id, r.period): int(r.open or 0) for r in conn.execute(open_by_key)}
            stored_spend = {(r.key_id, r.period): r for r in conn.execute(sa.select(key_spend))}
            for key_period in sorted(set(spent) | set(held) | set(stored_spend)):
                row = stored_spend.get(key_period)
                for field_name, expected_value in (("spent_micro_usd", spent.get(key_period, 0)),
                                                   ("reserved_micro_usd", held.get(key_period, 0))):
                    stored_value = int(getattr(row, field_name)) if row is not None else 0
                    if stored_value != expected_value:
                        drifts.append(Drift(key_period[0], f"{field_name} (period {key_period[1]})", stored_value,
                                            expected_value, scope="key"))
            seen: set[str] = set()
            for account in conn.execute(sa.select(accounts)):
                seen.add(account.id)
                sums_row = ledger.get(account.id)
                topups, settled, reserves, freed = (
                    (int(sums_row.topups), int(sums_row.settled), int(sums_row.reserves), int(sums_row.freed))
                    if sums_row else (0, 0, 0, 0))
                expected = {
                    "balance_micro_usd": topups - settled,
                    "reserved_micro_usd": reserves - settled - freed,
                }
                for field_name, value in expected.items():
                    if int(getattr(account, field_name)) != value:
                        drifts.append(Drift(account.id, field_name, int(getattr(account, field_name)), value))
                if int(account.reserved_micro_usd) != open_by.get(account.id, 0):
                    drifts.append(Drift(account.id, "open_reservations", int(account.reserved_micro_usd),
                                        open_by.get(account.id, 0)))
            # Entries (or open reservations) of an account whose row is gone: a deleted account hides its history.
            for orphan in sorted((set(entry_counts) | set(open_by)) - seen):
                drifts.append(Drift(orphan, "account_row", 0, entry_counts.get(orphan, 0)))
        return drifts
