"""The customer request path (``/v1``): the pre-flight steps in order, then the handoff to LiteLLM.

One ordered list, one comment per step; each step is a plain function (or a step object's method) that raises
:class:`Denial` or returns what the next step needs.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.audit.log import AuditLog
from gateway.keys.format import KeyKind
from gateway.keys.service import KeyService
from gateway.logs import REQUEST_ID, new_request_id
from gateway.metrics import UPSTREAM_SECONDS
from gateway.pipeline.approval import Approval
from gateway.pipeline.asgi import Message, Receive, Scope, Send
from gateway.pipeline.authn import authenticate
from gateway.pipeline.authz import check_model
from gateway.pipeline.body import ClientGone, canonical_json, check_content_type, parse_json_object, read_body
from gateway.pipeline.credits import CreditStep
from gateway.pipeline.errors import Denial, internal_error, send_denial
from gateway.pipeline.fields import (
    INLINE_IMAGES_ONLY,
    RouteKind,
    check_fields,
    check_forwarded,
    check_inline_images,
)
from gateway.pipeline.guardrails import Guardrails
from gateway.pipeline.handoff import LiteLLM, hand_off
from gateway.pipeline.ratelimit import RateLimitStep
from gateway.pipeline.responses import check_response_fields, input_images
from gateway.pipeline.shaping import shape, shape_response
from gateway.policy import ModelMode, Policy

log = logging.getLogger("gateway.pipeline")


# Bodies up to this size are scanned on the event loop (well under a millisecond); larger ones on a worker thread.
GUARDRAILS_INLINE_BYTES = 64 * 1024
ROUTE_KINDS: dict[str, RouteKind] = {"/v1/chat/completions": "chat", "/v1/completions": "completion",
                                     "/v1/embeddings": "embedding", "/v1/responses": "responses"}
# The model mode each route needs: the Responses API is served by chat models.
SERVED_BY: dict[RouteKind, ModelMode] = {"chat": "chat", "completion": "completion", "embedding": "embedding",
                                         "responses": "chat"}


def with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """Send-wrapper: ``extra`` (as it stands when the answer starts) added to the answer's headers, except names the
    answer already has (a 429 carries its own counter's figures)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and extra:
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers}
            message = {**message, "headers": headers + [(k, v) for k, v in extra if k not in present]}
        await send(message)

    return wrapped


