"""Step: authenticate the bearer key. Every failure is the same ``401 invalid_api_key``; the reason is logged."""

from __future__ import annotations

import logging

from gateway.audit.log import AuditLog
from gateway.keys.format import KeyKind
from gateway.keys.service import AuthDenied, KeyService
from gateway.keys.store import StoreUnavailable
from gateway.metrics import AUTH_DENIALS, HONEYTOKEN_USES
from gateway.pipeline.asgi import Scope, bearer_token
from gateway.pipeline.errors import Denial, invalid_api_key
from gateway.principal import Principal

log = logging.getLogger("gateway.authn")

# Where gateway.app puts the verified admin principal for the admin app (a Python object: nothing on the wire can
# create a scope entry), so the admin key is verified once, before the body is read.
ADMIN_PRINCIPAL_SCOPE_KEY = "gateway.admin_principal"


def authenticate(scope: Scope, keys: KeyService, kind: KeyKind, request_id: str,
                 audit: AuditLog | None = None) -> Principal:
    try:
        return keys.verify(bearer_token(scope), kind)
    except StoreUnavailable:
        # Fail closed: without the store we cannot tell a revoked key from a live one.
        log.error("key store unavailable", extra={"request_id": request_id, "reason": "store_unavailable"})
        raise Denial(503, "service_unavailable", "Service temporarily unavailable.", error_type="server_error") from None
    except AuthDenied as denied:
        # Never log the presented key or its digest: the reason code and, when known, the key id.
        extra = {"reason": denied.reason, "key_id": denied.key_id, "request_id": request_id,
                 "surface": kind.name.lower(), "path": scope.get("path")}
        AUTH_DENIALS.labels(reason=denied.reason).inc()
        if denied.reason == "honeytoken":
            HONEYTOKEN_USES.inc()
            log.critical("honeytoken key used", extra=extra)
        else:
            log.warning("authentication denied", extra=extra)
        if audit is not None:
            audit.try_record("honeytoken_used" if denied.reason == "honeytoken" else "auth_denied",
                             actor=denied.key_id or "anonymous", reason=denied.reason, request_id=request_id)
        raise invalid_api_key() from None
