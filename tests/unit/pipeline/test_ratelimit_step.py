"""Rate limiter internals (threat-model TM-T11): tokens per minute on a counter, in-memory clean-up inline."""

from __future__ import annotations

import threading
import time

import limits.storage.memory
import pytest
from limits.storage import MemoryStorage

from gateway.pipeline.errors import Denial
from gateway.pipeline.ratelimit import RateLimitStep
from gateway.principal import Principal
from gateway.ratelimit import limiter as ratelimit
from gateway.ratelimit.limiter import InlineSweepMemoryStorage, RateLimiter


def _principal(key_id: str = "key_rl", rpm: int | None = None, tpm: int | None = None) -> Principal:
    return Principal(key_id=key_id, kind="customer", name="n", models=frozenset(), expires_at=None,
                     account_id="acct", spend_cap_micro_usd=None, spend_cap_period="none", rpm_limit=rpm,
                     tpm_limit=tpm)


def _limiter() -> RateLimitStep:
    return RateLimitStep(RateLimiter(storage_uri="memory://", storage_options={}, default_rpm=1_000,
                                     default_tpm=1_000_000))


def test_tokens_per_minute_still_limit() -> None:
    limiter = _limiter()
    principal = _principal(tpm=1_000)
    limiter.tokens(principal, 400, "r1")
    limiter.tokens(principal, 400, "r2")
    with pytest.raises(Denial) as denied:
        limiter.tokens(principal, 400, "r3")
    assert denied.value.status == 429
    assert dict(denied.value.headers)[b"x-ratelimit-limit-tokens"] == b"1000"


def test_token_counting_keeps_no_entry_per_token() -> None:
    # A moving window would hold one entry per token (here 10 × 50,000); the counter holds two numbers per key.
    limiter = _limiter()
    principal = _principal()
    for i in range(10):
        limiter.requests(principal, f"r{i}")
        limiter.tokens(principal, 50_000, f"r{i}")
    storage = limiter.limiter.storage
    assert sum(len(entries) for entries in storage.events.values()) == 10  # the requests' moving window only
    assert len(storage.storage) <= 2


def test_requests_per_minute_are_exact_on_the_moving_window() -> None:
    limiter = _limiter()
    principal = _principal(rpm=5)
    for i in range(5):
        limiter.requests(principal, f"r{i}")
    with pytest.raises(Denial) as denied:
        limiter.requests(principal, "r5")
    assert denied.value.status == 429


def _timers_started(storage_class: type[MemoryStorage], monkeypatch: pytest.MonkeyPatch) -> int:
    started = 0
    real = threading.Timer

    class CountingTimer(real):  # type: ignore[misc, valid-type]
        def start(self) -> None:
            nonlocal started
            started += 1
            super().start()

    monkeypatch.setattr("limits.storage.memory.threading.Timer", CountingTimer)
    storage = storage_class()
    for i in range(20):
        storage.acquire_entry("k", 1_000, 60)
        if i % 5 == 0:
            time.sleep(0.02)  # longer than the library's 10 ms timer
    return started


def test_no_thread_is_started_per_hit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The library's own storage starts a timer thread again after each pause; ours only the one in its constructor.
    assert _timers_started(MemoryStorage, monkeypatch) > 2
    assert _timers_started(InlineSweepMemoryStorage, monkeypatch) == 1


class _Clock:
    """Stands in for the time module inside limits' in-memory storage: its expiries move only when told."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


def test_expired_entries_are_still_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit.InlineSweepMemoryStorage, "SWEEP_INTERVAL", 0.0)
    clock = _Clock()
    monkeypatch.setattr(limits.storage.memory, "time", clock)
    storage = InlineSweepMemoryStorage()
    storage.acquire_entry("old", 10, 1)
    clock.now += 1.1
    storage.acquire_entry("new", 10, 1)
    assert not storage.events.get("old") and storage.events["new"]
