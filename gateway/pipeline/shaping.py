"""Step: shape the request into what LiteLLM will receive, and bound what it may cost.

Validates the fields the worst case depends on and fills in what the gateway needs:

* ``max_tokens`` set to the model's cap when the client gives neither ``max_tokens`` nor ``max_completion_tokens``
  (the output must be bounded before dispatch); each that is present must be a positive integer within the cap, and
  the bound is the larger (a provider may honour either);
* ``n`` (and ``best_of`` for text completions) within the policy's ``max_n``;
* for streams, ``stream_options.include_usage`` forced on: settlement needs the provider's own usage at the end;
* for the Responses API (:func:`shape_response`): ``max_output_tokens`` the same way as ``max_tokens``, and
  ``store: false`` on every call (nothing is kept in the provider account every tenant shares);
* chat content must be text, or images for a model whose policy entry bounds an image's tokens
  (``max_image_tokens``): content billed by something other than its bytes has no bound on its tokens otherwise, so
  it cannot be priced in advance (:mod:`gateway.credits.pricing`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.pipeline.errors import Denial
from gateway.policy import ModelMode


@dataclasses.dataclass(frozen=True, slots=True)
class Shaped:
    body: dict[str, Any]  # the body to forward (max_tokens filled in, usage requested for streams)
    output_bound: int | None = None  # output tokens per choice the provider may produce (None: embeddings)
    choices: int = 1  # n (or best_of for text completions)
    stream: bool = False
    usage_requested: bool = False  # the client asked for a stream's usage event (the provider is always asked)
    images: int = 0  # image parts in the messages, each priced at the model's max_image_tokens


def _positive_int(body: dict[str, Any], name: str, default: int, cap: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Denial(400, "invalid_request", f"'{name}' must be a positive integer.", param=name)
    if value > cap:
        raise Denial(400, "invalid_request", f"'{name}' may be at most {cap} for this model.", param=name)
    return value


def _check_content(messages: list[Any], images_allowed: bool) -> int:
    """The number of image parts; refuses content that cannot be priced for this model."""
    images = 0
    for message in messages:
        if not isinstance(message, dict):
            raise Denial(400, "invalid_request", "Each message must be an object.", param="messages")
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "image_url" and images_allowed:
                    images += 1
                elif kind == "image_url":
                    raise Denial(400, "unsupported_content", "This model does not accept images (the policy sets no "
                                 "image price for it).", param="messages")
                elif kind not in ("text", None):
                    raise Denial(400, "unsupported_content",
                                 "Only text and image content is accepted (other content cannot be priced in "
                                 "advance).", param="messages")
    return images


def shape(mode: ModelMode, body: dict[str, Any], max_output_tokens: int, max_n: int,
          max_image_tokens: int | None = None) -> Shaped:
    """The body to forward and its bounds. Raises :class:`Denial` for what cannot be bounded."""
    forwarded = dict(body)
    images = 0
    if mode == "embedding":
        return Shaped(forwarded)
    if mode == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Denial(400, "invalid_request", "'messages' must be a non-empty list.", param="messages")
        images = _check_content(messages, max_image_tokens is not None)
    elif "prompt" not in body:
        raise Denial(400, "invalid_request", "'prompt' is required.", param="prompt")
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
        raise Denial(400, "invalid_request", "'stream' must be a boolean.", param="stream")
    if stream:
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise Denial(400, "invalid_request", "'stream_options' must be an object.", param="stream_options")
        forwarded["stream_options"] = {**(options or {}), "include_usage": True}
    requested = stream and (body.get("stream_options") or {}).get("include_usage") is True
    return Shaped(forwarded, output_bound=output, choices=choices, stream=stream, usage_requested=requested,
                  images=images)


# OpenAI's Responses API refuses a smaller max_output_tokens; LiteLLM 1.106.12 raises one to it.
RESPONSES_MIN_OUTPUT_TOKENS = 16


def shape_response(body: dict[str, Any], max_output_tokens: int, images: int = 0,
                   max_image_tokens: int | None = None) -> Shaped:
    """A Responses API call: its output bounded by ``max_output_tokens`` (filled in with the model's cap when absent,
    like chat's ``max_tokens``), one answer, and ``store: false`` always. ``images``: the input's image parts, each
    priced at the model's ``max_image_tokens`` (refused for a model without one, as on chat)."""
    if images and max_image_tokens is None:
        raise Denial(400, "unsupported_content", "This model does not accept images (the policy sets no image price "
                     "for it).", param="input")
    forwarded = {**body, "store": False}
    output = _positive_int(body, "max_output_tokens", max_output_tokens, max_output_tokens)
    if output < RESPONSES_MIN_OUTPUT_TOKENS:
        # LiteLLM raises a smaller bound to OpenAI's minimum after its last hook: the provider would be allowed more
        # output than was priced.
        raise Denial(400, "invalid_request", f"'max_output_tokens' must be at least {RESPONSES_MIN_OUTPUT_TOKENS}.",
                     param="max_output_tokens")
    forwarded["max_output_tokens"] = output
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise Denial(400, "invalid_request", "'stream' must be a boolean.", param="stream")
    return Shaped(forwarded, output_bound=output, choices=1, stream=stream, images=images)
