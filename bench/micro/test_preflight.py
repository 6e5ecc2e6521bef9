"""Microbenchmarks of the pre-flight's parts: key verification, credit reservation and rate limiting.

Each benchmark drives the same classes the gateway uses, on real stores. Performance goals are printed in the
run's summary, never asserted.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_benchmark.fixture import BenchmarkFixture

from gateway.credits.ledger import SqlLedger
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import AuthDenied, KeyService
from gateway.keys.store import KeyRecord, KeyStore, SqlKeyStore
from gateway.pipeline.ratelimit import RateLimitStep
from gateway.principal import Principal
from gateway.ratelimit.limiter import RateLimiter

CACHED_VERIFICATIONS_GOAL = 100_000  # per second (issue 8)


class CountingStore:
    """A key store that counts the digest lookups it passes on to the real one."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self.lookups = 0

    def insert(self, **fields: Any) -> KeyRecord:
        return self._store.insert(**fields)

    def retire(self, key_id: str, *, successor: str, not_after: datetime) -> None:
        self._store.retire(key_id, successor=successor, not_after=not_after)

    def find_by_digest(self, digest: str) -> tuple[KeyRecord, str] | None:
        self.lookups += 1
        return self._store.find_by_digest(digest)

    def get(self, key_id: str) -> KeyRecord | None:
        return self._store.get(key_id)

    def list(self, kind: str | None = None) -> list[KeyRecord]:
        return self._store.list(kind)

    def revoke(self, key_id: str, *, by: str) -> KeyRecord | None:
        return self._store.revoke(key_id, by=by)


def _service(store: KeyStore, cache_ttl: float) -> tuple[KeyService, str, str]:
    """A key service with one issued customer key: (service, plaintext, key id)."""
    service = KeyService(store, KeyHasher(secrets.token_bytes(32)), cache_ttl=cache_ttl)
    plaintext, record = service.issue(KeyKind.CUSTOMER, name="bench", models=["chat-model"], account_id="acct_bench")
    return service, plaintext, record.id


def _verify(benchmark: BenchmarkFixture, engine: sa.Engine, cache_ttl: float) -> None:
    service, plaintext, key_id = _service(SqlKeyStore(engine), cache_ttl)
    service.verify(plaintext, KeyKind.CUSTOMER)  # steady state: pool connection open, cache (if on) filled
    principal = benchmark(service.verify, plaintext, KeyKind.CUSTOMER)
    assert principal.key_id == key_id


def test_key_verification_cached(benchmark: BenchmarkFixture, sqlite_engine: sa.Engine,
                                 report_goal: Callable[[float, float], None]) -> None:
    """verify() of a valid customer key answered by the in-process cache: format check, HMAC, cache hit."""
    _verify(benchmark, sqlite_engine, cache_ttl=1.0)
    if benchmark.stats is not None:
        report_goal(benchmark.stats.stats.ops, CACHED_VERIFICATIONS_GOAL)


def test_key_verification_uncached(benchmark: BenchmarkFixture, sqlite_engine: sa.Engine) -> None:
    """verify() of a valid customer key with the cache off: every call reads the SQLite store."""
    _verify(benchmark, sqlite_engine, cache_ttl=0)


def test_key_verification_uncached_postgres(benchmark: BenchmarkFixture, postgres_engine: sa.Engine) -> None:
    """verify() of a valid customer key with the cache off: every call reads Postgres (pooled connection)."""
    _verify(benchmark, postgres_engine, cache_ttl=0)


@pytest.mark.parametrize("damage", ["bad-checksum", "wrong-prefix"])
def test_malformed_key_rejected_without_lookup(benchmark: BenchmarkFixture, sqlite_engine: sa.Engine,
                                               damage: str) -> None:
    """verify() of a malformed key: rejected by the format check alone, with no store lookup."""
    store = CountingStore(SqlKeyStore(sqlite_engine))
    service, plaintext, key_id = _service(store, cache_ttl=0)
    if damage == "bad-checksum":
        malformed = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    else:
        malformed = "sk-" + plaintext[len("lgw_ck_"):]

    def attempt() -> str:
        try:
            service.verify(malformed, KeyKind.CUSTOMER)
        except AuthDenied as denied:
            return denied.reason
        return "accepted"

    assert benchmark(attempt) == "malformed"
    assert store.lookups == 0
    # The counter is wired: a well-formed key does reach the store.
    assert service.verify(plaintext, KeyKind.CUSTOMER).key_id == key_id
    assert store.lookups == 1


def _reserve_settle(benchmark: BenchmarkFixture, engine: sa.Engine) -> None:
    ledger = SqlLedger(engine)
    account = ledger.create_account("bench")
    ledger.top_up(account.id, 10**15, "bench")
    prefix = uuid.uuid4().hex[:8]
    counter = itertools.count()

    def reserve_and_settle() -> None:
        request_id = f"b{prefix}{next(counter)}"
        ledger.reserve(request_id=request_id, account_id=account.id, key_id="key_bench", amount=150, cap=None)
        ledger.settle(request_id, 23)

    benchmark(reserve_and_settle)
    assert ledger.check() == [], "parity broke during the benchmark"


def test_reserve_settle_sqlite(benchmark: BenchmarkFixture, sqlite_engine: sa.Engine) -> None:
    """One reservation and its settlement (two transactions) on a funded account, on SQLite."""
    _reserve_settle(benchmark, sqlite_engine)


def test_reserve_settle_postgres(benchmark: BenchmarkFixture, postgres_engine: sa.Engine) -> None:
    """One reservation and its settlement (one statement each, autocommit) on a funded account, on Postgres."""
    _reserve_settle(benchmark, postgres_engine)


def _rate_limit(benchmark: BenchmarkFixture, storage_uri: str, storage_options: dict[str, Any]) -> None:
    limiter = RateLimitStep(RateLimiter(storage_uri=storage_uri, storage_options=storage_options,
                                        default_rpm=1_000_000, default_tpm=1_000_000_000))
    if not limiter.limiter.reachable():
        pytest.skip(f"rate-limit store at {storage_uri} does not answer")
    # A fresh key per run: no counts left over from an earlier run in the same window.
    principal = Principal(key_id="key_bench_" + uuid.uuid4().hex[:16], kind=KeyKind.CUSTOMER.value, name="bench",
                          models=frozenset(), expires_at=None)
    counter = itertools.count()

    def hit() -> None:
        request_id = f"req_{next(counter)}"
        limiter.requests(principal, request_id)
        limiter.tokens(principal, 200, request_id)

    benchmark(hit)


def test_rate_limit_hit_memory(benchmark: BenchmarkFixture) -> None:
    """One request counted against requests- and tokens-per-minute, in process memory (never denied)."""
    _rate_limit(benchmark, "memory://", {})


def test_rate_limit_hit_redis(benchmark: BenchmarkFixture, redis_url: str) -> None:
    """One request counted against requests- and tokens-per-minute, in Redis (never denied)."""
    _rate_limit(benchmark, redis_url, {"socket_timeout": 1, "socket_connect_timeout": 1})
