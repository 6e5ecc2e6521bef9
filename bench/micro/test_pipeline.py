"""The whole pre-flight and settlement of one request, with LiteLLM replaced by a stub that answers at once.

This is the gateway's own cost per request, the part the in-process mount adds in front of LiteLLM: authentication
(cache hit), rate limits in memory, body read and checks, guardrails, worst-case estimate, reservation and settlement
on SQLite (on the ledger's thread), the handoff's header and error handling, and the response's metering.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pytest_benchmark.fixture import BenchmarkFixture

from gateway.audit.log import AuditLog
from gateway.compose import build_customer_pipeline
from gateway.credits.ledger import SqlLedger
from gateway.credits.pricing import Price
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.pipeline.fields import ALLOWED_TOP
from gateway.pipeline.handoff import LiteLLM
from gateway.policy import load_policy
from gateway.ratelimit.limiter import RateLimiter

POLICY = """version: 1
providers:
  standin:
    api_base: http://127.0.0.1:9/v1
models:
  - name: chat-model
    provider: standin
    upstream_model: upstream-chat
    price: {input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}
rate_limits:
  default_rpm: 1000000
  default_tpm: 1000000000
guardrails:
  secret_scan: true
  deny_patterns:
    - {name: x, pattern: '(?i)project\\s+falcon'}
"""
BODY = json.dumps({"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}).encode()
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "upstream-chat",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}).encode()


async def stub_litellm(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})


def test_preflight_and_settlement_per_request(benchmark: BenchmarkFixture, sqlite_engine: sa.Engine,
                                             tmp_path: Path) -> None:
    """One POST /v1/chat/completions through the customer pipeline, LiteLLM stubbed out."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    policy = load_policy(policy_file)
    keys = KeyService(SqlKeyStore(sqlite_engine), KeyHasher(secrets.token_bytes(32)), cache_ttl=1.0)
    ledger = SqlLedger(sqlite_engine)
    account = ledger.create_account("bench")
    ledger.top_up(account.id, 10**15, "bench")
    key, _ = keys.issue(KeyKind.CUSTOMER, name="bench", models=["chat-model"], account_id=account.id)
    pipeline = build_customer_pipeline(
        llm=LiteLLM(app=stub_litellm, state={}, ready=lambda: True), keys=keys, policy=policy, ledger=ledger,
        prices={"chat-model": Price(1_000_000, 2_000_000)},
        rate_limiter=RateLimiter(storage_uri="memory://", storage_options={}, default_rpm=1_000_000,
                                 default_tpm=1_000_000_000),
        audit=AuditLog(sqlite_engine, secrets.token_bytes(32)),
        model_fields={m.name: frozenset(ALLOWED_TOP[m.mode]) for m in policy.models})
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json"),
                         (b"content-length", str(len(BODY)).encode())]}
    loop = asyncio.new_event_loop()
    statuses: list[int] = []

    async def one() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": BODY, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await pipeline(dict(scope), receive, send)

    try:
        loop.run_until_complete(one())  # warm: key cache filled, statements prepared
        benchmark(lambda: loop.run_until_complete(one()))
    finally:
        loop.close()
    assert set(statuses) == {200}
    assert ledger.open_reservations() == 0 and ledger.check() == []
