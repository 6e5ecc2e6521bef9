"""The route table: every (method, path) the gateway answers, and the endpoint that answers it.

Routing uses the ASGI path and method alone (never the Host header) and matches exactly: no prefixes, no trailing
slashes, no path parameters on the customer surface. The one prefix is ``/admin/``, handed whole to the admin app
(which has its own exact routes) behind the admin gate. Everything else answers 404 in the OpenAI error shape.
CORS preflights and metric labels are derived from this table, so nothing can be routed without being listed here.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum


class Endpoint(StrEnum):
    HANDOFF = "handoff"  # the pre-flight, then LiteLLM (gateway.pipeline.customer)
    MODELS = "models"  # the key's model list (gateway.pipeline.own_routes)
    SELF_REVOKE = "self_revoke"  # a key revokes itself (gateway.pipeline.own_routes)
    HEALTH = "health"  # liveness probe (gateway.probes)
    READY = "ready"  # readiness probe (gateway.probes)
    ADMIN = "admin"  # the admin app, behind the admin gate (gateway.admin)


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    endpoint: Endpoint
    cors: bool = False  # browsers may call it cross-origin when the policy lists origins


ROUTES = (
    Route("POST", "/v1/chat/completions", Endpoint.HANDOFF, cors=True),
    Route("POST", "/v1/completions", Endpoint.HANDOFF, cors=True),
    Route("POST", "/v1/embeddings", Endpoint.HANDOFF, cors=True),
    Route("GET", "/v1/models", Endpoint.MODELS, cors=True),
    Route("POST", "/v1/keys/revoke", Endpoint.SELF_REVOKE, cors=True),
    Route("GET", "/healthz", Endpoint.HEALTH),
    Route("GET", "/readyz", Endpoint.READY),
)
ADMIN_PREFIX = "/admin/"

EXACT = {(route.method, route.path): route for route in ROUTES}
CORS_PATHS = frozenset(route.path for route in ROUTES if route.cors)


def resolve(method: str, path: str) -> Endpoint | None:
    """The endpoint for this request, or None (404)."""
    route = EXACT.get((method, path))
    if route is not None:
        return route.endpoint
    if path.startswith(ADMIN_PREFIX):
        return Endpoint.ADMIN
    return None


def is_preflight(method: str, path: str) -> bool:
    """A CORS preflight for a route that allows cross-origin calls."""
    return method == "OPTIONS" and path in CORS_PATHS


def metric_label(method: str, path: str) -> str:
    """The ``route`` label: a listed path, "/admin" for the admin app, "other" for everything else (never the raw
    path of an unlisted request, which would let clients create label values)."""
    if (method, path) in EXACT:
        return path
    return "/admin" if path.startswith(ADMIN_PREFIX) else "other"


def paths(endpoint: Endpoint) -> list[str]:
    """The listed paths an endpoint answers (for the report and the docs)."""
    return [route.path for route in ROUTES if route.endpoint is endpoint]
