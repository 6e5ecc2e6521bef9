"""Step: per-key rate limits (:mod:`gateway.ratelimit`) as HTTP answers.

Every answer after the requests counter carries OpenAI's ``x-ratelimit-{limit,remaining,reset}-requests`` headers,
and the ``-tokens`` trio once the tokens counter ran. Over the limit: ``429 rate_limited`` with ``Retry-After`` and
those headers. Counter store unreachable:
``503 service_unavailable`` (fail closed), unless the deployer set ``GATEWAY_UNSAFE_RATE_LIMIT_FAIL_OPEN``
(threat-model TM-T11).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.metrics import RATE_LIMITED
from gateway.pipeline.errors import Denial, service_unavailable
from gateway.principal import Principal
from gateway.ratelimit.limiter import CounterStoreUnavailable, RateLimited, RateLimiter, Window

log = logging.getLogger("gateway.ratelimit")

NAMES = {"rpm": "requests", "tpm": "tokens"}


Headers = list[tuple[bytes, bytes]]


def window_headers(window: Window) -> Headers:
    """OpenAI's x-ratelimit-* trio for one counter."""
    name = NAMES[window.counter]
    return [(f"x-ratelimit-limit-{name}".encode(), str(window.limit).encode()),
            (f"x-ratelimit-remaining-{name}".encode(), str(window.remaining).encode()),
            (f"x-ratelimit-reset-{name}".encode(), f"{window.reset_seconds}s".encode())]


class RateLimitStep:
    def __init__(self, limiter: RateLimiter, *, unsafe_fail_open: bool = False) -> None:
        self.limiter = limiter
        self._fail_open = unsafe_fail_open

    def requests(self, principal: Principal, request_id: str) -> Headers:
        """Count one request against the key's requests-per-minute; the x-ratelimit-*-requests headers."""
        return self._count(lambda: self.limiter.requests(principal), principal, request_id)

    def tokens(self, principal: Principal, tokens: int, request_id: str) -> Headers:
        """Count the request's worst-case tokens against the key's tokens-per-minute; the -tokens headers."""
        return self._count(lambda: self.limiter.tokens(principal, tokens), principal, request_id)

    def _count(self, hit: Callable[[], Window], principal: Principal, request_id: str) -> Headers:
        try:
            return window_headers(hit())
        except CounterStoreUnavailable:
            if self._fail_open:
                log.error("rate-limit store unavailable; failing open (unsafe setting)",
                          extra={"request_id": request_id, "reason": "ratelimit_store_fail_open"})
                return []
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
    window = Window(limited.counter, limited.limit, limited.remaining, limited.retry_after)
    return Denial(429, "rate_limited", f"Rate limit reached for {name} per minute; retry later.",
                  error_type="rate_limit_error",
                  headers=[(b"retry-after", str(limited.retry_after).encode()), *window_headers(window)])
