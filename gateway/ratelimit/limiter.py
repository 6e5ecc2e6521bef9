"""Per-key rate limits — requests per minute and tokens per minute — counted before LiteLLM is called.

Counters live in slowapi's limiter (on the ``limits`` library): in memory by default, in Redis when
``GATEWAY_REDIS_URL`` is set, so every replica of a fleet counts against the same window. Requests per minute use a
moving window, so a fleet admits exactly the limit in any 60 seconds. Tokens per minute are weighted hits of the
request's worst-case token estimate (prompt bound + output bound), taken when the request is admitted, on a sliding
window counter: a moving window stores one entry per token (its cost per request and its memory grow with the
tokens in the window, up to the limit, in this process or in Redis), the counter keeps two numbers per key. The
price is precision: the counter weighs the previous minute as if its tokens were spread evenly (threat-model TM-T11).

This module counts and says no; it knows nothing of HTTP. The pipeline step (:mod:`gateway.pipeline.ratelimit`)
turns :class:`RateLimited` into a 429 and :class:`CounterStoreUnavailable` into a 503 (fail closed), unless the
deployer set ``GATEWAY_UNSAFE_RATE_LIMIT_FAIL_OPEN`` (threat-model TM-T11).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Literal

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import RateLimiter as Strategy
from limits.strategies import SlidingWindowCounterRateLimiter
from slowapi import Limiter

from gateway.principal import Principal

Counter = Literal["rpm", "tpm"]


class RateLimited(Exception):
    """The key is over its limit. ``alone``: this one request exceeds the whole per-minute limit."""

    def __init__(self, counter: Counter, limit: int, *, remaining: int = 0, retry_after: int = 60,
                 alone: bool = False) -> None:
        super().__init__(counter)
        self.counter = counter
        self.limit = limit
        self.remaining = remaining
        self.retry_after = retry_after
        self.alone = alone


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """Where a key stands in one counter's window after a request was counted (OpenAI's x-ratelimit-* figures)."""

    counter: Counter
    limit: int
    remaining: int
    reset_seconds: int  # until the window has room for the whole limit again


class CounterStoreUnavailable(Exception):
    """The counter store (Redis) failed or timed out; whether the key is over its limit is unknown."""


class InlineSweepMemoryStorage(MemoryStorage):
    """limits' in-memory storage, with its clean-up of expired entries run inline at most once a second.

    The library's own schedules the clean-up on a new ``threading.Timer`` from every hit once the previous timer has
    finished (after 10 ms): under load that is a thread started, and waited for, on the event loop for nearly every
    request (measured: about 3 % of the gateway's CPU, docs/benchmarks.md). Counting is unchanged: hits compare
    timestamps themselves, and the clean-up only frees memory.
    """

    STORAGE_SCHEME = ["gateway-memory"]  # noqa: RUF012 - the library's storage registry reads this list
    SWEEP_INTERVAL = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the library's private name
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_INTERVAL
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]  # the library's private name


class RateLimiter:
    def __init__(self, *, storage_uri: str, storage_options: dict[str, Any], default_rpm: int, default_tpm: int) -> None:
        if storage_uri == "memory://":
            storage_uri = "gateway-memory://"
        self._slowapi = Limiter(key_func=lambda _request: "", storage_uri=storage_uri, strategy="moving-window",
                                storage_options=storage_options, key_prefix="gateway", headers_enabled=False,
                                in_memory_fallback_enabled=False, swallow_errors=False)
        self._limiter = self._slowapi.limiter
        self._token_limiter = SlidingWindowCounterRateLimiter(self._slowapi._storage)
        self._default_rpm = default_rpm
        self._default_tpm = default_tpm

    @property
    def storage(self) -> Any:
        """The counter store (limits' storage object)."""
        return self._slowapi._storage

    def _hit(self, strategy: Strategy, limit: int, counter: Counter, principal: Principal, cost: int) -> Window:
        item = RateLimitItemPerMinute(limit)
        try:
            allowed = strategy.hit(item, counter, principal.key_id, cost=cost)
            stats = strategy.get_window_stats(item, counter, principal.key_id)
        except Exception as exc:  # noqa: BLE001 - any storage failure (Redis down, timeout) is handled the same way
            raise CounterStoreUnavailable(type(exc).__name__) from None
        window = Window(counter, limit, max(stats.remaining, 0), max(1, math.ceil(stats.reset_time - time.time())))
        if allowed:
            return window
        raise RateLimited(counter, limit, remaining=window.remaining, retry_after=window.reset_seconds)

    def reachable(self) -> bool:
        try:
            return bool(self._slowapi._storage.check())
        except Exception:  # noqa: BLE001 - unreachable is the answer, whatever the client raised
            return False

    def requests(self, principal: Principal) -> Window:
        """Count one request against the key's requests-per-minute."""
        return self._hit(self._limiter, principal.rpm_limit or self._default_rpm, "rpm", principal, 1)

    def tokens(self, principal: Principal, tokens: int) -> Window:
        """Count the request's worst-case tokens against the key's tokens-per-minute."""
        limit = principal.tpm_limit or self._default_tpm
        if tokens > limit:
            raise RateLimited("tpm", limit, alone=True)
        return self._hit(self._token_limiter, limit, "tpm", principal, max(tokens, 1))
