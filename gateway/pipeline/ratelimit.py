"""Step: per-key rate limits — requests per minute and tokens per minute — before LiteLLM is called.

Counters live in slowapi's limiter (on the ``limits`` library): in memory by default, in Redis when
``GATEWAY_REDIS_URL`` is set, so every replica of a fleet counts against the same window. The strategy is a moving
window, so a fleet admits exactly the limit in any 60 seconds. Tokens are weighted hits of the request's worst-case
token estimate (prompt bound + output bound), taken when the request is admitted.

If the counter store fails, the answer is ``503 service_unavailable`` (fail closed), unless the deployer set
``GATEWAY_UNSAFE_RATE_LIMIT_FAIL_OPEN`` (threat-model TM-T11).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from limits import RateLimitItemPerMinute
from slowapi import Limiter

from gateway.metrics import RATE_LIMITED
from gateway.pipeline.errors import Denial
from gateway.principal import Principal

log = logging.getLogger("gateway.ratelimit")


class RateLimiter:
    def __init__(self, *, storage_uri: str, storage_options: dict[str, Any], default_rpm: int, default_tpm: int,
                 unsafe_fail_open: bool = False) -> None:
        self._slowapi = Limiter(key_func=lambda _request: "", storage_uri=storage_uri, strategy="moving-window",
                                storage_options=storage_options, key_prefix="gateway", headers_enabled=False,
                                in_memory_fallback_enabled=False, swallow_errors=False)
        self._limiter = self._slowapi.limiter
        self._default_rpm = default_rpm
        self._default_tpm = default_tpm
        self._fail_open = unsafe_fail_open

    def _hit(self, limit: int, kind: str, principal: Principal, cost: int, request_id: str) -> None:
        item = RateLimitItemPerMinute(limit)
        try:
            allowed = self._limiter.hit(item, kind, principal.key_id, cost=cost)
            stats = None if allowed else self._limiter.get_window_stats(item, kind, principal.key_id)
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
        self._hit(principal.rpm_limit or self._default_rpm, "rpm", principal, 1, request_id)

    def tokens(self, principal: Principal, tokens: int, request_id: str) -> None:
        """Count the request's worst-case tokens against the key's tokens-per-minute."""
        limit = principal.tpm_limit or self._default_tpm
        if tokens > limit:
            raise Denial(429, "rate_limited", "This request alone exceeds the key's tokens-per-minute limit.",
                         error_type="rate_limit_error")
        self._hit(limit, "tpm", principal, max(tokens, 1), request_id)
