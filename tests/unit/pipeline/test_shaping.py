"""The shaping step: the output is bounded before dispatch and streams ask for usage; nothing else is changed."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.pipeline.errors import Denial
from gateway.pipeline.shaping import shape

HI = [{"role": "user", "content": "Hi"}]


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": HI, **extra}


def test_the_model_cap_is_filled_in_only_when_no_bound_is_given() -> None:
    assert shape("chat", _chat(), 100, 4).body == {**_chat(), "max_tokens": 100}
    given = shape("chat", _chat(max_completion_tokens=7), 100, 4)
    assert "max_tokens" not in given.body and given.output_bound == 7
    # Both given: each must be valid, and the larger bounds the output (a provider may honour either).
    both = shape("chat", _chat(max_tokens=5, max_completion_tokens=9), 100, 4)
    assert both.output_bound == 9 and both.body == _chat(max_tokens=5, max_completion_tokens=9)


def test_the_clients_body_is_not_changed_in_place() -> None:
    body = _chat(stream=True)
    shaped = shape("chat", body, 100, 4)
    assert body == _chat(stream=True) and shaped.body is not body


def test_streams_always_ask_for_usage_and_keep_other_options() -> None:
    shaped = shape("chat", _chat(stream=True, stream_options={"include_usage": False, "other": 1}), 100, 4)
    assert shaped.stream and shaped.body["stream_options"] == {"include_usage": True, "other": 1}
    assert "stream_options" not in shape("chat", _chat(stream=False), 100, 4).body


def test_choices_multiply_and_best_of_counts_for_completions() -> None:
    assert shape("chat", _chat(n=3), 100, 4).choices == 3
    assert shape("completion", {"model": "m", "prompt": "x", "n": 2, "best_of": 4}, 100, 4).choices == 4


def test_embeddings_are_passed_as_they_are() -> None:
    body = {"model": "m", "input": "x"}
    shaped = shape("embedding", body, 100, 4)
    assert shaped.body == body and shaped.output_bound is None and shaped.choices == 1


@pytest.mark.parametrize(("mode", "body", "code"), [
    ("chat", {"model": "m", "messages": []}, "invalid_request"),
    ("chat", {"model": "m", "messages": "Hi"}, "invalid_request"),
    ("chat", {"model": "m", "messages": ["Hi"]}, "invalid_request"),
    ("chat", _chat(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
     "unsupported_content"),
    ("completion", {"model": "m"}, "invalid_request"),
    ("chat", _chat(max_tokens=101), "invalid_request"),
    ("chat", _chat(max_tokens=0), "invalid_request"),
    ("chat", _chat(max_tokens=True), "invalid_request"),
    ("chat", _chat(n=5), "invalid_request"),
    ("completion", {"model": "m", "prompt": "x", "best_of": 5}, "invalid_request"),
    ("chat", _chat(stream="yes"), "invalid_request"),
    ("chat", _chat(stream=True, stream_options=[]), "invalid_request"),
])
def test_what_cannot_be_bounded_is_refused(mode: Any, body: dict[str, Any], code: str) -> None:
    with pytest.raises(Denial) as refused:
        shape(mode, body, 100, 4)
    assert (refused.value.status, refused.value.code) == (400, code)


def test_images_are_counted_for_a_model_with_an_image_price_and_refused_otherwise() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://images.example/a.png"}}
    body = _chat(messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}, image, image]},
                           {"role": "user", "content": [image]}])
    assert shape("chat", body, 100, 4, max_image_tokens=1445).images == 3
    with pytest.raises(Denial) as refused:
        shape("chat", body, 100, 4)
    assert refused.value.code == "unsupported_content" and "image" in refused.value.message


def test_each_image_adds_the_models_worst_case_to_the_price() -> None:
    from gateway.credits.pricing import Price, estimate

    price = Price(1_000_000, 2_000_000)
    plain = estimate("chat", _chat(), 100, price, 10, 1)
    with_images = estimate("chat", _chat(), 100, price, 10, 1, image_tokens=2 * 1445)
    assert with_images.amount - plain.amount == 2 * 1445 and with_images.tokens - plain.tokens == 2 * 1445
