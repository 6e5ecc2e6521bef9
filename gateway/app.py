"""The gateway's ASGI app: one port, an exact allow-list of routes, nothing else reachable.

Routing uses the ASGI path and method alone (never the Host header) and matches exactly: no prefixes, no trailing
slashes, no path parameters on the customer surface. Everything not listed answers 404 in the OpenAI error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import re2

from gateway.audit.log import AuditHeadMissing, AuditLog
from gateway.credits.ledger import SqlLedger
from gateway.credits.pricing import Price
from gateway.credits.sweeper import sweep_forever
from gateway.keys.format import KeyKind
from gateway.keys.service import AuthDenied, KeyService
from gateway.metrics import HONEYTOKEN_USES, REQUESTS, RESERVATIONS_OPEN, REVOCATIONS
from gateway.pipeline.asgi import ASGIApp, Message, Receive, Scope, Send, bearer_token
from gateway.pipeline.authn import ADMIN_PRINCIPAL_SCOPE_KEY, authenticate
from gateway.pipeline.body import ClientGone, read_body, replay
from gateway.pipeline.credits import CreditStep
from gateway.pipeline.customer import CustomerPipeline, new_request_id
from gateway.pipeline.errors import Denial, invalid_api_key, not_found, send_denial
from gateway.pipeline.guardrails import Guardrails
from gateway.pipeline.ratelimit import RateLimiter
from gateway.pipeline.security_headers import allowed_origin, send_preflight, with_security_headers
from gateway.policy import Policy

log = logging.getLogger("gateway.app")

# The customer surface. Anything else under /v1 (and anywhere outside /admin) is 404.
HANDOFF_ROUTES = frozenset(
    {("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings")}
)
OWN_ROUTES = frozenset({("GET", "/v1/models"), ("POST", "/v1/keys/revoke")})
# Unauthenticated probes for the orchestrator; they reveal nothing but "ok" / "ready" / "not_ready".
PROBE_ROUTES = frozenset({("GET", "/healthz"), ("GET", "/readyz")})
# The largest admin request body: the biggest (a key with 200 models) is a few KiB.
ADMIN_MAX_BODY_BYTES = 64 * 1024


def counted(send: Send, route: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            REQUESTS.labels(route=route, status=str(message["status"])).inc()
        await send(message)

    return wrapped


async def send_json(send: Send, status: int, payload: object, request_id: str) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GatewayApp:
    def __init__(
        self,
        *,
        llm_app: ASGIApp,
        admin_app: ASGIApp,
        keys: KeyService,
        policy: Policy,
        ledger: SqlLedger,
        prices: dict[str, Price],
        rate_limiter: RateLimiter,
        audit: AuditLog,
        model_fields: dict[str, frozenset[str]],
        lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
        llm_state: dict[str, Any] | None = None,
        llm_ready: Callable[[], bool] | None = None,
    ) -> None:
        self._keys = keys
        self._policy = policy
        self._admin = admin_app
        self._lifespan = lifespan
        self._ledger = ledger
        self._cors_origins = frozenset(policy.cors.allow_origins)
        self._rate_limiter = rate_limiter
        self._llm_ready = llm_ready or (lambda: True)
        self._started = False
        RESERVATIONS_OPEN.set_function(lambda: float(ledger.open_reservations()))
        self._customer = CustomerPipeline(
            llm_app=llm_app,
            keys=keys,
            exposed_models=frozenset(policy.model_names()),
            model_modes={m.name: m.mode for m in policy.models},
            model_fields=model_fields,
            limits=policy.limits,
            guardrails=Guardrails(
                secret_scan=policy.guardrails.secret_scan,
                deny_patterns=[(rule.name, re2.compile(rule.pattern)) for rule in policy.guardrails.deny_patterns],
            ),
            llm_state=llm_state if llm_state is not None else {},
            credits=CreditStep(ledger, prices, policy),
            rate_limiter=rate_limiter,
            audit=audit,
        )
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
            return
        if scope["type"] != "http":
            # No websockets: close before accepting.
            await send({"type": "websocket.close", "code": 1008})
            return
        method, path = scope["method"], scope["path"]
        cors_origin = allowed_origin(scope, self._cors_origins) if path.startswith("/v1/") else None
        if method == "OPTIONS" and cors_origin is not None and (
                ("POST", path) in HANDOFF_ROUTES or ("POST", path) in OWN_ROUTES or ("GET", path) in OWN_ROUTES):
            await send_preflight(with_security_headers(send, None), cors_origin)
            return
        send = with_security_headers(send, cors_origin)
        send = counted(send, path if (method, path) in HANDOFF_ROUTES | OWN_ROUTES | PROBE_ROUTES
                       else "/admin" if path.startswith("/admin/") else "other")
        if (method, path) in PROBE_ROUTES:
            await self._probe(path, send)
        elif (method, path) in HANDOFF_ROUTES:
            await self._customer(scope, receive, send)
        elif (method, path) == ("GET", "/v1/models"):
            await self._models(scope, send)
        elif (method, path) == ("POST", "/v1/keys/revoke"):
            await self._self_revoke(scope, send)
        elif path.startswith("/admin/"):
            await self._admin_call(scope, receive, send)
        else:
            await send_denial(send, not_found(), new_request_id())

    async def _probe(self, path: str, send: Send) -> None:
        request_id = new_request_id()
        if path == "/healthz":
            await send_json(send, 200, {"status": "ok"}, request_id)
            return
        checks = {
            "started": self._started,
            "database": await asyncio.to_thread(self._ledger.ping),
            "rate_limit_store": await asyncio.to_thread(self._rate_limiter.reachable),
            "litellm_router": self._llm_ready(),
        }
        failing = [name for name, ok in checks.items() if not ok]
        if failing:
            # Which check failed goes to the log; the probe's answer reveals nothing about the internals.
            log.warning("not ready", extra={"request_id": request_id, "reason": ",".join(failing)})
            await send_json(send, 503, {"status": "not_ready"}, request_id)
        else:
            await send_json(send, 200, {"status": "ready"}, request_id)

    async def _admin_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, then read the body (bounded), then hand over to the admin app.

        Every admin response gets a request id and ``Cache-Control: no-store`` (one of them carries a new key). The
        admin key is checked before a byte of the body is read, so an unauthenticated client cannot make the
        gateway buffer anything (FastAPI would parse the body before its dependencies run); an admin body is at most
        ``ADMIN_MAX_BODY_BYTES``. The verified principal travels in the scope, where nothing on the wire can put one.
        """
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
                headers += [(b"x-request-id", request_id.encode()), (b"cache-control", b"no-store")]
                message = {**message, "headers": headers}
            await send(message)

        await self._admin(scope, replay(body, receive), marked_send)

    async def _models(self, scope: Scope, send: Send) -> None:
        request_id = new_request_id()
        try:
            principal = authenticate(scope, self._keys, KeyKind.CUSTOMER, request_id, self._audit)
        except Denial as denial:
            await send_denial(send, denial, request_id)
            return
        created = 0
        data = [
            {"id": m.name, "object": "model", "created": created, "owned_by": m.provider}
            for m in self._policy.models
            if m.name in principal.models
        ]
        await send_json(send, 200, {"object": "list", "data": data}, request_id)

    async def _self_revoke(self, scope: Scope, send: Send) -> None:
        """The leaked-key response: whoever holds a key can kill it by presenting it.

        The answer is the same whether the key was live, already revoked, expired, unknown or malformed, so this
        endpoint tells an attacker nothing about a guessed key.
        """
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
                        HONEYTOKEN_USES.inc()
                        log.critical("honeytoken key presented for revocation",
                                     extra={"key_id": denied.key_id, "request_id": request_id})
                        self._audit.try_record("honeytoken_used", actor=denied.key_id or "anonymous",
                                               reason="self_revoke", request_id=request_id)
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
            await send_denial(send, Denial(503, "service_unavailable", "Service temporarily unavailable.",
                                           error_type="server_error"), request_id)
            return
        log.warning("self-revocation", extra={"key_id": revoked_id, "request_id": request_id,
                                              "outcome": "revoked" if revoked_id else "no_live_key"})
        await send_json(send, 200, {"object": "key.revocation", "revoked": True}, request_id)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        stack = contextlib.AsyncExitStack()
        try:
            if self._lifespan is not None:
                await stack.enter_async_context(self._lifespan())
            credits = self._policy.credits
            sweeper = asyncio.create_task(sweep_forever(
                self._ledger, timedelta(seconds=credits.reservation_ttl_seconds), credits.sweep_interval_seconds))
            stack.callback(sweeper.cancel)
        except BaseException:
            log.exception("startup failed")
            await send({"type": "lifespan.startup.failed", "message": "startup failed"})
            return
        # Everything built so far (LiteLLM's proxy alone is ~700k objects) lives as long as the process. Freezing it
        # keeps the collector's full passes from walking it again: each such pass took ~360 ms here, stalling every
        # request in flight (docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        try:
            seq, mac = self._audit.head()
        except AuditHeadMissing:
            # Fail closed: without its head the chain cannot be extended or checked (threat-model TM-R1).
            log.critical("audit head row is missing; refusing to start (run gateway audit verify)")
            await stack.aclose()
            await send({"type": "lifespan.startup.failed", "message": "audit head missing"})
            return
        self._audit.try_record("boot", actor="system")
        # The head printed at every boot lets an auditor catch a rewound (truncated) chain later.
        log.info("gateway started", extra={"outcome": f"audit_head={seq}:{mac}"})
        self._started = True
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        self._started = False
        self._audit.try_record("shutdown", actor="system")
        try:
            await stack.aclose()
        except BaseException:
            log.exception("shutdown failed")
            await send({"type": "lifespan.shutdown.failed", "message": "shutdown failed"})
            return
        await send({"type": "lifespan.shutdown.complete"})


