"""HAZMAT: the boot sequence, from settings to an open port.

Each step either succeeds or raises :class:`BootError` naming itself; ``main`` prints that one line and exits non-zero
before any port opens. ``check_only`` runs every check (settings, policy, litellm version, environment, Vault login
and reads, database, Redis when configured, prices) and stops before LiteLLM's proxy is imported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import threading
from typing import Any

import uvicorn

from gateway import logs
from gateway.boot import bedrock_credentials, litellm_mount, service_account, vault, workers
from gateway.boot.errors import BootError
from gateway.boot.fleet import build_invalidations, check_redis_login, open_database, redis_options
from gateway.boot.prices import resolve_deployment_prices, worst_price
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings, redacted_url
from gateway.compose import Gateway, compose
from gateway.compose import build_rate_limiter as compose_rate_limiter
from gateway.keys.epoch import Epoch, SharedEpoch
from gateway.pipeline.handoff import LiteLLM
from gateway.policy import Policy, PolicyError, load_policy
from gateway.ratelimit.limiter import RateLimiter

log = logging.getLogger("gateway.boot")


@dataclasses.dataclass
class Booted:
    settings: Settings
    policy: Policy
    gateway: Gateway | None


def _step(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except BootError:
        raise
    except PolicyError as exc:
        raise BootError(name, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any failure of a step becomes one line naming it
        # Never the exception text: it may quote a value.
        raise BootError(name, f"unexpected {type(exc).__name__}") from None


def prepare(settings: Settings, *, check_only: bool = False, revocation_epoch: Epoch | None = None) -> Booted:
    policy: Policy = _step("policy", load_policy, settings.policy_file)
    _step("litellm version", litellm_mount.check_litellm_version)
    _step("environment", litellm_mount.check_environment)
    client = _step("vault login", vault.login, settings)
    try:
        providers = policy.provider_names()
        secrets = _step("vault read", vault.read_secrets, client, settings, providers)
        _step("vault read", vault.check_provider_credentials, settings, secrets.provider_keys,
              {name: provider.kind for name, provider in policy.providers.items()})
    finally:
        # Give the token up as soon as the reads are done, whatever happened.
        _step("vault revoke", vault.revoke_own_token, client)
    _step("provider credentials", service_account.check_vertex_credentials,
          {name: provider.kind for name, provider in policy.providers.items()}, secrets.provider_keys,
          f"{settings.vault_mount}/{settings.vault_path}/providers")
    engine = _step("database", open_database, settings, secrets.postgres_password)
    rate_limiter = _step("redis", build_rate_limiter, settings, policy, secrets.redis_password)
    # Importing litellm (not its proxy) is safe now that the installed version is the pin.
    deployment_prices = _step("prices", resolve_deployment_prices, policy)
    prices = {name: worst_price(listed.values()) for name, listed in deployment_prices.items()}
    _step("policy", litellm_mount.check_vertex_routes, policy)
    if check_only:
        engine.dispose()
        return Booted(settings, policy, None)

    # LiteLLM's proxy import builds ~700k long-lived objects: collecting cycles while it runs is wasted work, and so is
    # walking them in every later full collection. They are frozen as soon as the import is done, before any secret
    # reaches LiteLLM (its garbage, about 2,200 unreachable objects, measured, holds none and stays); the lifespan
    # collects and freezes what the startup added (gateway.app).
    gc.collect()  # what the Vault reads left (responses, frames) is freed, not frozen with the import
    gc.disable()
    try:
        proxy_server = _step("litellm import", litellm_mount.import_proxy)
        gc.freeze()
    finally:
        gc.enable()
    logs.adopt_library_loggers(settings.log_level)
    config = litellm_mount.build_config(policy, secrets.master_key, secrets.provider_keys)
    deployments = litellm_mount.build_deployments(policy, secrets.provider_keys)
    for value in secrets.all_values():
        logs.REDACT.add(value.reveal())
        # A service account's private key and a Bedrock credential's parts, each on its own: LiteLLM holds them
        # apart and could print one.
        for part in (*service_account.secret_parts(value.reveal()), *bedrock_credentials.secret_parts(value.reveal())):
            logs.REDACT.add(part)
    master_key = secrets.master_key
    pepper = secrets.pepper.reveal().encode("utf-8")
    audit_key = secrets.audit_key.reveal().encode("utf-8")
    redis_password = secrets.redis_password
    del secrets
    llm = LiteLLM(app=proxy_server.app, state={}, ready=lambda: proxy_server.llm_router is not None)

    def llm_lifespan() -> Any:
        return litellm_mount.litellm_lifespan(proxy_server, config, master_key, llm.state, deployments)

    gateway = compose(policy=policy, engine=engine, llm=llm, llm_lifespan=llm_lifespan, pepper=pepper,
                  audit_key=audit_key, prices=prices, rate_limiter=rate_limiter,
                  invalidations=build_invalidations(settings, redis_password),
                  model_fields=litellm_mount.model_fields(deployments),
                  unsafe_rate_limit_fail_open=settings.unsafe_rate_limit_fail_open,
                  deployment_prices=deployment_prices, revocation_epoch=revocation_epoch)
    return Booted(settings, policy, gateway)


def build_rate_limiter(settings: Settings, policy: Policy, password: Secret | None = None) -> RateLimiter:
    """In-memory counters, or Redis shared by the fleet (login and reachability checked now: boot fails closed)."""
    options = redis_options(settings, password) if settings.redis_url else {}
    check_redis_login(settings, options)
    limiter = compose_rate_limiter(policy, settings.redis_url, options)
    if settings.redis_url and not limiter.reachable():
        # Host, port and database only: never a user part or query parameters, which may carry a credential.
        raise BootError("redis", f"Redis at {redacted_url(settings.redis_url)} is unreachable")
    return limiter


def serve(settings: Settings) -> int:
    booted = prepare(settings)
    if booted.gateway is None:
        raise BootError("startup", "the application was not built")
    config = uvicorn.Config(
        booted.gateway.app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        ws="none",
        # On SIGTERM: stop accepting, let in-flight requests finish (and settle) for up to this long, then exit.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )
    server = uvicorn.Server(config)
    asyncio.run(server.serve())
    if not server.started:
        raise BootError("litellm startup", "LiteLLM's lifespan did not start (see the log above)")
    return 0


# gunicorn's status for a worker that could not start (Arbiter.WORKER_BOOT_ERROR): the master then stops them all.
WORKER_BOOT_ERROR = 3


def serve_workers(settings: Settings) -> int:
    """Boot once here (the master), then serve with ``settings.workers`` processes forked from it (workers.py)."""
    booted = prepare(settings, revocation_epoch=SharedEpoch())
    if booted.gateway is None:
        raise BootError("startup", "the application was not built")
    threads = [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]
    if threads:
        # A thread of the master does not exist in a forked worker; a lock it held there would stay held forever.
        raise BootError("workers", f"the booted master runs other threads ({', '.join(sorted(threads))}); "
                                   "refusing to fork workers from it")
    engine = booted.gateway.engine
    # The master serves nothing: the connections boot opened (migrations, checks) are closed before any fork, and
    # each worker opens its own. Each worker also drops whatever pool it inherited without closing the connections in
    # it (SQLAlchemy's rule for a forked child), should the master ever hold one again.
    engine.dispose()
    status = workers.run(booted.gateway.app, host=settings.host, port=settings.port, workers=settings.workers,
                         graceful_seconds=settings.shutdown_grace_seconds, log_level=settings.log_level,
                         after_fork=lambda: engine.dispose(close=False))
    if status == WORKER_BOOT_ERROR:
        raise BootError("workers", "a worker could not start (see the log above); every worker was stopped")
    if status != 0:
        raise BootError("workers", f"the workers stopped with status {status} (see the log above)")
    return 0
