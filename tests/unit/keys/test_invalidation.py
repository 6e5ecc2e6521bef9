"""A revocation on one replica reaches the other replicas' key caches through Redis, not only when the TTL runs out.

threat-model: TM-T6
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.invalidation import CHANNEL, RedisInvalidations
from gateway.keys.service import AuthDenied, KeyService
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store

PEPPER = b"i" * 32


def _replicas(tmp_path: Path, redis_url: str) -> tuple[KeyService, KeyService, list[RedisInvalidations]]:
    engine = open_store(f"sqlite:///{tmp_path / 'keys.db'}")
    channels = [RedisInvalidations(redis_url, {"socket_timeout": 1}) for _ in range(2)]
    # A cache TTL far longer than the test: only the channel can make replica b see the change in time.
    a, b = (KeyService(SqlKeyStore(engine), KeyHasher(PEPPER), cache_ttl=3600, invalidations=channel)
            for channel in channels)
    for service, channel in zip((a, b), channels, strict=True):
        channel.listen(service.cache)
    time.sleep(0.3)  # both subscribed
    return a, b, channels


def _refused_within(service: KeyService, key: str, seconds: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        try:
            service.verify(key, KeyKind.CUSTOMER)
        except AuthDenied:
            return time.perf_counter() - started
        time.sleep(0.002)
    return None


def test_a_revocation_reaches_the_other_replica_through_the_channel(tmp_path: Path, redis_url: str) -> None:
    a, b, channels = _replicas(tmp_path, redis_url)
    try:
        for _ in range(5):
            key, record = a.issue(KeyKind.CUSTOMER, name="k", models=["m"], account_id="acct_1")
            b.verify(key, KeyKind.CUSTOMER)  # cached on b for an hour
            a.revoke(record.id, by="test")
            delay = _refused_within(b, key, 2.0)
            assert delay is not None and delay < 0.5, delay
        # A rotation too: the old key's new expiry reaches b's cache.
        key, record = a.issue(KeyKind.CUSTOMER, name="k", models=["m"], account_id="acct_1")
        b.verify(key, KeyKind.CUSTOMER)
        a.rotate(record.id, grace=timedelta(seconds=-1))
        assert _refused_within(b, key, 2.0) is not None
    finally:
        for channel in channels:
            channel.close()


def test_without_the_channel_the_cache_would_keep_a_revoked_key(tmp_path: Path) -> None:
    # The contrast that makes the test above mean something: no channel, a long TTL, the revoked key still verifies.
    engine = open_store(f"sqlite:///{tmp_path / 'keys.db'}")
    a, b = (KeyService(SqlKeyStore(engine), KeyHasher(PEPPER), cache_ttl=3600) for _ in range(2))
    key, record = a.issue(KeyKind.CUSTOMER, name="k", models=["m"], account_id="acct_1")
    b.verify(key, KeyKind.CUSTOMER)
    a.revoke(record.id, by="test")
    assert _refused_within(b, key, 0.3) is None


def test_only_key_ids_are_acted_on(tmp_path: Path, redis_url: str) -> None:
    import redis

    a, b, channels = _replicas(tmp_path, redis_url)
    try:
        key, _ = a.issue(KeyKind.CUSTOMER, name="k", models=["m"], account_id="acct_1")
        b.verify(key, KeyKind.CUSTOMER)
        publisher = redis.Redis.from_url(redis_url)
        for junk in ("*", "", "key_" + "z" * 24, "lgw_ck_not-an-id", "\x00"):
            publisher.publish(CHANNEL, junk)
        time.sleep(0.3)
        assert len(b.cache) == 1  # nothing was forgotten
        publisher.close()
    finally:
        for channel in channels:
            channel.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0"])
def test_a_lost_channel_is_logged_and_publishing_does_not_fail(url: str, caplog: pytest.LogCaptureFixture) -> None:
    channel = RedisInvalidations(url, {"socket_timeout": 0.2, "socket_connect_timeout": 0.2})
    channel.publish("key_" + "0" * 24)  # no exception: the TTL is the fallback
    assert "not published" in caplog.text
    channel.close()
