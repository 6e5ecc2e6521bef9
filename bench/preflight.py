"""Bench only: the *before* shape (configuration "before" of `make bench`). The gateway's full pre-flight, built by
the same composition root as `gateway serve` (key check, rate limits, body checks, guardrails, reservation and
settlement on SQLite, the audit log), in its own process(es), with the handoff to an in-process LiteLLM replaced by
an HTTP forward to LiteLLM on its own port (bench/forwarder.py's forward, one pooled HTTP/1.1 client per process).

    python bench/preflight.py --port 8001 --upstream http://127.0.0.1:4000 --database sqlite:///x.db \
        --policy policy.yaml --workers 2  < secrets.json

With more than one worker the rate limits live in Redis (``--redis-url``), as `gateway serve --workers` requires.
The pepper and the audit key come on standard input as JSON (the harness creates the store, the account and the key
with them). With ``--workers N`` the process binds the port, forks N workers that each compose their own gateway
(no store connection or thread crosses the fork) and serve the shared socket. Not a gateway feature: the product
is the in-process shape.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from forwarder import build

from gateway.boot.litellm_mount import build_deployments
from gateway.boot.prices import resolve_prices
from gateway.boot.secret import Secret
from gateway.compose import build_rate_limiter, compose
from gateway.keys.invalidation import LOCAL_ONLY
from gateway.pipeline.handoff import LiteLLM
from gateway.policy import load_policy
from gateway.store.engine import open_store


def gateway_app(args: argparse.Namespace, pepper: bytes, audit_key: bytes) -> Any:
    policy = load_policy(Path(args.policy))
    # The pipeline passes no credential on (LiteLLM's no-op custom_auth still wants one to hand over).
    forward = build(args.upstream, extra_headers=[(b"authorization", b"Bearer bench")])

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        yield
        await forward.client.aclose()

    llm = LiteLLM(app=forward, state={}, ready=lambda: True)
    deployments = build_deployments(policy, {name: Secret("bench") for name in policy.providers})
    gateway = compose(policy=policy, engine=open_store(args.database), llm=llm, llm_lifespan=lifespan,
                      pepper=pepper, audit_key=audit_key, prices=resolve_prices(policy),
                      rate_limiter=build_rate_limiter(policy, args.redis_url, {}), invalidations=LOCAL_ONLY,
                      model_fields={name: d.fields for name, d in deployments.items()})
    return gateway.app


def serve(args: argparse.Namespace, sock: socket.socket, pepper: bytes, audit_key: bytes) -> None:
    # The same server options as `gateway serve`.
    config = uvicorn.Config(gateway_app(args, pepper, audit_key), lifespan="on", log_config=None, access_log=False,
                            server_header=False, proxy_headers=False, ws="none")
    uvicorn.Server(config).run(sockets=[sock])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--policy", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", help="rate limits in this Redis, shared by the workers (as `gateway serve "
                                            "--workers` requires); in memory without it")
    args = parser.parse_args()
    keys = json.loads(sys.stdin.read())
    pepper, audit_key = keys["pepper"].encode(), keys["audit_key"].encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.set_inheritable(True)
    if args.workers == 1:
        serve(args, sock, pepper, audit_key)
        return 0
    workers = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            serve(args, sock, pepper, audit_key)
            os._exit(0)
        workers.append(pid)

    def stop(signum: int, _frame: object) -> None:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for pid in workers:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
