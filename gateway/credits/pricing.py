"""Prices and worst-case estimates, in integer micro-USD.

Prices are held as micro-USD per million tokens (so $0.15 per 1M tokens is 150_000), which keeps every price LiteLLM's
cost map lists an integer. Costs round up to the next micro-USD: the gateway never charges less than the tokens cost.

Worst case of a request = prompt-token upper bound × input price + output-token bound × output price, where

* the prompt bound is the UTF-8 byte length of the request body plus a per-message and per-tool overhead. Byte-level
  BPE tokenizers (the GPT family's) emit at most one token per byte of text, JSON encoding only adds bytes, and the
  chat format adds a few tokens per message (≤ 4 for OpenAI's); we allow 8 per message, 16 per tool and 16 more;
* each image adds the model's ``max_image_tokens`` (the policy's worst case for one image at any detail);
* the output bound is ``max_tokens`` (set by the gateway to the model's cap when the client omits it) × ``n``
  (× ``best_of`` for text completions).

The bounds come from the request as the pipeline shaped it (:mod:`gateway.pipeline.shaping`), which also refuses
content billed by something other than its bytes (images, audio, files): bytes give no bound on its tokens.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.policy import ModelMode

MESSAGE_OVERHEAD_TOKENS = 8
TOOL_OVERHEAD_TOKENS = 16
REQUEST_OVERHEAD_TOKENS = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Price:
    input_per_million: int  # micro-USD per 1M input tokens
    output_per_million: int  # micro-USD per 1M output tokens
    # Anthropic's prompt-cache tokens (written, read); None: the input price.
    cache_write_per_million: int | None = None
    cache_read_per_million: int | None = None

    @property
    def cache_write(self) -> int:
        return self.input_per_million if self.cache_write_per_million is None else self.cache_write_per_million

    @property
    def cache_read(self) -> int:
        return self.input_per_million if self.cache_read_per_million is None else self.cache_read_per_million

    def cost(self, prompt_tokens: int, completion_tokens: int, cache_write_tokens: int = 0,
             cache_read_tokens: int = 0) -> int:
        """``prompt_tokens`` counts every input token, cache tokens included (as LiteLLM reports Anthropic's usage);
        those of them that were written to or read from the prompt cache are charged at the cache prices."""
        cached = cache_write_tokens + cache_read_tokens
        if cached > prompt_tokens:
            raise ValueError("more cache tokens than input tokens")
        total = ((prompt_tokens - cached) * self.input_per_million + cache_write_tokens * self.cache_write
                 + cache_read_tokens * self.cache_read + completion_tokens * self.output_per_million)
        return -(-total // 1_000_000)  # ceiling division: never round a charge down


def per_million_from_usd_per_token(value: float | str) -> int:
    """Convert LiteLLM's float USD-per-token (e.g. 1.5e-07) to integer micro-USD per million tokens (150_000)."""
    try:
        exact = Decimal(str(value)) * Decimal(10) ** 12
    except InvalidOperation:
        raise ValueError(f"not a price: {value!r}") from None
    if exact < 0 or exact != exact.to_integral_value():
        raise ValueError(f"price {value!r} is not a whole number of micro-USD per million tokens")
    return int(exact)


def per_million_from_usd_per_million(value: str) -> int:
    """Convert a policy price string in USD per million tokens ("0.15") to micro-USD per million (150_000)."""
    try:
        exact = Decimal(value) * Decimal(10) ** 6
    except InvalidOperation:
        raise ValueError(f"not a price: {value!r}") from None
    if exact < 0 or exact != exact.to_integral_value():
        raise ValueError(f"price {value!r} must be a non-negative amount with at most 6 decimals")
    return int(exact)


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    amount: int  # micro-USD
    tokens: int  # prompt bound + output bound, for tokens-per-minute limits
    prompt_bound: int = 0  # the input tokens the amount was priced for
    output_bound: int = 0  # the output tokens (all choices) the amount was priced for

    def at(self, price: Price) -> int:
        """The same worst case at another price (one deployment's, of a model with several)."""
        return price.cost(self.prompt_bound, self.output_bound)


def estimate(mode: ModelMode, body: dict[str, Any], raw_length: int, price: Price, output_bound: int | None,
             choices: int, image_tokens: int = 0) -> Estimate:
    """The worst-case cost of a shaped request: ``raw_length`` is the client's body size in bytes, ``output_bound``
    the output tokens per choice (None for embeddings), ``image_tokens`` the most its images may add to the input
    (images × the model's ``max_image_tokens``; their URLs' bytes are counted as text too)."""
    prompt_bound = raw_length + REQUEST_OVERHEAD_TOKENS + image_tokens
    if mode == "chat":
        tools = body.get("tools") or body.get("functions") or []
        prompt_bound += MESSAGE_OVERHEAD_TOKENS * len(body["messages"])
        prompt_bound += TOOL_OVERHEAD_TOKENS * (len(tools) if isinstance(tools, list) else 1)
    output = 0 if output_bound is None else output_bound * choices
    return Estimate(price.cost(prompt_bound, output), prompt_bound + output, prompt_bound, output)
