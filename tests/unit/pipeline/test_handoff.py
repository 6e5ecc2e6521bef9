"""The handoff as LiteLLM sees it, with a recording ASGI app in LiteLLM's place.

threat-model: TM-T3
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.credits.pricing import Price
from gateway.pipeline.approval import Approval
from gateway.pipeline.asgi import PRINCIPAL_SCOPE_KEY
from gateway.pipeline.credits import REMAINING_HEADER, LedgerThreads, Meter
from gateway.pipeline.handoff import hand_off
from gateway.pipeline.headers import PLACEHOLDER_AUTHORIZATION
from gateway.principal import Principal

PRINCIPAL = Principal(key_id="key_1", kind="ck", name="n", models=frozenset({"m"}), expires_at=None)
BODY = json.dumps({"model": "m", "messages": []}).encode()
CUSTOMER_KEY = b"lgw_ck_presented-by-the-client"


class _Ledger:
    """Records how the meter closed the reservation."""

    writers = 1

    def __init__(self) -> None:
        self.closed: list[tuple[str, object]] = []

    def settle(self, request_id: str, amount: int) -> int:
        self.closed.append(("settle", amount))
        return 9_000

    def release(self, request_id: str, reason: str) -> None:
        self.closed.append(("release", reason))


class _Audit:
    def __init__(self) -> None:
        self.entries: list[str] = []

    def try_record(self, event: str, **_fields: object) -> None:
        self.entries.append(event)


def _run(status: int, response_headers: list[tuple[bytes, bytes]], body: bytes = b"{}") -> tuple[dict, list, bytes]:
    seen: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []

    async def llm_app(scope: dict, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        seen["body"] = (await receive())["body"]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"key=lgw_ck_in_query",
        "headers": [(b"host", b"gw"), (b"content-type", b"application/json"), (b"authorization", b"Bearer " + CUSTOMER_KEY),
                    (b"x-litellm-api-key", CUSTOMER_KEY), (b"api-key", CUSTOMER_KEY), (b"x-api-key", CUSTOMER_KEY),
                    (b"x-goog-api-key", CUSTOMER_KEY), (b"ocp-apim-subscription-key", CUSTOMER_KEY),
                    (b"x-litellm-tags", b"t"), (b"x-forwarded-for", b"1.2.3.4"), (b"cookie", b"c=1")],
    }
    ledger = _Ledger()
    meter = Meter(ledger, "req_1", "key_1", Price(1_000_000, 2_000_000), 500, 10_000, "chat",  # type: ignore[arg-type]
                  LedgerThreads(1))
    approval = Approval(request_id="req_1", key_id="key_1", model="m", mode="chat", body=json.loads(BODY),
                        output_bound=10, choices=1, stream=False)
    asyncio.run(hand_off(llm_app, scope, receive, send, principal=PRINCIPAL, raw_body=BODY, request_id="req_1",
                         llm_state={"tracing_receiver": None}, meter=meter, approval=approval,
                         audit=_Audit()))  # type: ignore[arg-type]
    seen["closed"] = ledger.closed
    return seen, sent, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_litellm_sees_the_principal_and_no_client_credential() -> None:
    seen, _, _ = _run(200, [(b"content-type", b"application/json")])
    scope = seen["scope"]
    assert scope[PRINCIPAL_SCOPE_KEY] is PRINCIPAL
    assert scope["query_string"] == b""
    assert seen["body"] == BODY
    headers = dict(scope["headers"])
    assert headers[b"authorization"] == PLACEHOLDER_AUTHORIZATION
    assert set(headers) == {b"host", b"content-type", b"authorization", b"content-length"}
    assert CUSTOMER_KEY.decode() not in repr(scope["headers"])
    assert scope["state"] == {"tracing_receiver": None}


def test_response_headers_pass_an_allow_list() -> None:
    upstream = [(b"content-type", b"application/json"), (b"x-litellm-model-api-base", b"http://10.0.0.5/v1"),
                (b"llm_provider-openai-organization", b"org-1"), (b"x-litellm-key-spend", b"0.1"),
                (b"x-litellm-response-cost", b"0.01"), (b"x-ratelimit-remaining-requests", b"9"),
                (b"set-cookie", b"s=1"), (b"server", b"uvicorn")]
    _, sent, _ = _run(200, upstream)
    start = sent[0]
    assert start["status"] == 200
    # The plain answer is held for settlement and goes out with its exact length.
    assert dict(start["headers"]) == {b"content-type": b"application/json", b"x-request-id": b"req_1",
                                      REMAINING_HEADER: b"9000", b"content-length": b"2"}


def test_litellm_errors_are_replaced_by_ours() -> None:
    leaky = json.dumps({"error": {"message": "litellm.APIConnectionError: http://10.0.0.5/v1 Bearer sk-upstream"}})
    for status, expected_status, code in [(500, 502, "upstream_error"), (401, 502, "upstream_error"),
                                          (400, 400, "invalid_request"), (429, 429, "upstream_rate_limited"),
                                          (408, 504, "upstream_timeout")]:
        _, sent, body = _run(status, [(b"x-litellm-model-api-base", b"http://10.0.0.5/v1")], leaky.encode())
        assert sent[0]["status"] == expected_status
        assert json.loads(body)["error"]["code"] == code
        assert b"10.0.0.5" not in body and b"sk-upstream" not in body
        assert b"10.0.0.5" not in repr(sent[0]["headers"]).encode()


def test_error_events_inside_a_stream_are_replaced() -> None:
    from gateway.pipeline.handoff import sanitize_stream_chunk

    leaky = b'data: {"error": {"message": "upstream said Bearer sk-upstream at http://10.0.0.5/v1"}}\n\n'
    clean = sanitize_stream_chunk(leaky)
    assert b"sk-upstream" not in clean and b"10.0.0.5" not in clean
    assert json.loads(clean.split(b"\n")[0][6:])["error"]["code"] == "upstream_error"
    # A normal chunk that mentions "error" below the top level passes unchanged.
    ordinary = b'data: {"choices": [{"delta": {"content": "x"}, "logprobs": {"error": 0}}]}\n\n'
    assert sanitize_stream_chunk(ordinary) == ordinary


def test_the_reservation_closes_exactly_once() -> None:
    usage = b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}'
    seen, sent, body = _run(200, [(b"content-type", b"application/json")], usage)
    assert seen["closed"] == [("settle", 11)]  # 3 × 1 + 4 × 2 micro-USD, settled before the answer went out
    assert json.loads(body) == json.loads(usage) and dict(sent[0]["headers"])[REMAINING_HEADER] == b"9000"
    seen, _, _ = _run(500, [(b"content-type", b"application/json")])
    assert seen["closed"] == [("release", "upstream_error")]


def test_an_answer_cut_short_by_litellm_is_never_sent() -> None:
    sent: list[dict[str, Any]] = []
    ledger = _Ledger()

    async def llm_app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"partial": ', "more_body": True})
        raise RuntimeError("LiteLLM failed mid-answer")

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    meter = Meter(ledger, "req_1", "key_1", Price(1_000_000, 2_000_000), 500, 10_000, "chat",  # type: ignore[arg-type]
                  LedgerThreads(1))
    approval = Approval(request_id="req_1", key_id="key_1", model="m", mode="chat", body={}, output_bound=10,
                        choices=1, stream=False, dispatched=True)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    try:
        asyncio.run(hand_off(llm_app, scope, receive, send, principal=PRINCIPAL, raw_body=BODY, request_id="req_1",
                             llm_state={}, meter=meter, approval=approval, audit=_Audit()))  # type: ignore[arg-type]
    except RuntimeError:
        pass
    else:
        raise AssertionError("the handoff must re-raise so the pipeline answers 500")
    assert sent == []  # the customer pipeline answers 500 itself, since nothing was sent
    assert ledger.closed == [("settle", 500)]  # started, never completed: the whole reservation (client_gone basis)


def _shaped_stream(chunks: list[bytes], usage_requested: bool) -> bytes:
    from gateway.pipeline.handoff import SpecShape

    sent: list[dict[str, Any]] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def run() -> None:
        shape = SpecShape(send, usage_requested=usage_requested)
        await shape({"type": "http.response.start", "status": 200,
                     "headers": [(b"content-type", b"text/event-stream")]})
        for i, chunk in enumerate(chunks):
            await shape({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    asyncio.run(run())
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


STREAM = [
    (b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}],'
    b'"provider_specific_fields":{"x":1}}\n\n'),
    (b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{}}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4,"cost":1e-06}}\n\n'),
    b"data: [DONE]\n\n",
]


def test_a_streams_usage_event_reaches_only_a_client_that_asked() -> None:
    quiet = _shaped_stream(STREAM, usage_requested=False)
    assert b'"usage"' not in quiet and quiet.endswith(b"data: [DONE]\n\n")
    events = [json.loads(line[6:]) for line in quiet.split(b"\n") if line.startswith(b"data: {")]
    # LiteLLM's own field is gone; finish_reason, which OpenAI always sends, is there (null).
    assert events == [{"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"},
                                                                       "finish_reason": None}]}]
    asked = _shaped_stream(STREAM, usage_requested=True)
    usage = [json.loads(line[6:]) for line in asked.split(b"\n") if b'"usage"' in line]
    assert usage == [{"object": "chat.completion.chunk", "choices": [],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}]


def test_a_lone_surrogate_from_the_provider_stays_escaped_and_is_never_a_5xx() -> None:
    from gateway.pipeline.handoff import SpecShape

    chunk = b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\\ud800 ok"}}]}\n\n'
    out = _shaped_stream([chunk, b"data: [DONE]\n\n"], usage_requested=False)
    (event,) = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: {")]
    assert event["choices"][0]["delta"]["content"] == "\ud800 ok"
    sent: list[dict[str, Any]] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def plain() -> None:
        shape = SpecShape(send, usage_requested=False)
        await shape({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await shape({"type": "http.response.body", "body": b'{"object":"chat.completion","choices":[],"x":"\\ud800"}'})

    asyncio.run(plain())
    assert json.loads(sent[1]["body"])["x"] == "\ud800"
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(sent[1]["body"])).encode()
