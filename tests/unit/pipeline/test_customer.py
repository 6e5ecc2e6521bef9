"""The customer pipeline in process, built by the composition root, with a recording ASGI app in LiteLLM's place.

Each case checks a step's place in the order: what is refused before the body is read, before a reservation is made,
and that what reaches LiteLLM is the shaped body the pre-flight approved and priced.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.log import AuditLog
from gateway.compose import build_customer_pipeline
from gateway.credits.ledger import SqlLedger
from gateway.credits.pricing import Price
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.pipeline.credits import REMAINING_HEADER
from gateway.pipeline.customer import CustomerPipeline
from gateway.pipeline.fields import ALLOWED_TOP
from gateway.pipeline.handoff import LiteLLM
from gateway.policy import load_policy
from gateway.ratelimit.limiter import RateLimiter
from gateway.store.engine import open_store

POLICY = """version: 1
providers:
  standin:
    api_base: http://127.0.0.1:9/v1
models:
  - name: chat-model
    provider: standin
    upstream_model: upstream-chat
    max_output_tokens: 100
    price: {input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}
  - name: embed-model
    provider: standin
    upstream_model: upstream-embed
    mode: embedding
    price: {input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "0"}
limits:
  max_body_bytes: 2048
rate_limits:
  default_rpm: 3
  default_tpm: 100000
guardrails:
  deny_patterns:
    - {name: codename, pattern: '(?i)project\\s+falcon'}
"""
ANSWER = {"id": "x", "object": "chat.completion", "created": 0, "model": "upstream-chat",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}


class Recorder:
    """LiteLLM's place: records each body it is handed and answers with usage."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        answer = json.dumps(ANSWER).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