class CustomerPipeline:
    """Handles POST /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/responses."""

    def __init__(
        self,
        *,
        llm: LiteLLM,
        keys: KeyService,
        policy: Policy,
        model_fields: dict[str, frozenset[str]],
        guardrails: Guardrails,
        credits: CreditStep,
        rate_limits: RateLimitStep,
        audit: AuditLog,
    ) -> None:
        self._llm = llm
        self._keys = keys
        self._policy = policy
        self._exposed = frozenset(policy.model_names())
        self._limits = policy.limits
        self._model_fields = model_fields  # per model: the fields its deployment receives
        self._guardrails = guardrails
        self._credits = credits
        self._rate_limits = rate_limits
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        REQUEST_ID.set(request_id)
        # Once counted, every answer (denials included) tells the key where it stands: OpenAI's x-ratelimit-*.
        limit_headers: list[tuple[bytes, bytes]] = []
        send = with_headers(send, limit_headers)
        try:
            # 1. Authenticate: Authorization: Bearer with a customer key, nothing else.
            principal = authenticate(scope, self._keys, KeyKind.CUSTOMER, request_id, self._audit)
            # 2. Requests per minute, before any further work (shared by the fleet when Redis is configured).
            limit_headers += self._rate_limits.requests(principal, request_id)
            # 3. Read the body once, bounded by the policy's size limit; it must be declared as and be a JSON object.
            check_content_type(scope)
            raw = await read_body(scope, receive, self._limits.max_body_bytes)
            body = parse_json_object(raw)
            # 4. Only the OpenAI API's fields for this route, at every level; bounded depth and message count.
            #    The Responses API is served stateless: nothing that keeps or reads provider-side state passes.
            kind = ROUTE_KINDS[scope["path"]]
            if kind == "responses":
                check_response_fields(body, max_depth=self._limits.max_json_depth,
                                      max_items=self._limits.max_messages)
            else:
                check_fields(kind, body, max_depth=self._limits.max_json_depth,
                             max_messages=self._limits.max_messages)
            # 5. Authorize the model against the policy and the key's allow-list; it must serve this route.
            model_name = check_model(body, principal, self._exposed, request_id)
            model = self._policy.model(model_name)
            # The Responses API is served natively by OpenAI-compatible providers only: LiteLLM would translate it
            # for the other kinds into calls the approval check has not seen.
            if model.mode != SERVED_BY[kind] or (kind == "responses" and self._policy.kinds(model) != {"openai"}):
                raise Denial(400, "invalid_request", "This model does not serve this endpoint.")
            if kind != "responses":  # LiteLLM sends every Responses API field on (approval.py)
                check_forwarded(body, self._model_fields[model_name])
            if self._policy.kinds(model) & INLINE_IMAGES_ONLY:  # LiteLLM would fetch an image URL itself (TM-I8)
                check_inline_images(body)
            # 6. Guardrails: no credentials or operator-denied content sent to a provider.
            if len(raw) > GUARDRAILS_INLINE_BYTES:
                # RE2 scans in linear time but a crafted megabyte still costs tenths of a second; it releases the
                # GIL, so a worker thread keeps that off the event loop (threat-model TM-D1).
                await asyncio.to_thread(self._guardrails.check, kind, body, principal.key_id, request_id)
            else:
                self._guardrails.check(kind, body, principal.key_id, request_id)
            # 7. Shape what LiteLLM will get: output bounded (max_tokens filled in), usage asked for on streams.
            if kind == "responses":
                shaped = shape_response(body, model.max_output_tokens, input_images(body), model.max_image_tokens)
            else:
                shaped = shape(kind, body, model.max_output_tokens, self._limits.max_n, model.max_image_tokens)
            # 8. The one canonical body LiteLLM will get. Its worst case, then tokens per minute against it: the input
            #    is bounded by the larger of what the client sent and what is forwarded (a number such as 1e15 is
            #    four bytes as sent and eighteen re-serialized).
            forwarded = canonical_json(shaped.body)
            worst = self._credits.estimate(shaped, max(len(raw), len(forwarded)), model_name, kind)
            limit_headers += self._rate_limits.tokens(principal, worst.tokens, request_id)
            # 9. The approval: that body and the bounds it was priced at. LiteLLM's call is checked against it just
            #    before the provider is contacted (approval.py).
            approval = Approval(request_id=request_id, key_id=principal.key_id, model=model_name, mode=kind,
                                body=shaped.body, output_bound=shaped.output_bound, choices=shaped.choices,
                                stream=shaped.stream, max_calls=model.max_calls)
            # 10. Reserve the worst-case cost; the meter settles the real cost when the response is done. The ledger
            #     write runs on a worker thread, so a slow store holds up this request and not the event loop.
            meter = await self._credits.threads.run(self._credits.reserve, worst, principal, model_name, request_id,
                                               kind)
        except Denial as denial:
            await send_denial(send, denial, request_id)
            return
        except ClientGone:
            return
        except Exception:
            log.exception("pre-flight failed", extra={"request_id": request_id})
            await send_denial(send, internal_error(), request_id)
            return
        # 11. Hand off in-process to LiteLLM with the principal in the scope; it settles before it returns.
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        handed_off = time.perf_counter()
        try:
            await hand_off(self._llm.app, scope, receive, tracking_send, principal=principal, raw_body=forwarded,
                           request_id=request_id, llm_state=self._llm.state, meter=meter, approval=approval,
                           audit=self._audit, usage_requested=shaped.usage_requested)
        except Exception:
            # LiteLLM's own error middleware re-raises after answering; answer only if nothing was sent yet.
            log.exception("handoff failed", extra={"request_id": request_id, "key_id": principal.key_id})
            if not started:
                await send_denial(send, internal_error(), request_id)
        finally:
            UPSTREAM_SECONDS.labels(route=scope["path"]).observe(time.perf_counter() - handed_off)
