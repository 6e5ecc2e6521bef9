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

PEPPER = b"p" * 16 + b"e" * 16 + b"pper-for-tests"
EXTREME_OFFSETS = [timedelta(hours=14), timedelta(hours=-11), timedelta(hours=-23, minutes=-59),
                   timedelta(hours=23, minutes=59)]


@pytest.fixture()
def service(store_url: str) -> KeyService:
    engine = open_store(store_url)
    if store_url.startswith("postgresql"):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM api_keys"))
    return KeyService(SqlKeyStore(engine), KeyHasher(PEPPER))


def _issue(service: KeyService, expires_at: datetime) -> tuple[str, str]:
    plaintext, record = service.issue(KeyKind.CUSTOMER, name="tz", account_id="acct_t", models=["m"],
                                      expires_at=expires_at)
    return plaintext, record.id


@pytest.mark.parametrize("offset", EXTREME_OFFSETS, ids=lambda o: str(o))
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
