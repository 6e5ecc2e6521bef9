"""LiteLLM's internal response headers never reach the client; a request id always does.

threat-model: TM-T3
"""

from __future__ import annotations

import httpx

from tests.support import RunningGateway

CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}]}


def _assert_clean(response: httpx.Response, standin_port: int) -> None:
    names = {name.lower() for name in response.headers}
    leaked = [n for n in names if n.startswith(("x-litellm", "llm_provider"))]
    assert leaked == []
    # The x-ratelimit-* headers are the key's own (the policy's default_rpm here), never the provider account's
    # (the stand-in sends 424242 and friends, as OpenAI sends its account's figures).
    assert response.headers["x-ratelimit-limit-requests"] == "1000000"
    assert "4242" not in repr(response.headers)
    assert str(standin_port) not in repr(response.headers)
    assert response.headers["x-request-id"].startswith("req_")


def test_non_streaming_and_streaming_headers(gateway: RunningGateway, standin) -> None:
    bearer = {"Authorization": f"Bearer {gateway.customer_key}"}
    plain = httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT, headers=bearer, timeout=30)
    assert plain.status_code == 200
    _assert_clean(plain, standin.port)
    with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", json={**CHAT, "stream": True},
                      headers=bearer, timeout=30) as streamed:
        assert streamed.status_code == 200
        body = b"".join(streamed.iter_bytes())
        _assert_clean(streamed, standin.port)
    assert b"[DONE]" in body
    for path, payload in (("/v1/completions", {"model": "text-model", "prompt": "x"}),
                          ("/v1/embeddings", {"model": "embed-model", "input": "x"})):
        response = httpx.post(gateway.base_url + path, json=payload, headers=bearer, timeout=30)
        assert response.status_code == 200
        _assert_clean(response, standin.port)


def test_errors_carry_a_request_id_too(gateway: RunningGateway) -> None:
    response = httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert response.status_code == 401 and response.headers["x-request-id"].startswith("req_")
