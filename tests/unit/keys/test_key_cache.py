"""The key cache (threat-model TM-T6): what it answers, for how long, and what drops an entry at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.keys import format as key_format
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import AuthDenied, KeyCache, KeyService
from gateway.keys.store import KeyRecord, SqlKeyStore
from gateway.store.engine import open_store
from tests.support import ManualClock

PEPPER = b"c" * 32 + b"-pepper-for-cache-tests"


class CountingStore(SqlKeyStore):
    """The real SQL store, counting digest lookups."""

    lookups = 0

    def find_by_digest(self, digest: str) -> tuple[KeyRecord, str] | None:
        self.lookups += 1
        return super().find_by_digest(digest)


def _service(tmp_path: Path, ttl: float, clock: ManualClock | None = None) -> tuple[KeyService, CountingStore]:
    store = CountingStore(open_store(f"sqlite:///{tmp_path / 'keys.db'}"))
    return KeyService(store, KeyHasher(PEPPER), cache_ttl=ttl, clock=clock or ManualClock()), store


def _reason(service: KeyService, key: str, kind: KeyKind = KeyKind.CUSTOMER) -> str:
    with pytest.raises(AuthDenied) as caught:
        service.verify(key, kind)
    return caught.value.reason


def test_repeated_verification_reads_the_store_once_per_ttl(tmp_path: Path) -> None:
    clock = ManualClock()
    service, store = _service(tmp_path, ttl=0.3, clock=clock)
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_c")
    for _ in range(50):
        assert service.verify(key, KeyKind.CUSTOMER).key_id == record.id
    assert store.lookups == 1
    clock.advance(0.35)
    service.verify(key, KeyKind.CUSTOMER)
    assert store.lookups == 2


def test_no_cache_when_ttl_is_zero(tmp_path: Path) -> None:
    service, store = _service(tmp_path, ttl=0)
    key, _ = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_c")
    for _ in range(5):
        service.verify(key, KeyKind.CUSTOMER)
    assert store.lookups == 5 and len(service.cache) == 0


def test_revocation_through_this_process_takes_effect_at_once(tmp_path: Path) -> None:
    service, _ = _service(tmp_path, ttl=60)
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_c")
    service.verify(key, KeyKind.CUSTOMER)
    service.revoke(record.id, by="test")
    assert _reason(service, key) == "revoked"


def test_revocation_elsewhere_takes_effect_within_the_ttl(tmp_path: Path) -> None:
    # Another replica or the host CLI writes the store directly: this process learns of it when its entry expires.
    clock = ManualClock()
    service, store = _service(tmp_path, ttl=0.3, clock=clock)
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_c")
    service.verify(key, KeyKind.CUSTOMER)
    store.revoke(record.id, by="elsewhere")
    # The price of the cache, stated: right after the revocation elsewhere, this process still accepts the key...
    assert service.verify(key, KeyKind.CUSTOMER).key_id == record.id
    clock.advance(0.29)
    assert service.verify(key, KeyKind.CUSTOMER).key_id == record.id
    # ...and refuses it once the entry has expired, the TTL after it was cached.
    clock.advance(0.02)
    assert _reason(service, key) == "revoked"


def test_rotation_drops_the_entry_so_the_grace_period_applies(tmp_path: Path) -> None:
    service, _ = _service(tmp_path, ttl=60)
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_c")
    service.verify(key, KeyKind.CUSTOMER)
    rotated = service.rotate(record.id, grace=timedelta(0))
    assert rotated is not None
    assert _reason(service, key) == "expired"
    assert service.verify(rotated[0], KeyKind.CUSTOMER).key_id == rotated[1].id


def test_expiry_is_checked_on_every_request_even_from_the_cache(tmp_path: Path) -> None:
    clock = ManualClock()
    service, store = _service(tmp_path, ttl=60, clock=clock)
    key, _ = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_c",
                           expires_at=clock.now() + timedelta(seconds=0.3))
    service.verify(key, KeyKind.CUSTOMER)
    clock.advance(0.35)
    assert _reason(service, key) == "expired"
    assert store.lookups == 1


def test_honeytokens_stay_alarms_when_cached(tmp_path: Path) -> None:
    service, _ = _service(tmp_path, ttl=60)
    key, _ = service.issue_honeytoken("canary")
    assert _reason(service, key) == "honeytoken"
    assert _reason(service, key) == "honeytoken"


def test_admin_keys_and_unknown_keys_always_go_to_the_store(tmp_path: Path) -> None:
    service, store = _service(tmp_path, ttl=60)
    admin, _ = service.issue(KeyKind.ADMIN, name="ops")
    service.verify(admin, KeyKind.ADMIN)
    service.verify(admin, KeyKind.ADMIN)
    assert store.lookups == 2
    never_issued = key_format.generate(KeyKind.CUSTOMER)
    for _ in range(2):
        assert _reason(service, never_issued) == "unknown"
    assert store.lookups == 4 and len(service.cache) == 0


def test_a_lookup_that_raced_an_invalidation_is_not_cached(tmp_path: Path) -> None:
    cache = KeyCache(ttl=60)
    service, store = _service(tmp_path, ttl=60)
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_c")
    found = store.find_by_digest(KeyHasher(PEPPER).digest(key))
    assert found is not None
    generation = cache.generation()
    cache.forget(record.id)  # a revocation lands while the lookup's answer is on its way back
    cache.put("digest", found[0], found[1], generation)
    assert cache.get("digest") is None


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    cache = KeyCache(ttl=60, max_entries=3)
    service, store = _service(tmp_path, ttl=0)
    key, _ = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_c")
    found = store.find_by_digest(KeyHasher(PEPPER).digest(key))
    assert found is not None
    for i in range(10):
        cache.put(f"d{i}", found[0], found[1], cache.generation())
    assert len(cache) == 3
    assert cache.get("d0") is None and cache.get("d9") is not None
