"""The gateway's own Prometheus metrics, in a registry of their own (LiteLLM's are not exposed).

Labels carry reason codes and route names only: never a key, a key id, a digest or a secret.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

AUTH_DENIALS = Counter("gateway_auth_denials_total", "Authentication denials by reason.", ["reason"],
                       registry=REGISTRY)
HONEYTOKEN_USES = Counter("gateway_honeytoken_uses_total", "Uses of honeytoken (canary) keys.", registry=REGISTRY)

REQUESTS = Counter("gateway_requests_total", "Requests by route and status.", ["route", "status"], registry=REGISTRY)
DENIALS = Counter("gateway_denials_total", "Requests refused by the gateway, by error code.", ["code"],
                  registry=REGISTRY)
RATE_LIMITED = Counter("gateway_rate_limited_total", "Rate-limit rejections, by limit.", ["limit"], registry=REGISTRY)
REVOCATIONS = Counter("gateway_revocations_total", "Key revocations, by channel.", ["channel"], registry=REGISTRY)
UPSTREAM_SECONDS = Histogram("gateway_upstream_seconds", "Time from handoff to LiteLLM until its response ended.",
                             ["route"], registry=REGISTRY,
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600))
RESERVATIONS_OPEN = Gauge("gateway_reservations_open", "Credit reservations not yet settled (whole store).",
                          registry=REGISTRY)
