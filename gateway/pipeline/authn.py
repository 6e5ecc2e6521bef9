"""Step: authenticate the bearer key. Every failure is the same ``401 invalid_api_key``; the reason is logged."""

from __future__ import annotations

import logging

from gateway.keys.format import KeyKind
from gateway.keys.service import AuthDenied, KeyService
from gateway.keys.store import StoreUnavailable
from gateway.pipeline.asgi import Scope, bearer_token
from gateway.pipeline.errors import Denial, invalid_api_key
from gateway.principal import Principal

log = logging.getLogger("gateway.authn")


def authenticate(scope: Scope, keys: KeyService, kind: KeyKind, request_id: str) -> Principal:
    try:
        return keys.verify(bearer_token(scope), kind)
    except StoreUnavailable:
        # Fail closed: without the store we cannot tell a revoked key from a live one.
        log.error("key store unavailable", extra={"request_id": request_id, "reason": "store_unavailable"})
        raise Denial(503, "service_unavailable", "Service temporarily unavailable.", error_type="server_error") from None
    except AuthDenied as denied:
        # Never log the presented key or its digest: the reason code and, when known, the key id.
        log.warning(
            "authentication denied",
            extra={"reason": denied.reason, "key_id": denied.key_id, "request_id": request_id,
                   "surface": kind.name.lower(), "path": scope.get("path")},
        )
        raise invalid_api_key() from None
