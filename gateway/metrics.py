"""The gateway's own Prometheus metrics, in a registry of their own (LiteLLM's are not exposed).

Labels carry reason codes and route names only: never a key, a key id, a digest or a secret.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry(auto_describe=True)

AUTH_DENIALS = Counter("gateway_auth_denials_total", "Authentication denials by reason.", ["reason"],
                       registry=REGISTRY)
HONEYTOKEN_USES = Counter("gateway_honeytoken_uses_total", "Uses of honeytoken (canary) keys.", registry=REGISTRY)
