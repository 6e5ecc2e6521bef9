"""An ``expires_at`` means the same instant on SQLite and Postgres, whatever its offset; out-of-range ones are refused.

SQLite keeps date-times as text without an offset, so a key meant to expire in a minute at +14:00 used to live 14
hours longer, and one at -11:00 was expired on arrival. On Postgres '9999-12-31T23:59:59-23:59' was stored as year
10000 and then broke every listing of keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import InvalidExpiry, SqlKeyStore
from gateway.store.engine import open_store
from tests.support import fresh_store

PEPPER = b"p" * 16 + b"e" * 16 + b"pper-for-tests"
EXTREME_OFFSETS = [timedelta(hours=14), timedelta(hours=-11), timedelta(hours=-23, minutes=-59),
                   timedelta(hours=23, minutes=59)]


@pytest.fixture()
def service(store_url: str) -> KeyService:
    return KeyService(SqlKeyStore(fresh_store(store_url, "api_keys")), KeyHasher(PEPPER))


def _issue(service: KeyService, expires_at: datetime) -> tuple[str, str]:
    plaintext, record = service.issue(KeyKind.CUSTOMER, name="tz", account_id="acct_t", models=["m"],
                                      expires_at=expires_at)
    return plaintext, record.id


@pytest.mark.parametrize("offset", EXTREME_OFFSETS, ids=str)
def test_the_stored_instant_is_the_given_instant(service: KeyService, offset: timedelta) -> None:
    expires_at = (datetime.now(UTC) + timedelta(minutes=1)).astimezone(timezone(offset))
    plaintext, key_id = _issue(service, expires_at)
    stored = service.store.get(key_id)
    assert stored is not None and stored.expires_at == expires_at
    assert stored.expires_at is not None and stored.expires_at.utcoffset() == timedelta(0)
    # A minute from now: usable now, and not for a day longer.
    assert service.verify(plaintext, KeyKind.CUSTOMER).key_id == key_id
    assert stored.state(datetime.now(UTC) + timedelta(minutes=2)) == "expired"
    listed = {r.id: r for r in service.store.list()}
    assert listed[key_id].expires_at == expires_at


def test_a_rotation_deadline_is_stored_as_the_same_instant(service: KeyService) -> None:
    plaintext, key_id = _issue(service, datetime.now(UTC) + timedelta(days=1))
    not_after = (datetime.now(UTC) + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=-11)))
    service.store.retire(key_id, successor="key_next", not_after=not_after)
    stored = service.store.get(key_id)
    assert stored is not None and stored.expires_at == not_after
    assert service.verify(plaintext, KeyKind.CUSTOMER).key_id == key_id


@pytest.mark.parametrize("value", [
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59))),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(9000, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=14))),
    datetime(1999, 12, 31, tzinfo=UTC),
    datetime(2099, 1, 1),  # naive
], ids=["year-end-minus-23:59", "year-9999", "year-9000", "year-1-plus-14", "before-2001", "naive"])
def test_out_of_range_expiry_is_refused_and_listing_still_works(service: KeyService, value: datetime) -> None:
    kept, kept_id = _issue(service, datetime(8999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=14))))
    with pytest.raises(ValueError):
        _issue(service, value)
    with pytest.raises(InvalidExpiry):
        service.store.insert(kind="ck", name="x", digest="d" * 64, models=["m"], expires_at=value)
    with pytest.raises(InvalidExpiry):
        service.store.retire(kept_id, successor="key_next", not_after=value)
    assert [r.id for r in service.store.list()] == [kept_id]
    assert service.verify(kept, KeyKind.CUSTOMER).key_id == kept_id


def test_records_read_back_in_utc_whatever_the_sessions_time_zone(store_url: str) -> None:
    """Postgres answers in the session's time zone: every record still reads back in UTC."""
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite has no session time zone")
    from gateway.credits.ledger import SqlLedger

    open_store(store_url)
    engine = sa.create_engine(sa.make_url(store_url).set(drivername="postgresql+psycopg"),
                              connect_args={"options": "-c timezone=Pacific/Kiritimati"})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "Pacific/Kiritimati"
    store = SqlKeyStore(engine)
    key_id = store.insert(kind="ck", name="tz", digest="e" * 64, models=["m"],
                          expires_at=datetime.now(UTC) + timedelta(hours=1), account_id="acct_t").id
    record = store.get(key_id)
    assert record is not None and record.expires_at is not None
    assert record.created_at.utcoffset() == record.expires_at.utcoffset() == timedelta(0)
    ledger = SqlLedger(engine)
    account = ledger.create_account("tz")
    ledger.top_up(account.id, 5, "tz")
    shown = ledger.get_account(account.id)
    assert shown is not None and shown.created_at.utcoffset() == timedelta(0)
    assert ledger.recent_entries(account.id)[0]["created_at"].endswith("+00:00")
    with engine.begin() as conn:  # the session's Postgres database is shared: leave it as it was
        conn.execute(sa.text("DELETE FROM api_keys WHERE id = :id"), {"id": key_id})
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE account_id = :id"), {"id": account.id})
        conn.execute(sa.text("DELETE FROM accounts WHERE id = :id"), {"id": account.id})


def test_a_year_10000_row_left_by_older_code_does_not_break_listing(store_url: str) -> None:
    """Postgres kept '9999-12-31T23:59:59-23:59' as year 10000, which no driver reads: it now reads as the bound."""
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite never stored a year past 9999 (it dropped the offset instead)")
    engine = open_store(store_url)
    store = SqlKeyStore(engine)
    hasher = KeyHasher(PEPPER)
    service = KeyService(store, hasher)
    plaintext, record = service.issue(KeyKind.CUSTOMER, name="far", account_id="acct_t", models=["m"])
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_keys SET expires_at = '10000-01-01 23:58:59+00' WHERE id = :id"),
                     {"id": record.id})
        assert conn.execute(sa.text("SELECT extract(year FROM expires_at AT TIME ZONE 'UTC') FROM api_keys "
                                    "WHERE id = :id"), {"id": record.id}).scalar_one() == 10000
    try:
        listed = {r.id: r for r in store.list()}
        assert listed[record.id].expires_at == datetime(9000, 1, 1, tzinfo=UTC)
        assert service.verify(plaintext, KeyKind.CUSTOMER).key_id == record.id
        got = store.get(record.id)
        assert got is not None and got.state(datetime.now(UTC)) == "active"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM api_keys WHERE id = :id"), {"id": record.id})
