"""The gate in front of the admin app: authenticate, then read the body (bounded), then hand over.

The admin key is checked before a byte of the body is read, so an unauthenticated client cannot make the gateway
buffer anything (FastAPI would parse the body before its dependencies run); an admin body is at most
``ADMIN_MAX_BODY_BYTES``. The verified principal travels in the scope, where nothing on the wire can put one. Every
admin response gets a request id, and loses any Cache-Control the admin app set, so that the security headers' own
``no-store`` applies (one of them carries a new key).
"""

from __future__ import annotations

from gateway.audit.log import AuditLog
from gateway.keys.format import KeyKind
from gateway.keys.service import KeyService
from gateway.logs import new_request_id
from gateway.pipeline.asgi import ASGIApp, Message, Receive, Scope, Send
from gateway.pipeline.authn import ADMIN_PRINCIPAL_SCOPE_KEY, authenticate
from gateway.pipeline.body import ClientGone, read_body, replay
from gateway.pipeline.errors import Denial, send_denial

# The largest admin request body: the biggest (a key with 200 models) is a few KiB.
ADMIN_MAX_BODY_BYTES = 64 * 1024


class AdminGate:
    def __init__(self, admin_app: ASGIApp, keys: KeyService, audit: AuditLog) -> None:
        self._admin = admin_app
        self._keys = keys
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        try:
            principal = authenticate(scope, self._keys, KeyKind.ADMIN, request_id, self._audit)
            body = await read_body(scope, receive, ADMIN_MAX_BODY_BYTES)
        except Denial as denial:
            await send_denial(send, denial, request_id)
            return
        except ClientGone:
            return
        scope = dict(scope)
        scope["state"] = {**(scope.get("state") or {}), "request_id": request_id}
        scope[ADMIN_PRINCIPAL_SCOPE_KEY] = principal

        async def marked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"cache-control"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self._admin(scope, replay(body, receive), marked_send)
