"""Prices and worst-case estimates, in integer micro-USD.

Prices are held as micro-USD per million tokens (so $0.15 per 1M tokens is 150_000), which keeps every price LiteLLM's
cost map lists an integer. Costs round up to the next micro-USD: the gateway never charges less than the tokens cost.

Worst case of a request = prompt-token upper bound × input price + output-token bound × output price, where

* the prompt bound is the UTF-8 byte length of the request body plus a per-message and per-tool overhead. Byte-level
  BPE tokenizers (the GPT family's) emit at most one token per byte of text, JSON encoding only adds bytes, and the
  chat format adds a few tokens per message (≤ 4 for OpenAI's); we allow 8 per message, 16 per tool and 16 more;
* the output bound is ``max_tokens`` (set by the gateway to the model's cap when the client omits it) × ``n``
  (× ``best_of`` for text completions);
* content that is billed by something other than its bytes (images, audio, files) is refused, since bytes give no
  bound on its tokens.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.pipeline.errors import Denial

MESSAGE_OVERHEAD_TOKENS = 8
TOOL_OVERHEAD_TOKENS = 16
REQUEST_OVERHEAD_TOKENS = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Price:
    input_per_million: int  # micro-USD per 1M input tokens
    output_per_million: int  # micro-USD per 1M output tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        total = prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
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
    amount: int
    body: dict[str, Any]  # the body to forward (max_tokens filled in, usage requested for streams)
    tokens: int = 0  # prompt bound + output bound, for tokens-per-minute limits
    output_bound: int | None = None  # output tokens per choice the provider may produce (None: embeddings)
    choices: int = 1  # n (or best_of for text completions)
    stream: bool = False


def _positive_int(body: dict[str, Any], name: str, default: int, cap: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Denial(400, "invalid_request", f"'{name}' must be a positive integer.")
    if value > cap:
        raise Denial(400, "invalid_request", f"'{name}' may be at most {cap} for this model.")
    return value


def _check_content(messages: list[Any]) -> None:
    for message in messages:
        if not isinstance(message, dict):
            raise Denial(400, "invalid_request", "Each message must be an object.")
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, dict) or part.get("type") not in ("text", None):
                    raise Denial(400, "unsupported_content",
                                 "Only text content is accepted (other content cannot be priced in advance).")


def estimate(
    mode: str, body: dict[str, Any], raw_length: int, price: Price, max_output_tokens: int, max_n: int
) -> Estimate:
    """The worst-case cost of ``body`` and the body to forward. Raises :class:`Denial` for what cannot be bounded."""
    forwarded = dict(body)
    prompt_bound = raw_length + REQUEST_OVERHEAD_TOKENS
    if mode == "embedding":
        return Estimate(price.cost(prompt_bound, 0), forwarded, prompt_bound, output_bound=None)
    if mode == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Denial(400, "invalid_request", "'messages' must be a non-empty list.")
        _check_content(messages)
        tools = body.get("tools") or body.get("functions") or []
        prompt_bound += MESSAGE_OVERHEAD_TOKENS * len(messages)
        prompt_bound += TOOL_OVERHEAD_TOKENS * (len(tools) if isinstance(tools, list) else 1)
    elif "prompt" not in body:
        raise Denial(400, "invalid_request", "'prompt' is required.")
    # Both names bound the output (max_completion_tokens is the newer); a provider may honour either, so each that is
    # present must be valid and the bound is the larger. With neither, the model's cap is forwarded as max_tokens.
    bounds = [_positive_int(body, name, max_output_tokens, max_output_tokens)
              for name in ("max_tokens", "max_completion_tokens") if body.get(name) is not None]
    if bounds:
        output = max(bounds)
    else:
        output = max_output_tokens
        forwarded["max_tokens"] = output
    choices = _positive_int(body, "n", 1, max_n)
    if mode == "completion":
        choices = max(choices, _positive_int(body, "best_of", 1, max_n))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise Denial(400, "invalid_request", "'stream' must be a boolean.")
    if stream:
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise Denial(400, "invalid_request", "'stream_options' must be an object.")
        # Settlement needs the provider's own usage figures at the end of the stream.
        forwarded["stream_options"] = {**(options or {}), "include_usage": True}
    return Estimate(price.cost(prompt_bound, output * choices), forwarded, prompt_bound + output * choices,
                    output_bound=output, choices=choices, stream=stream)
