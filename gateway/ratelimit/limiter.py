"""Step: per-key rate limits — requests per minute and tokens per minute — before LiteLLM is called.

Counters live in slowapi's limiter (on the ``limits`` library): in memory by default, in Redis when
``GATEWAY_REDIS_URL`` is set, so every replica of a fleet counts against the same window. Requests per minute use a
moving window, so a fleet admits exactly the limit in any 60 seconds. Tokens per minute are weighted hits of the
request's worst-case token estimate (prompt bound + output bound), taken when the request is admitted, on a sliding
window counter: a moving window stores one entry per token (its cost per request and its memory grow with the
tokens in the window, up to the limit, in this process or in Redis), the counter keeps two numbers per key. The
price is precision: the counter weighs the previous minute as if its tokens were spread evenly (threat-model TM-T11).

If the counter store fails, the answer is ``503 service_unavailable`` (fail closed), unless the deployer set
``GATEWAY_UNSAFE_RATE_LIMIT_FAIL_OPEN`` (threat-model TM-T11).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import RateLimiter as Strategy
from limits.strategies import SlidingWindowCounterRateLimiter
from slowapi import Limiter

from gateway.metrics import RATE_LIMITED
from gateway.pipeline.errors import Denial
from gateway.principal import Principal

log = logging.getLogger("gateway.ratelimit")


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
            self._MemoryStorage__expire_events()


class RateLimiter:
    def __init__(self, *, storage_uri: str, storage_options: dict[str, Any], default_rpm: int, default_tpm: int,
                 unsafe_fail_open: bool = False) -> None:
        if storage_uri == "memory://":
            storage_uri = "gateway-memory://"
        self._slowapi = Limiter(key_func=lambda _request: "", storage_uri=storage_uri, strategy="moving-window",
                                storage_options=storage_options, key_prefix="gateway", headers_enabled=False,
                                in_memory_fallback_enabled=False, swallow_errors=False)
        self._limiter = self._slowapi.limiter
        self._token_limiter = SlidingWindowCounterRateLimiter(self._slowapi._storage)
        self._default_rpm = default_rpm
        self._default_tpm = default_tpm
        self._fail_open = unsafe_fail_open

    def _hit(self, strategy: Strategy, limit: int, kind: str, principal: Principal, cost: int,
             request_id: str) -> None:
        item = RateLimitItemPerMinute(limit)
        try:
            allowed = strategy.hit(item, kind, principal.key_id, cost=cost)
            stats = None if allowed else strategy.get_window_stats(item, kind, principal.key_id)
        except Exception:  # noqa: BLE001 - any storage failure (Redis down, timeout) is handled the same way
            if self._fail_open:
                log.error("rate-limit store unavailable; failing open (unsafe setting)",
                          extra={"request_id": request_id, "reason": "ratelimit_store_fail_open"})
                return
            log.error("rate-limit store unavailable", extra={"request_id": request_id,
                                                            "reason": "ratelimit_store_unavailable"})
            raise Denial(503, "service_unavailable", "Service temporarily unavailable.",
                         error_type="server_error") from None
        if allowed:
            return
        RATE_LIMITED.labels(limit=kind).inc()
        retry_after = max(1, math.ceil(stats.reset_time - time.time())) if stats else 60
        name = "requests" if kind == "rpm" else "tokens"
        log.info("rate limited", extra={"request_id": request_id, "key_id": principal.key_id,
                                        "reason": f"rate_limited_{kind}"})
        raise Denial(429, "rate_limited", f"Rate limit reached for {name} per minute; retry later.",
                     error_type="rate_limit_error", headers=[
                         (b"retry-after", str(retry_after).encode()),
                         (f"x-ratelimit-limit-{name}".encode(), str(limit).encode()),
                         (f"x-ratelimit-remaining-{name}".encode(), str(max(stats.remaining, 0) if stats else 0)
                          .encode()),
                         (f"x-ratelimit-reset-{name}".encode(), f"{retry_after}s".encode()),
                     ])

    def reachable(self) -> bool:
        try:
            return bool(self._slowapi._storage.check())
        except Exception:  # noqa: BLE001 - unreachable is the answer, whatever the client raised
            return False

    def requests(self, principal: Principal, request_id: str) -> None:
        """Count one request against the key's requests-per-minute."""
        self._hit(self._limiter, principal.rpm_limit or self._default_rpm, "rpm", principal, 1, request_id)

    def tokens(self, principal: Principal, tokens: int, request_id: str) -> None:
        """Count the request's worst-case tokens against the key's tokens-per-minute."""
        limit = principal.tpm_limit or self._default_tpm
        if tokens > limit:
            raise Denial(429, "rate_limited", "This request alone exceeds the key's tokens-per-minute limit.",
                         error_type="rate_limit_error")
        self._hit(self._token_limiter, limit, "tpm", principal, max(tokens, 1), request_id)
