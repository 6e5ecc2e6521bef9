"""Prices and worst-case estimates: integer micro-USD, rounded up, bounded output (with the pipeline's shaping
step, which fills in and checks the bounds the estimate uses)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gateway.credits.pricing import (
    MESSAGE_OVERHEAD_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    Price,
    per_million_from_usd_per_million,
    per_million_from_usd_per_token,
)
from gateway.credits.pricing import estimate as price_shaped
from gateway.pipeline.errors import Denial
from gateway.pipeline.shaping import shape

PRICE = Price(input_per_million=1_000_000, output_per_million=2_000_000)  # $1 and $2 per 1M tokens


@dataclasses.dataclass
class Priced:
    body: dict
    amount: int


def estimate(mode: str, body: dict, raw_length: int, price: Price, max_output_tokens: int, max_n: int) -> Priced:
    """Shape the request (gateway.pipeline.shaping), then price it, as the pipeline does."""
    shaped = shape(mode, body, max_output_tokens, max_n)
    worst = price_shaped(mode, shaped.body, raw_length, price, shaped.output_bound, shaped.choices)
    return Priced(shaped.body, worst.amount)


def test_conversions_are_exact() -> None:
    assert per_million_from_usd_per_token(1.5e-07) == 150_000
    assert per_million_from_usd_per_token(6e-07) == 600_000
    assert per_million_from_usd_per_token(2e-08) == 20_000
    assert per_million_from_usd_per_million("0.15") == 150_000
    assert per_million_from_usd_per_million("0.000001") == 1
    with pytest.raises(ValueError):
        per_million_from_usd_per_million("0.0000001")
    with pytest.raises(ValueError):
        per_million_from_usd_per_token(1e-13)


def test_cost_rounds_up_never_down() -> None:
    assert PRICE.cost(9, 7) == 23  # 9 × 1 + 7 × 2
    cheap = Price(150_000, 600_000)
    assert cheap.cost(1, 0) == 1  # 0.15 micro-USD is charged as 1
    assert cheap.cost(0, 0) == 0
    assert cheap.cost(1_000_000, 1_000_000) == 750_000


def _chat(**extra: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "Hello"}], **extra}


def test_max_tokens_is_filled_in_and_bounds_the_output() -> None:
    body = _chat()
    raw = len(json.dumps(body))
    result = estimate("chat", body, raw, PRICE, max_output_tokens=100, max_n=4)
    assert result.body["max_tokens"] == 100
    prompt_bound = raw + REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS
    assert result.amount == PRICE.cost(prompt_bound, 100)


def test_n_multiplies_the_output_bound() -> None:
    one = estimate("chat", _chat(max_tokens=10), 100, PRICE, 100, 4).amount
    three = estimate("chat", _chat(max_tokens=10, n=3), 100, PRICE, 100, 4).amount
    assert three - one == PRICE.cost(0, 20)


@pytest.mark.parametrize("extra", [{"max_tokens": 101}, {"max_tokens": 0}, {"max_tokens": "5"}, {"max_tokens": True},
                                   {"n": 5}, {"n": 0}, {"max_completion_tokens": 1000}, {"stream": "yes"},
                                   {"stream": True, "stream_options": "x"}])
def test_out_of_bounds_parameters_are_refused(extra: dict) -> None:
    with pytest.raises(Denial) as caught:
        estimate("chat", _chat(**extra), 100, PRICE, max_output_tokens=100, max_n=4)
    assert caught.value.status == 400


def test_streams_ask_the_provider_for_usage() -> None:
    result = estimate("chat", _chat(stream=True, stream_options={"include_usage": False}), 100, PRICE, 100, 4)
    assert result.body["stream_options"] == {"include_usage": True}


def test_content_without_a_byte_bound_is_refused() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    with pytest.raises(Denial) as caught:
        estimate("chat", body, 200, PRICE, 100, 4)
    assert caught.value.code == "unsupported_content"


def test_embeddings_and_completions() -> None:
    assert estimate("embedding", {"model": "m", "input": "abc"}, 40, PRICE, 100, 4).amount == PRICE.cost(
        40 + REQUEST_OVERHEAD_TOKENS, 0)
    completion = estimate("completion", {"model": "m", "prompt": "x", "best_of": 3, "max_tokens": 10}, 40, PRICE,
                          100, 4)
    assert completion.amount == PRICE.cost(40 + REQUEST_OVERHEAD_TOKENS, 30)
    with pytest.raises(Denial):
        estimate("completion", {"model": "m"}, 40, PRICE, 100, 4)


def test_the_prompt_bound_covers_the_tokens_of_real_text() -> None:
    # Byte-level BPE emits at most one token per byte: a bound on bytes is a bound on tokens for any text.
    text = "Grüße, 世界! " * 50
    body = _chat(messages=[{"role": "user", "content": text}])
    raw = len(json.dumps(body).encode())
    assert raw >= len(text.encode("utf-8"))
