"""The 402 says why: which limit refused, what the worst case needed, what the caller's own limit had left, and how
to ask for less. In process, on the customer pipeline of test_customer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.credits.ledger import InsufficientCredit
from gateway.credits.pricing import MESSAGE_OVERHEAD_TOKENS, REQUEST_OVERHEAD_TOKENS, TOOL_OVERHEAD_TOKENS
from gateway.keys.format import KeyKind
from gateway.pipeline.credits import refusal_message
from tests.unit.pipeline.test_customer import World, chat

HINT = ("A smaller max_tokens (or max_completion_tokens) lowers the reservation; without either, the model's whole "
        "output limit is reserved.")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _worst_case(body: dict[str, Any], output_tokens: int) -> int:
    """The chat-model's worst case at 1 micro-USD per input and 2 per output token (test_customer's policy): the
    input bound is the larger of the body as sent and as forwarded (with the output bound filled in when absent)."""
    forwarded = body if "max_tokens" in body else {**body, "max_tokens": output_tokens}
    size = max(len(json.dumps(body).encode()), len(json.dumps(forwarded, separators=(",", ":")).encode()))
    return size + REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 2 * output_tokens


def _key(world: World, balance: int, **options: Any) -> str:
    account = world.ledger.create_account("small")
    world.ledger.top_up(account.id, balance, "unit")
    key, _ = world.keys.issue(KeyKind.CUSTOMER, name="small", models=["chat-model", "embed-model"],
                              account_id=account.id, **options)
    return key


def test_the_default_max_tokens_refusal_names_the_account_and_the_figures(world: World) -> None:
    # The issue's case: enough credit for the request, not for the model's whole output limit reserved by default.
    key = _key(world, 150)
    status, _, answer, _ = world.call(chat(), key=key)
    needed = _worst_case(chat(), 100)
    assert status == 402 and needed > 150
    assert answer["error"] == {
        "message": f"Not enough credit for this request: its worst case needs {needed} micro-USD and the account has "
                   f"150 micro-USD available. {HINT}",
        "type": "insufficient_quota", "param": None, "code": "budget_exhausted"}
    # Following the advice works.
    assert world.call(chat(max_tokens=5), key=key)[0] == 200


def test_the_key_cap_refusal_names_the_cap_and_its_period(world: World) -> None:
    key = _key(world, 1_000_000, spend_cap_micro_usd=50, spend_cap_period="daily")
    status, _, answer, _ = world.call(chat(max_tokens=5), key=key)
    assert status == 402 and answer["error"]["code"] == "budget_exhausted"
    assert answer["error"]["message"] == (
        f"Not enough credit for this request: its worst case needs {_worst_case(chat(max_tokens=5), 5)} micro-USD and "
        f"this key's daily spend cap (today, UTC) has 50 micro-USD available. {HINT}")


def test_an_embedding_refusal_suggests_a_shorter_input(world: World) -> None:
    key = _key(world, 1)
    status, _, answer, _ = world.call({"model": "embed-model", "input": "x" * 40}, key=key, path="/v1/embeddings")
    assert status == 402
    assert answer["error"]["message"].endswith("the account has 1 micro-USD available. A shorter input lowers the "
                                               "reservation.")


@pytest.mark.parametrize(("period", "words"), [
    ("none", "this key's spend cap (it does not reset)"),
    ("monthly", "this key's monthly spend cap (this month, UTC)"),
    ("daily", "this key's daily spend cap (today, UTC)"),
])
def test_each_cap_period_is_named(period: str, words: str) -> None:
    refused = InsufficientCredit("key_cap", needed=2460, available=7, period=period)
    assert refusal_message(refused, "completion") == (
        f"Not enough credit for this request: its worst case needs 2460 micro-USD and {words} has 7 micro-USD "
        f"available. {HINT}")


def test_numbers_that_grow_when_forwarded_are_priced_as_forwarded(world: World) -> None:
    # 1e15 is four bytes as sent and eighteen as LiteLLM gets it (1000000000000000.0): the input bound is the larger.
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "number", "enum": [1e15] * 250}}}}}]
    raw = json.dumps({**chat(max_tokens=5), "tools": tools}).replace("1000000000000000.0", "1e15").encode()
    forwarded = json.dumps({**chat(max_tokens=5), "tools": tools}, separators=(",", ":")).encode()
    assert len(forwarded) > 2 * len(raw)
    key = _key(world, len(raw) + 1000)  # enough for the body as sent, not as forwarded
    status, _, answer, _ = world.call(raw, key=key)
    assert status == 402 and answer["error"]["code"] == "budget_exhausted"
    assert f"needs {len(forwarded) + REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + TOOL_OVERHEAD_TOKENS + 2 * 5} micro-USD" in \
        answer["error"]["message"]