class World:
    def __init__(self, tmp_path: Path) -> None:
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(POLICY)
        policy = load_policy(policy_file)
        engine = open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
        self.policy = policy
        self.keys = KeyService(SqlKeyStore(engine), KeyHasher(secrets.token_bytes(32)), cache_ttl=0.0)
        self.ledger = SqlLedger(engine)
        self.audit = AuditLog(engine, secrets.token_bytes(32))
        self.litellm = Recorder()
        self.pipeline: CustomerPipeline = build_customer_pipeline(
            llm=LiteLLM(app=self.litellm, state={}, ready=lambda: True), keys=self.keys, policy=policy,
            ledger=self.ledger, prices={"chat-model": Price(1_000_000, 2_000_000), "embed-model": Price(1_000_000, 0)},
            rate_limiter=RateLimiter(storage_uri="memory://", storage_options={}, default_rpm=3,
                                     default_tpm=100_000),
            audit=self.audit,
            model_fields={m.name: frozenset(ALLOWED_TOP[m.mode]) for m in policy.models})
        self.account = self.ledger.create_account("unit")
        self.ledger.top_up(self.account.id, 1_000_000, "unit")
        self.key, _ = self.keys.issue(KeyKind.CUSTOMER, name="unit", models=["chat-model"],
                                      account_id=self.account.id)

    def call_raw_headers(self, body: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], dict[str, Any], bool]:
        """As :meth:`call`, with the headers as the list sent (repeats visible)."""
        self.last_headers: list[tuple[bytes, bytes]] = []
        status, _, answer, read = self.call(body)
        return status, self.last_headers, answer, read

    def call(self, body: bytes | dict[str, Any], *, key: str | None = None, path: str = "/v1/chat/completions",
             content_type: bytes = b"application/json") -> tuple[int, dict[bytes, bytes], dict[str, Any], bool]:
        """Status, headers, JSON answer, and whether the body was read at all."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        read = False
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal read
            read = True
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": [
            (b"authorization", f"Bearer {key or self.key}".encode()), (b"content-type", content_type),
            (b"content-length", str(len(raw)).encode())]}
        asyncio.run(self.pipeline(scope, receive, send))
        start = sent[0]
        self.last_headers = list(start["headers"])
        answer = b"".join(m.get("body", b"") for m in sent[1:])
        return start["status"], dict(start["headers"]), json.loads(answer), read

    def balance(self) -> tuple[int, int]:
        account = self.ledger.get_account(self.account.id)
        assert account is not None
        return account.balance_micro_usd, account.reserved_micro_usd


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], **extra}


def test_what_litellm_gets_is_the_shaped_body_and_the_usage_is_settled(world: World) -> None:
    status, headers, answer, _ = world.call(chat(stream=False))
    # In OpenAI's shape: the fields it always sends, null when empty, are there.
    expected = json.loads(json.dumps(ANSWER))
    expected["choices"][0]["message"]["refusal"] = None
    expected["choices"][0]["logprobs"] = None
    assert status == 200 and answer == expected
    # max_tokens filled in with the model's cap: the output was bounded before dispatch.
    assert world.litellm.bodies == [{**chat(stream=False), "max_tokens": 100}]
    assert world.balance() == (1_000_000 - (9 * 1 + 3 * 2), 0)
    assert headers[REMAINING_HEADER] == str(1_000_000 - 15).encode()


def test_an_unknown_key_is_refused_before_the_body_is_read(world: World) -> None:
    status, headers, answer, read = world.call(chat(), key="lgw_ck_" + "A" * 49)
    assert (status, answer["error"]["code"], read) == (401, "invalid_api_key", False)
    assert headers[b"www-authenticate"] == b'Bearer realm="gateway"'


def test_requests_per_minute_are_counted_before_the_body_is_read(world: World) -> None:
    for _ in range(3):
        assert world.call(chat())[0] == 200
    status, headers, answer, read = world.call(chat())
    assert (status, answer["error"]["code"], read) == (429, "rate_limited", False)
    assert headers[b"x-ratelimit-limit-requests"] == b"3"
    assert len(world.litellm.bodies) == 3


@pytest.mark.parametrize(("body", "kwargs", "status", "code"), [
    (b"x" * 4096, {}, 413, "request_too_large"),
    (b"model=chat-model", {"content_type": b"application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    (b"[1]", {}, 400, "invalid_request"),
    (chat(api_base="http://attacker.invalid"), {}, 400, "unsupported_parameter"),
    ({"model": "embed-model", "input": "x"}, {"path": "/v1/embeddings"}, 403, "model_not_allowed"),
    (chat(messages=[{"role": "user", "content": "about Project  Falcon"}]), {}, 400, "content_blocked"),
    (chat(max_tokens=101), {}, 400, "invalid_request"),
    (chat(messages=[{"role": "user", "content": [{"type": "image_url",
                                                  "image_url": {"url": "https://images.example/y.png"}}]}]),
     {}, 400, "unsupported_content"),
])
def test_refusals_happen_before_any_reservation_or_dispatch(world: World, body: Any, kwargs: dict[str, Any],
                                                            status: int, code: str) -> None:
    got_status, _, answer, _ = world.call(body, **kwargs)
    assert (got_status, answer["error"]["code"]) == (status, code)
    assert world.litellm.bodies == []
    assert world.balance() == (1_000_000, 0)
    assert world.ledger.open_reservations() == 0


def test_a_request_that_does_not_fit_the_credit_is_refused_with_402(world: World) -> None:
    poor = world.ledger.create_account("poor")
    world.ledger.top_up(poor.id, 10, "unit")
    key, _ = world.keys.issue(KeyKind.CUSTOMER, name="poor", models=["chat-model"], account_id=poor.id)
    status, _, answer, _ = world.call(chat(), key=key)
    assert (status, answer["error"]["code"]) == (402, "budget_exhausted")
    assert world.litellm.bodies == []


@pytest.mark.parametrize(("body", "param"), [
    (chat(api_base="http://attacker.invalid"), "api_base"),
    (chat(max_tokens=101), "max_tokens"),
    (chat(messages=[{"role": "user", "content": "Hi", "weight": 1}]), "messages[0].weight"),
    (chat(user='{"api_key": "sk-x"}'), "user"),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "model"),
])
def test_the_error_names_the_field_in_param_and_never_its_value(world: World, body: Any, param: str) -> None:
    status, _, answer, _ = world.call(body)
    assert status == 400 and answer["error"]["param"] == param
    assert "attacker" not in json.dumps(answer) and "sk-x" not in json.dumps(answer)


def test_a_model_is_retrieved_only_for_the_keys_models(world: World) -> None:
    from gateway.pipeline.own_routes import ModelList

    models = ModelList(world.keys, world.policy, world.audit)

    def get(path: str) -> tuple[int, dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "GET", "path": path, "headers": [
            (b"authorization", f"Bearer {world.key}".encode())]}
        asyncio.run(models(scope, receive, send))
        return sent[0]["status"], json.loads(sent[1]["body"])

    assert get("/v1/models/chat-model") == (200, {"id": "chat-model", "object": "model", "created": 0,
                                                  "owned_by": "openai"})
    # Exposed but not this key's, and unknown: the same 404.
    assert get("/v1/models/embed-model")[0] == get("/v1/models/no-such-model")[0] == 404
    assert get("/v1/models/embed-model")[1]["error"] == get("/v1/models/no-such-model")[1]["error"] == {
        "message": "The model does not exist or this key may not use it.", "type": "invalid_request_error",
        "param": "model", "code": "model_not_found"}
    assert [m["id"] for m in get("/v1/models")[1]["data"]] == ["chat-model"]


def test_every_answer_after_the_requests_counter_says_where_the_key_stands(world: World) -> None:
    status, headers, _, _ = world.call(chat(max_tokens=10))
    assert status == 200
    assert (headers[b"x-ratelimit-limit-requests"], headers[b"x-ratelimit-remaining-requests"]) == (b"3", b"2")
    assert headers[b"x-ratelimit-limit-tokens"] == b"100000"
    assert 0 < int(headers[b"x-ratelimit-remaining-tokens"]) < 100000
    assert headers[b"x-ratelimit-reset-requests"].endswith(b"s") and headers[b"x-ratelimit-reset-tokens"].endswith(b"s")
    # A refusal after the requests counter carries its figures (the tokens counter never ran for it)...
    status, headers, _, _ = world.call(chat(api_base="http://attacker.invalid"))
    assert status == 400 and headers[b"x-ratelimit-remaining-requests"] == b"1"
    assert b"x-ratelimit-limit-tokens" not in headers
    # ...a 429 carries its own, once each...
    world.call(chat())
    status, raw_headers, _, _ = world.call_raw_headers(chat())
    assert status == 429
    assert [name for name, _ in raw_headers].count(b"x-ratelimit-remaining-requests") == 1
    assert dict(raw_headers)[b"x-ratelimit-remaining-requests"] == b"0"
    # ...and an unauthenticated request learns nothing.
    status, headers, _, _ = world.call(chat(), key="lgw_ck_" + "A" * 49)
    assert status == 401 and not [name for name in headers if name.startswith(b"x-ratelimit")]
