"""Rotation and revocation of one key serialize, on SQLite and on the machine's Postgres.

threat-model: TM-T12
"""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest

from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import AlreadyRotated, AuthDenied, KeyService
from gateway.keys.store import SqlKeyStore
from tests.support import fresh_store, together

PEPPER = b"r" * 32 + b"-pepper-for-rotation-races"
GRACE = timedelta(seconds=30)


@pytest.fixture()
def service(store_url: str) -> KeyService:
    return KeyService(SqlKeyStore(fresh_store(store_url, "api_keys")), KeyHasher(PEPPER))


def _works(service: KeyService, plaintext: str) -> bool:
    try:
        service.verify(plaintext, KeyKind.CUSTOMER)
    except AuthDenied:
        return False
    return True


def _customer(service: KeyService) -> tuple[str, str]:
    plaintext, record = service.issue(KeyKind.CUSTOMER, name="raced", account_id="acct_r", models=["m"])
    return plaintext, record.id


def test_of_concurrent_rotations_exactly_one_succeeds(service: KeyService) -> None:
    """threat-model: TM-T12"""
    old, key_id = _customer(service)
    results = together([lambda: service.rotate(key_id, grace=GRACE) for _ in range(6)])
    issued = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, AlreadyRotated)]
    assert len(issued) == 1 and len(refused) == 5, results
    new_plaintext, new_record = issued[0]
    assert all(r.successor == new_record.id for r in refused)
    live = [k for k in service.store.list("ck") if k.state(k.created_at) == "active" and k.id != key_id]
    assert [k.id for k in live] == [new_record.id]  # no other successor was ever written
    assert _works(service, new_plaintext) and _works(service, old)  # the old one for its grace period
    stored = service.store.get(key_id)
    assert stored is not None and stored.rotated_to == new_record.id


def test_a_retried_rotation_is_refused(service: KeyService) -> None:
    """threat-model: TM-T12"""
    _, key_id = _customer(service)
    first = service.rotate(key_id, grace=GRACE)
    assert first is not None
    with pytest.raises(AlreadyRotated) as refused:
        service.rotate(key_id, grace=GRACE)
    assert refused.value.successor == first[1].id
    # The successor itself can be rotated, and keeps the original (open-ended) expiry rather than the grace period.
    assert first[1].expires_at is None
    assert service.rotate(first[1].id, grace=GRACE) is not None


def test_a_revocation_racing_a_rotation_leaves_no_working_key(service: KeyService) -> None:
    """threat-model: TM-T12"""
    for _ in range(15):
        old, key_id = _customer(service)
        rotate = functools.partial(service.rotate, key_id, grace=GRACE)
        revoke = functools.partial(service.revoke_line, key_id, by="key_admin")
        rotated, (revoked, _) = together([rotate, revoke])
        assert revoked is not None and revoked.revoked_at is not None
        assert not _works(service, old)
        if isinstance(rotated, tuple):
            assert not _works(service, rotated[0]), "the successor of a revoked key still works"
        else:
            assert rotated is None or isinstance(rotated, AlreadyRotated), rotated


def test_revoking_a_rotated_key_revokes_its_line(service: KeyService) -> None:
    """threat-model: TM-T12"""
    _, key_id = _customer(service)
    first = service.rotate(key_id, grace=GRACE)
    assert first is not None
    second = service.rotate(first[1].id, grace=GRACE)
    assert second is not None
    record, successors = service.revoke_line(key_id, by="key_admin")
    assert record is not None and successors == [first[1].id, second[1].id]
    assert not _works(service, first[0]) and not _works(service, second[0])
    # Self-revocation (a presented key) revokes that key only: whoever holds a leaked old key cannot kill its successor.
    _, other_id = _customer(service)
    rotated = service.rotate(other_id, grace=GRACE)
    assert rotated is not None
    service.revoke(other_id, by="self")
    assert _works(service, rotated[0])
