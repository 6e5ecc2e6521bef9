"""Errors a client sees are ours: stable codes, OpenAI shape, no upstream or exception text."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support import RunningGateway, StandIn

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}


def _post(gateway: RunningGateway, payload: object, **kwargs: object) -> httpx.Response:
    return httpx.post(gateway.base_url + "/v1/chat/completions", json=payload,
                      headers={"Authorization": f"Bearer {gateway.customer_key}"}, timeout=30, **kwargs)


def test_upstream_failure_is_a_generic_502(gateway: RunningGateway, standin: StandIn) -> None:
    standin.recorder.clear()
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.customer_key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="failing-model", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 502
    assert caught.value.body == {"message": "The model provider failed.", "type": "server_error", "param": None,
                                 "code": "upstream_error"}
    assert "stand-in failure" not in caught.value.response.text
    assert str(standin.port) not in caught.value.response.text
    # No retries: one customer request is one provider call (the reservation bounds one call's bill).
    assert len(standin.recorder.all()) == 1


@pytest.mark.parametrize("field", ["api_base", "base_url", "api_key", "user_config", "extra_headers", "headers",
                                   "mock_response", "litellm_params", "provider_specific_header", "extra_body"])
def test_steering_fields_are_refused_before_litellm(gateway: RunningGateway, standin: StandIn, field: str) -> None:
    standin.recorder.clear()
    response = _post(gateway, {**CHAT, field: {"x": "http://attacker.invalid"} if "header" in field else "x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_parameter"
    assert standin.recorder.all() == []


def test_body_must_be_a_json_object(gateway: RunningGateway, standin: StandIn) -> None:
    standin.recorder.clear()
    for content in (b"not json", b"[1, 2]", b"\xff\xfe", b""):
        response = httpx.post(gateway.base_url + "/v1/chat/completions", content=content, timeout=30,
                              headers={"Authorization": f"Bearer {gateway.customer_key}"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"
    assert _post(gateway, {"messages": []}).json()["error"]["code"] == "invalid_request"
    assert standin.recorder.all() == []


def test_body_size_is_bounded(gateway: RunningGateway, standin: StandIn) -> None:
    standin.recorder.clear()
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 1)}]}
    response = _post(gateway, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert standin.recorder.all() == []
