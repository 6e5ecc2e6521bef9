"""The composition root: every part of a running gateway is built here, once, and wired into :class:`GatewayApp`.

The boot sequence (:mod:`gateway.boot.serve`) does the hazmat work — settings, Vault, LiteLLM's import and mount — and
hands the results over as plain values; nothing here touches Vault or LiteLLM's proxy module. Tests and benchmarks
build the same parts through the same functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import re2
import sqlalchemy as sa

from gateway.admin.api import build_admin_app
from gateway.admin.gate import AdminGate
from gateway.app import GatewayApp, Lifespan, StartupRefused
from gateway.audit.alarms import chain_pending
from gateway.audit.log import AuditHeadMissing, AuditLog
from gateway.credits.ledger import SqlLedger
from gateway.credits.pricing import Price
from gateway.credits.sweeper import sweep_forever
from gateway.keys.epoch import Epoch
from gateway.keys.hashing import KeyHasher
from gateway.keys.invalidation import InvalidationChannel, RedisInvalidations
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.metrics import RESERVATIONS_OPEN
from gateway.pipeline.asgi import ASGIApp
from gateway.pipeline.credits import CreditStep
from gateway.pipeline.customer import CustomerPipeline
from gateway.pipeline.guardrails import Guardrails
from gateway.pipeline.handoff import LiteLLM
from gateway.pipeline.own_routes import ModelList, SelfRevocation
from gateway.pipeline.ratelimit import RateLimitStep
from gateway.policy import Policy
from gateway.probes import Readiness, health
from gateway.ratelimit.limiter import RateLimiter
from gateway.routes import Endpoint

log = logging.getLogger("gateway.app")


def build_rate_limiter(policy: Policy, storage_uri: str | None, storage_options: dict[str, Any]) -> RateLimiter:
    """In-memory counters, or Redis shared by the fleet when ``storage_uri`` is given."""
    return RateLimiter(storage_uri=storage_uri or "memory://", storage_options=storage_options,
                       default_rpm=policy.rate_limits.default_rpm, default_tpm=policy.rate_limits.default_tpm)


def build_guardrails(policy: Policy) -> Guardrails:
    return Guardrails(secret_scan=policy.guardrails.secret_scan,
                      deny_patterns=[(rule.name, re2.compile(rule.pattern)) for rule in policy.guardrails.deny_patterns])


def build_customer_pipeline(*, llm: LiteLLM, keys: KeyService, policy: Policy, ledger: SqlLedger,
                            prices: dict[str, Price], rate_limiter: RateLimiter, audit: AuditLog,
                            model_fields: dict[str, frozenset[str]],
                            unsafe_rate_limit_fail_open: bool = False,
                            deployment_prices: dict[str, dict[str, Price]] | None = None) -> CustomerPipeline:
    return CustomerPipeline(
        llm=llm, keys=keys, policy=policy, model_fields=model_fields, guardrails=build_guardrails(policy),
        credits=CreditStep(ledger, prices, policy, deployment_prices),
        rate_limits=RateLimitStep(rate_limiter, unsafe_fail_open=unsafe_rate_limit_fail_open), audit=audit)


@contextlib.asynccontextmanager
async def sweeping(ledger: SqlLedger, policy: Policy) -> AsyncIterator[None]:
    """Expire reservations left open by requests that can no longer finish, every ``sweep_interval_seconds``."""
    credits = policy.credits
    task = asyncio.create_task(sweep_forever(ledger, timedelta(seconds=credits.reservation_ttl_seconds),
                                             credits.sweep_interval_seconds))
    try:
        yield
    finally:
        task.cancel()


@contextlib.asynccontextmanager
async def audited_lifetime(audit: AuditLog, engine: sa.Engine) -> AsyncIterator[None]:
    """Boot and shutdown entries in the audit log; no start without the chain's head (threat-model TM-R1), nor
    before the alarms earlier boots left pending are in the chain (TM-T16)."""
    try:
        seq, mac = audit.head()
    except AuditHeadMissing:
        raise StartupRefused("audit head row is missing; refusing to start (run gateway audit verify)") from None
    try:
        chain_pending(engine, audit)
    except Exception as exc:  # noqa: BLE001 - any store failure; the alarms stay pending for the next boot
        raise StartupRefused(f"pending boot alarms could not be moved into the audit log ({type(exc).__name__}); "
                             "refusing to start") from None
    audit.try_record("boot", actor="system")
    # The head printed at every boot lets an auditor catch a rewound (truncated) chain later.
    log.info("gateway started", extra={"outcome": f"audit_head={seq}:{mac}"})
    try:
        yield
    finally:
        audit.try_record("shutdown", actor="system")


@dataclasses.dataclass(frozen=True)
class Gateway:
    """The built gateway: its ASGI app, and the domain services it holds (for the operator's in-process tools)."""

    app: GatewayApp
    keys: KeyService
    ledger: SqlLedger
    audit: AuditLog
    engine: sa.Engine


@contextlib.asynccontextmanager
async def listening(channel: RedisInvalidations, keys: KeyService) -> AsyncIterator[None]:
    """Apply the fleet's key invalidations to this replica's key cache while the gateway runs."""
    channel.listen(keys.cache)
    try:
        yield
    finally:
        await asyncio.to_thread(channel.close)


def compose(*, policy: Policy, engine: sa.Engine, llm: LiteLLM, llm_lifespan: Lifespan, pepper: bytes,
            audit_key: bytes, prices: dict[str, Price], rate_limiter: RateLimiter,
            invalidations: InvalidationChannel, model_fields: dict[str, frozenset[str]],
            unsafe_rate_limit_fail_open: bool = False, revocation_epoch: Epoch | None = None,
            deployment_prices: dict[str, dict[str, Price]] | None = None) -> Gateway:
    """The whole gateway: stores, domain services, the pipeline, the endpoints of the route table, the lifespan.
    ``revocation_epoch`` is the host's, shared by forked workers (gateway.keys.epoch); None for one process."""
    keys = KeyService(SqlKeyStore(engine), KeyHasher(pepper), cache_ttl=policy.keys.cache_ttl_seconds,
                      invalidations=invalidations, epoch=revocation_epoch)
    ledger = SqlLedger(engine)
    audit = AuditLog(engine, audit_key)
    RESERVATIONS_OPEN.set_function(lambda: float(ledger.open_reservations()))
    readiness = Readiness({"database": ledger.ping, "rate_limit_store": rate_limiter.reachable,
                           "litellm_router": llm.ready})
    admin_app = build_admin_app(keys, ledger, frozenset(policy.model_names()),
                                rotation_grace_seconds=policy.keys.rotation_grace_seconds, audit=audit)
    models = ModelList(keys, policy, audit)
    endpoints: dict[Endpoint, ASGIApp] = {
        Endpoint.HANDOFF: build_customer_pipeline(
            llm=llm, keys=keys, policy=policy, ledger=ledger, prices=prices, rate_limiter=rate_limiter, audit=audit,
            model_fields=model_fields, unsafe_rate_limit_fail_open=unsafe_rate_limit_fail_open,
            deployment_prices=deployment_prices),
        Endpoint.MODELS: models,
        Endpoint.MODEL: models,
        Endpoint.SELF_REVOKE: SelfRevocation(keys, audit),
        Endpoint.HEALTH: health,
        Endpoint.READY: readiness,
        Endpoint.ADMIN: AdminGate(admin_app, keys, audit),
    }
    lifespans: list[Lifespan] = [llm_lifespan, lambda: sweeping(ledger, policy), lambda: audited_lifetime(audit, engine)]
    if isinstance(invalidations, RedisInvalidations):
        channel = invalidations
        lifespans.append(lambda: listening(channel, keys))
    app = GatewayApp(endpoints=endpoints, readiness=readiness, lifespans=lifespans,
                     cors_origins=frozenset(policy.cors.allow_origins))
    return Gateway(app=app, keys=keys, ledger=ledger, audit=audit, engine=engine)
