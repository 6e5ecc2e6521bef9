"""The route table: every (method, path) the gateway answers, and the endpoint that answers it.

Routing uses the ASGI path and method alone (never the Host header) and matches exactly: no trailing slashes, no
dot segments. Two routes are prefixes: ``GET /v1/models/{id}`` (the rest of the path is the model id, answered only
for the key's models) and ``/admin/``, handed whole to the admin app (which has its own exact routes) behind the
admin gate. Everything else answers 404 in the OpenAI error shape.
CORS preflights and metric labels are derived from this table, so nothing can be routed without being listed here.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum


class Endpoint(StrEnum):
    HANDOFF = "handoff"  # the pre-flight, then LiteLLM (gateway.pipeline.customer)
    MODELS = "models"  # the key's model list (gateway.pipeline.own_routes)
    MODEL = "model"  # one of the key's models (gateway.pipeline.own_routes)
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
    prefix: bool = False  # the path is a prefix; what follows it is the route's one parameter

    @property
    def label(self) -> str:
        """The route as a metric label: the template, never a client's parameter."""
        return self.path + "{id}" if self.prefix else self.path


ROUTES = (
    Route("POST", "/v1/chat/completions", Endpoint.HANDOFF, cors=True),
    Route("POST", "/v1/completions", Endpoint.HANDOFF, cors=True),
    Route("POST", "/v1/embeddings", Endpoint.HANDOFF, cors=True),
    Route("POST", "/v1/responses", Endpoint.HANDOFF, cors=True),
    Route("GET", "/v1/models", Endpoint.MODELS, cors=True),
    Route("GET", "/v1/models/", Endpoint.MODEL, cors=True, prefix=True),
    Route("POST", "/v1/keys/revoke", Endpoint.SELF_REVOKE, cors=True),
    Route("GET", "/healthz", Endpoint.HEALTH),
    Route("GET", "/readyz", Endpoint.READY),
)
ADMIN_PREFIX = "/admin/"

EXACT = {(route.method, route.path): route for route in ROUTES if not route.prefix}
PREFIXES = [route for route in ROUTES if route.prefix]


def route_for(method: str, path: str) -> Route | None:
    """The listed route this request takes: an exact match, else a prefix with a non-empty parameter."""
    route = EXACT.get((method, path))
    if route is not None:
        return route
    for candidate in PREFIXES:
        if method == candidate.method and path.startswith(candidate.path) and len(path) > len(candidate.path):
            return candidate
    return None


def resolve(method: str, path: str) -> Endpoint | None:
    """The endpoint for this request, or None (404)."""
    route = route_for(method, path)
    if route is not None:
        return route.endpoint
    if path.startswith(ADMIN_PREFIX):
        return Endpoint.ADMIN
    return None


def is_preflight(method: str, path: str) -> bool:
    """A CORS preflight for a route that allows cross-origin calls."""
    if method != "OPTIONS":
        return False
    return any(route.cors and (route.path == path or (route.prefix and path.startswith(route.path)
                                                       and len(path) > len(route.path))) for route in ROUTES)


def metric_label(method: str, path: str) -> str:
    """The ``route`` label: a listed route's template, "/admin" for the admin app, "other" for everything else
    (never the raw path of a request, which would let clients create label values)."""
    route = route_for(method, path)
    if route is not None:
        return route.label
    return "/admin" if path.startswith(ADMIN_PREFIX) else "other"

