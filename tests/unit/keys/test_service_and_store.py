"""KeyService over SqlKeyStore, on SQLite and on the machine's Postgres: one test per denial reason plus the OK case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.keys import format as key_format
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import AuthDenied, KeyService
from gateway.keys.store import SqlKeyStore, StoreUnavailable
from tests.support import ManualClock, fresh_store

PEPPER = b"p" * 16 + b"e" * 16 + b"pper-for-tests"


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def service(store_url: str, clock: ManualClock) -> KeyService:
    return KeyService(SqlKeyStore(fresh_store(store_url, "api_keys")), KeyHasher(PEPPER), clock=clock)


def _reason(service: KeyService, presented: str | None, kind: KeyKind = KeyKind.CUSTOMER) -> str:
    with pytest.raises(AuthDenied) as caught:
        service.verify(presented, kind)
    return caught.value.reason


def test_ok(service: KeyService) -> None:
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_t", models=["m2", "m1", "m1"])
    principal = service.verify(key, KeyKind.CUSTOMER)
    assert principal.key_id == record.id and principal.models == frozenset({"m1", "m2"})
    assert record.models == ("m1", "m2")


def test_only_the_digest_is_stored(service: KeyService) -> None:
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_t", models=["m"])
    engine = service.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM api_keys WHERE id = :id"), {"id": record.id}).one()
    assert key not in repr(row)
    assert row._mapping["key_digest"] == KeyHasher(PEPPER).digest(key) != key
    assert "key_digest" not in repr(record.public(datetime.now(UTC)))


def test_missing(service: KeyService) -> None:
    assert _reason(service, None) == "missing"


def test_malformed_needs_no_store_lookup(tmp_path: Path) -> None:
    class Exploding:
        def find_by_digest(self, digest: str) -> None:
            raise AssertionError("store was consulted")

    service = KeyService(Exploding(), KeyHasher(PEPPER))  # type: ignore[arg-type]
    good = key_format.generate(KeyKind.CUSTOMER)
    for presented in ("sk-1234", good[:-1] + ("x" if good[-1] != "x" else "y"), key_format.generate(KeyKind.ADMIN)):
        assert _reason(service, presented) == "malformed"


def test_unknown(service: KeyService) -> None:
    assert _reason(service, key_format.generate(KeyKind.CUSTOMER)) == "unknown"


def test_other_pepper_means_unknown(service: KeyService) -> None:
    key, _ = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_t", models=["m"])
    other = KeyService(service.store, KeyHasher(b"another-pepper-of-32-bytes-or-more!!"))
    assert _reason(other, key) == "unknown"


def test_revoked(service: KeyService) -> None:
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_t", models=["m"])
    first = service.store.revoke(record.id, by="t")
    assert first is not None and first.revoked_at is not None
    second = service.store.revoke(record.id, by="t2")
    assert second is not None and second.revoked_at == first.revoked_at
    assert _reason(service, key) == "revoked"
    assert service.store.revoke("key_missing", by="t") is None


def test_expired(service: KeyService, clock: ManualClock) -> None:
    key, _ = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_t", models=["m"],
                           expires_at=clock.now() + timedelta(milliseconds=300))
    service.verify(key, KeyKind.CUSTOMER)
    clock.advance(0.4)
    assert _reason(service, key) == "expired"


def test_admin_and_customer_keys_do_not_cross(service: KeyService) -> None:
    admin, _ = service.issue(KeyKind.ADMIN, name="ops")
    customer, _ = service.issue(KeyKind.CUSTOMER, name="c", account_id="acct_t", models=["m"])
    assert service.verify(admin, KeyKind.ADMIN).kind == "ak"
    assert _reason(service, admin, KeyKind.CUSTOMER) == "malformed"
    assert _reason(service, customer, KeyKind.ADMIN) == "malformed"


def test_listing(service: KeyService) -> None:
    service.issue(KeyKind.ADMIN, name="ops")
    service.issue(KeyKind.CUSTOMER, name="c", account_id="acct_t", models=["m"])
    assert [r.kind for r in service.store.list("ck")] == ["ck"]
    assert sorted(r.kind for r in service.store.list()) == ["ak", "ck"]


def test_listing_and_lookup_through_the_service(service: KeyService) -> None:
    _, admin = service.issue(KeyKind.ADMIN, name="ops")
    _, customer = service.issue(KeyKind.CUSTOMER, name="c", account_id="acct_t", models=["m"])
    assert [r.id for r in service.list(KeyKind.CUSTOMER)] == [customer.id]
    assert sorted(r.id for r in service.list()) == sorted([admin.id, customer.id])
    assert service.get(customer.id) == service.get(customer.id, KeyKind.CUSTOMER) == service.store.get(customer.id)
    assert service.get(admin.id, KeyKind.CUSTOMER) is None and service.get(admin.id, KeyKind.ADMIN) is not None
    assert service.get("key_missing") is None


def test_unreachable_store_is_reported_not_hidden(tmp_path: Path) -> None:
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pool_pre_ping=False)
    service = KeyService(SqlKeyStore(engine), KeyHasher(PEPPER))
    with pytest.raises(StoreUnavailable):
        service.verify(key_format.generate(KeyKind.CUSTOMER), KeyKind.CUSTOMER)


def test_customer_keys_need_an_account(service: KeyService) -> None:
    with pytest.raises(ValueError):
        service.issue(KeyKind.CUSTOMER, name="a", models=["m"])


def test_naive_expiry_is_refused(service: KeyService) -> None:
    with pytest.raises(ValueError):
        service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_t", models=["m"], expires_at=datetime(2099, 1, 1))
