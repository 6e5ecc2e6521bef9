"""The customer's own endpoints, answered by the gateway itself (not LiteLLM): the model list, one model, and
self-revocation."""

from __future__ import annotations

import json
import logging

from gateway.audit.log import AuditLog
from gateway.keys.format import KeyKind
from gateway.keys.service import AuthDenied, KeyService
from gateway.logs import new_request_id
from gateway.metrics import REVOCATIONS
from gateway.pipeline.asgi import Receive, Scope, Send, bearer_token, send_json
from gateway.pipeline.authn import authenticate, honeytoken_alarm
from gateway.pipeline.errors import Denial, invalid_api_key, send_denial, service_unavailable
from gateway.policy import Model as PolicyModel
from gateway.policy import Policy

log = logging.getLogger("gateway.app")


def model_view(model: PolicyModel, policy: Policy) -> dict[str, object]:
    """A policy model as OpenAI's Model object; ``owned_by`` names the protocol of the provider serving it (its
    ``kind``: openai, anthropic, azure), never the provider's host."""
    return {"id": model.name, "object": "model", "created": 0, "owned_by": policy.kind(model)}


class ModelList:
    """``GET /v1/models``: the policy's models this key may use; ``GET /v1/models/{id}``: one of them (404 for any
    other, the same answer whether the model is unknown or only not this key's)."""

    PREFIX = "/v1/models/"

    def __init__(self, keys: KeyService, policy: Policy, audit: AuditLog) -> None:
        self._keys = keys
        self._policy = policy
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        try:
            principal = authenticate(scope, self._keys, KeyKind.CUSTOMER, request_id, self._audit)
        except Denial as denial:
            await send_denial(send, denial, request_id)
            return
        allowed = [m for m in self._policy.models if m.name in principal.models]
        path = scope["path"]
        if path.startswith(self.PREFIX):
            wanted = path.removeprefix(self.PREFIX)
            found = next((m for m in allowed if m.name == wanted), None)
            if found is None:
                await send_denial(send, Denial(404, "model_not_found",
                                               "The model does not exist or this key may not use it.",
                                               param="model"), request_id)
                return
            await send_json(send, 200, json.dumps(model_view(found, self._policy)).encode(), request_id)
            return
        data = [model_view(m, self._policy) for m in allowed]
        await send_json(send, 200, json.dumps({"object": "list", "data": data}).encode(), request_id)


class SelfRevocation:
    """``POST /v1/keys/revoke``, the leaked-key response: whoever holds a key can kill it by presenting it.

    The answer is the same whether the key was live, already revoked, expired, unknown or malformed, so this
    endpoint tells an attacker nothing about a guessed key.
    """

    def __init__(self, keys: KeyService, audit: AuditLog) -> None:
        self._keys = keys
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        presented = bearer_token(scope)
        if presented is None:
            await send_denial(send, invalid_api_key(), request_id)
            return
        revoked_id = None
        try:
            for kind in (KeyKind.CUSTOMER, KeyKind.ADMIN):
                try:
                    principal = self._keys.verify(presented, kind)
                except AuthDenied as denied:
                    if denied.reason == "honeytoken":
                        # Someone holds a canary and is trying to kill it: still an alarm, still the same answer.
                        honeytoken_alarm(self._audit, denied.key_id, request_id,
                                         "honeytoken key presented for revocation", "self_revoke")
                        break
                    continue
                self._keys.revoke(principal.key_id, by="self")
                REVOCATIONS.labels(channel="self").inc()
                self._audit.try_record("key_self_revoked", actor=principal.key_id, subject=principal.key_id,
                                       request_id=request_id)
                revoked_id = principal.key_id
                break
        except Exception:
            # Fail closed and say so: the caller must not believe a leaked key is dead when it may not be.
            log.exception("self-revocation failed", extra={"request_id": request_id})
            await send_denial(send, service_unavailable(), request_id)
            return
        log.warning("self-revocation", extra={"key_id": revoked_id, "request_id": request_id,
                                              "outcome": "revoked" if revoked_id else "no_live_key"})
        await send_json(send, 200, json.dumps({"object": "key.revocation", "revoked": True}).encode(), request_id)
