"""Step: per-key rate limits (:mod:`gateway.ratelimit`) as HTTP answers.

Over the limit: ``429 rate_limited`` with ``Retry-After`` and ``x-ratelimit-*``. Counter store unreachable:
``503 service_unavailable`` (fail closed), unless the deployer set ``GATEWAY_UNSAFE_RATE_LIMIT_FAIL_OPEN``
(threat-model TM-T11).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.metrics import RATE_LIMITED
from gateway.pipeline.errors import Denial, service_unavailable
from gateway.principal import Principal
from gateway.ratelimit.limiter import CounterStoreUnavailable, RateLimited, RateLimiter

log = logging.getLogger("gateway.ratelimit")

NAMES = {"rpm": "requests", "tpm": "tokens"}


class RateLimitStep:
    def __init__(self, limiter: RateLimiter, *, unsafe_fail_open: bool = False) -> None:
        self.limiter = limiter
        self._fail_open = unsafe_fail_open

    def requests(self, principal: Principal, request_id: str) -> None:
        """Count one request against the key's requests-per-minute."""
        self._count(lambda: self.limiter.requests(principal), principal, request_id)

    def tokens(self, principal: Principal, tokens: int, request_id: str) -> None:
        """Count the request's worst-case tokens against the key's tokens-per-minute."""
        self._count(lambda: self.limiter.tokens(principal, tokens), principal, request_id)

    def _count(self, hit: Callable[[], None], principal: Principal, request_id: str) -> None:
        try:
            hit()
        except CounterStoreUnavailable:
            if self._fail_open:
                log.error("rate-limit store unavailable; failing open (unsafe setting)",
                          extra={"request_id": request_id, "reason": "ratelimit_store_fail_open"})
                return
            log.error("rate-limit store unavailable", extra={"request_id": request_id,
                                                            "reason": "ratelimit_store_unavailable"})
            raise service_unavailable() from None
        except RateLimited as limited:
            raise _denial(limited, principal, request_id) from None


def _denial(limited: RateLimited, principal: Principal, request_id: str) -> Denial:
    if limited.alone:
        return Denial(429, "rate_limited", "This request alone exceeds the key's tokens-per-minute limit.",
                      error_type="rate_limit_error")
    RATE_LIMITED.labels(limit=limited.counter).inc()
    name = NAMES[limited.counter]
    log.info("rate limited", extra={"request_id": request_id, "key_id": principal.key_id,
                                    "reason": f"rate_limited_{limited.counter}"})
    return Denial(429, "rate_limited", f"Rate limit reached for {name} per minute; retry later.",
                  error_type="rate_limit_error", headers=[
                      (b"retry-after", str(limited.retry_after).encode()),
                      (f"x-ratelimit-limit-{name}".encode(), str(limited.limit).encode()),
                      (f"x-ratelimit-remaining-{name}".encode(), str(limited.remaining).encode()),
                      (f"x-ratelimit-reset-{name}".encode(), f"{limited.retry_after}s".encode()),
                  ])
