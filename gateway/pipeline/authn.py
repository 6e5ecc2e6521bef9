"""Step: authenticate the bearer key. Every failure is the same ``401 invalid_api_key``; the reason is logged."""

from __future__ import annotations

import logging

from gateway.audit.log import AuditLog
from gateway.keys.format import KeyKind
from gateway.keys.service import AuthDenied, KeyService
from gateway.keys.store import StoreUnavailable
from gateway.metrics import AUTH_DENIALS, HONEYTOKEN_USES
from gateway.pipeline.asgi import Scope, bearer_token
from gateway.pipeline.errors import invalid_api_key, service_unavailable
from gateway.principal import Principal

log = logging.getLogger("gateway.authn")

# Where gateway.admin.gate puts the verified admin principal for the admin app (a Python object: nothing on the wire
# can create a scope entry), so the admin key is verified once, before the body is read.
ADMIN_PRINCIPAL_SCOPE_KEY = "gateway.admin_principal"


def honeytoken_alarm(audit: AuditLog, key_id: str | None, request_id: str, message: str, reason: str,
                     extra: dict[str, object] | None = None) -> None:
    """A canary key was presented: count it, log it CRITICAL and write it to the audit log (threat-model TM-R2)."""
    HONEYTOKEN_USES.inc()
    log.critical(message, extra={"key_id": key_id, "request_id": request_id, **(extra or {})})
    audit.try_record("honeytoken_used", actor=key_id or "anonymous", reason=reason, request_id=request_id)


def authenticate(scope: Scope, keys: KeyService, kind: KeyKind, request_id: str, audit: AuditLog) -> Principal:
    try:
        return keys.verify(bearer_token(scope), kind)
    except StoreUnavailable:
        # Fail closed: without the store we cannot tell a revoked key from a live one.
        log.error("key store unavailable", extra={"request_id": request_id, "reason": "store_unavailable"})
        raise service_unavailable() from None
    except AuthDenied as denied:
        # Never log the presented key or its digest: the reason code and, when known, the key id.
        AUTH_DENIALS.labels(reason=denied.reason).inc()
        if denied.reason == "honeytoken":
            honeytoken_alarm(audit, denied.key_id, request_id, "honeytoken key used", denied.reason,
                             {"reason": denied.reason, "surface": kind.name.lower(), "path": scope.get("path")})
        else:
            log.warning("authentication denied", extra={"reason": denied.reason, "key_id": denied.key_id,
                                                        "request_id": request_id, "surface": kind.name.lower(),
                                                        "path": scope.get("path")})
            audit.try_record("auth_denied", actor=denied.key_id or "anonymous", reason=denied.reason,
                             request_id=request_id)
        raise invalid_api_key() from None
