"""The Bedrock stand-in's wire pieces against botocore: its event-stream encoder against botocore's decoder, and its
SigV4 check against signatures botocore makes (a tampered body, path or header, or a wrong secret, is refused)."""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from gateway.devstack.standin_bedrock import (
    BAD_SIGNATURE,
    EXPIRED,
    MISSING_AUTH,
    UNRECOGNIZED,
    check_signature,
    converse_answer,
    event_message,
)

KEY_ID = "AKIASTANDINTEST0001"
SECRET = "standin-secret-key-0123456789abcdefghij"
KEYS = {KEY_ID: (SECRET, None)}
URL = "http://127.0.0.1:8080/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()


def _signed(secret: str = SECRET, token: str | None = None, url: str = URL,
            body: bytes = BODY) -> dict[str, str]:
    # As LiteLLM signs a Converse call (litellm/llms/bedrock/base_aws_llm.py get_request_headers).
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY_ID, secret, token), "bedrock", "us-east-1").add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = "127.0.0.1:8080"
    return headers


def test_a_signature_botocore_made_with_the_right_secret_is_accepted() -> None:
    assert check_signature("POST", URL, _signed(), BODY, KEYS) is None


def test_a_session_token_is_checked_with_its_key() -> None:
    keys = {KEY_ID: (SECRET, "standin-session-token-0123456789")}
    assert check_signature("POST", URL, _signed(token="standin-session-token-0123456789"), BODY, keys) is None
    assert check_signature("POST", URL, _signed(token="another-session-token-01234567"), BODY, keys) == UNRECOGNIZED
    assert check_signature("POST", URL, _signed(), BODY, keys) == UNRECOGNIZED


def test_a_wrong_secret_is_an_invalid_signature() -> None:
    assert check_signature("POST", URL, _signed(secret="another-secret-key-0123456789abcdefgh"), BODY,
                           KEYS) == BAD_SIGNATURE


def test_a_tampered_body_path_or_signed_header_is_refused() -> None:
    headers = _signed()
    assert check_signature("POST", URL, headers, BODY.replace(b"hi", b"ho"), KEYS) == BAD_SIGNATURE
    assert check_signature("POST", URL.replace("converse", "converse-stream"), headers, BODY, KEYS) == BAD_SIGNATURE
    assert check_signature("POST", URL.replace("%3A0", "%3A1"), headers, BODY, KEYS) == BAD_SIGNATURE
    assert check_signature("POST", URL, {**headers, "host": "127.0.0.1:8081"}, BODY, KEYS) == BAD_SIGNATURE
    assert check_signature("POST", URL, {**headers, "content-type": "text/plain"}, BODY, KEYS) == BAD_SIGNATURE


def test_a_signed_content_hash_must_be_the_bodys() -> None:
    # botocore signs a request carrying x-amz-content-sha256 over that header in place of the body's hash: a request
    # with the signed hash of one body and another body (say, a larger maxTokens) passes the signature, and AWS refuses
    # it by comparing the header with the body. So must the stand-in.
    request = AWSRequest(method="POST", url=URL, data=BODY, headers={
        "Content-Type": "application/json", "X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    SigV4Auth(Credentials(KEY_ID, SECRET, None), "bedrock", "us-east-1").add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()} | {"host": "127.0.0.1:8080"}
    assert check_signature("POST", URL, headers, BODY, KEYS) is None
    assert check_signature("POST", URL, headers, BODY.replace(b"hi", b"ho"), KEYS) == BAD_SIGNATURE


def test_an_unknown_key_a_missing_signature_or_an_old_one_is_refused() -> None:
    headers = _signed()
    assert check_signature("POST", URL, headers, BODY, {"AKIAANOTHERKEY00001": (SECRET, None)}) == UNRECOGNIZED
    assert check_signature("POST", URL, {k: v for k, v in headers.items() if k != "authorization"}, BODY,
                           KEYS) == MISSING_AUTH
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=6)
    assert check_signature("POST", URL, headers, BODY, KEYS, now=later) == EXPIRED


def _decoded(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(message.headers, message.payload) for message in buffer]


def test_event_messages_decode_with_botocore() -> None:
    payload = {"contentBlockIndex": 0, "delta": {"text": "héllo"}}
    first = event_message("contentBlockDelta", payload)
    second = event_message("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}})
    decoded = _decoded(first + second)
    assert decoded[0] == ({":event-type": "contentBlockDelta", ":content-type": "application/json",
                           ":message-type": "event"}, json.dumps(payload, separators=(",", ":")).encode())
    assert decoded[1][0][":event-type"] == "metadata"
    assert json.loads(decoded[1][1])["usage"]["totalTokens"] == 7


@pytest.mark.parametrize("offset", [0, 4, 8, 20, -1])
def test_a_corrupted_message_fails_botocores_checksums(offset: int) -> None:
    from botocore.eventstream import ChecksumMismatch, InvalidHeadersLength, InvalidPayloadLength

    message = bytearray(event_message("messageStop", {"stopReason": "end_turn"}))
    message[offset] ^= 0x01
    with pytest.raises((ChecksumMismatch, InvalidHeadersLength, InvalidPayloadLength)):
        _decoded(bytes(message))


def test_answers_carry_usage_and_stop_reason() -> None:
    answer = converse_answer({"messages": [], "inferenceConfig": {"maxTokens": 3}}, "m")
    assert answer["stopReason"] == "max_tokens"
    usage = answer["usage"]
    assert usage["outputTokens"] == 3 and usage["totalTokens"] == usage["inputTokens"] + 3
    tools = {"toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]},
             "messages": [{"role": "user", "content": [{"text": "weather?"}]}]}
    called = converse_answer(tools, "m")
    assert called["stopReason"] == "tool_use"
    assert called["output"]["message"]["content"][0]["toolUse"]["name"] == "get_weather"
