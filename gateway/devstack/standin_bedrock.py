"""PROVIDER STAND-IN, NOT A REAL LLM: AWS Bedrock's Converse API, for the stand-in's
``POST /model/{modelId}/converse`` and ``POST /model/{modelId}/converse-stream``
(:mod:`gateway.devstack.fake_provider`).

Each request's SigV4 signature is recomputed with botocore from the secret of the access key id it names, over the
raw (still percent-encoded) path, the signed headers and the body, and compared in constant time; a key the stand-in
was not given gets AWS's 403 ``UnrecognizedClientException``, a signature that does not match its
``InvalidSignatureException``. Answers carry ``usage`` {inputTokens, outputTokens, totalTokens} and ``stopReason``,
text or ``toolUse`` content blocks; ConverseStream answers in AWS's event-stream binary framing
(:func:`event_message`).
"""

from __future__ import annotations

import asyncio
import binascii
import datetime
import hashlib
import hmac
import json
import re
import struct
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

from gateway.devstack.standin_anthropic import REPLY

# AWS's x-amzn-ErrorType values and messages, as Bedrock answers them.
UNRECOGNIZED = ("UnrecognizedClientException", "The security token included in the request is invalid.")
BAD_SIGNATURE = ("InvalidSignatureException",
                 ("The request signature we calculated does not match the signature you provided. Check your AWS "
                 "Secret Access Key and signing method. Consult the service documentation for details."))
MISSING_AUTH = ("MissingAuthenticationTokenException", "Missing Authentication Token")
EXPIRED = ("InvalidSignatureException", ("Signature expired: the request's X-Amz-Date is more than 5 minutes away "
                                        "from the current time."))
ERROR_STATUS = {"UnrecognizedClientException": 403, "InvalidSignatureException": 403,
                "MissingAuthenticationTokenException": 403, "ValidationException": 400,
                "InternalServerException": 500, "ThrottlingException": 429}
_AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=([A-Z0-9]{16,128})/([0-9]{8})/([a-z0-9-]{1,32})/"
                            r"([a-z0-9-]{1,32})/aws4_request, ?SignedHeaders=([a-z0-9;-]{1,1024}), ?"
                            r"Signature=([0-9a-f]{64})")
# How far a request's X-Amz-Date may be from the stand-in's clock (AWS allows 5 minutes).
MAX_SKEW = datetime.timedelta(minutes=5)


def bedrock_error(kind: str, message: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """An AWS JSON-protocol error: its status, the ``x-amzn-ErrorType`` header and the ``{"message"}`` body."""
    return ERROR_STATUS[kind], {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.coral.service/"}, {
        "message": message}


def aws_credentials(credentials: Collection[str] | None) -> dict[str, tuple[str, str | None]] | None:
    """The AWS keys among ``credentials`` (each a JSON object with aws_access_key_id, aws_secret_access_key and an
    optional aws_session_token): access key id -> (secret key, session token). None accepts any signature."""
    if credentials is None:
        return None
    keys: dict[str, tuple[str, str | None]] = {}
    for text in credentials:
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("aws_access_key_id"), str) and isinstance(
                value.get("aws_secret_access_key"), str):
            keys[value["aws_access_key_id"]] = (value["aws_secret_access_key"], value.get("aws_session_token"))
    return keys


def signing_scope(authorization: str | None) -> dict[str, str] | None:
    """The parts of a SigV4 Authorization header (access key id, date, region, service, signed headers, signature)."""
    match = _AUTHORIZATION.fullmatch(authorization or "")
    if match is None:
        return None
    names = ("access_key_id", "date", "region", "service", "signed_headers", "signature")
    return dict(zip(names, match.groups(), strict=True))


def check_signature(method: str, url: str, headers: Mapping[str, str], body: bytes,
                    keys: Mapping[str, tuple[str, str | None]] | None,
                    now: datetime.datetime | None = None) -> tuple[str, str] | None:
    """None when the request is signed with one of ``keys`` as AWS checks it (SigV4, service ``bedrock``); else the
    AWS error (type, message). ``url`` is the request's URL with its raw, still percent-encoded path; ``headers`` its
    headers with lower-case names."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    scope = signing_scope(headers.get("authorization"))
    if scope is None:
        return MISSING_AUTH
    if keys is None:
        return None
    known = keys.get(scope["access_key_id"])
    if known is None or scope["service"] != "bedrock":
        return UNRECOGNIZED
    secret, token = known
    if token is not None and not hmac.compare_digest(headers.get("x-amz-security-token", "").encode(),
                                                     token.encode()):
        return UNRECOGNIZED
    stamp = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return BAD_SIGNATURE
    current = now or datetime.datetime.now(datetime.UTC)
    if abs(current - signed_at) > MAX_SKEW:
        return EXPIRED
    if not stamp.startswith(scope["date"]):
        return BAD_SIGNATURE
    signed = scope["signed_headers"].split(";")
    if "host" not in signed or any(name not in headers for name in signed):
        return BAD_SIGNATURE
    # botocore's canonical request takes a signed x-amz-content-sha256 header in place of the body's hash, as AWS
    # does; AWS then checks that header against the body it received, and so must this.
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and not hmac.compare_digest(claimed.encode(), hashlib.sha256(body).hexdigest().encode()):
        return BAD_SIGNATURE
    request = AWSRequest(method=method, url=url, data=body, headers={name: headers[name] for name in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(scope["access_key_id"], secret, token), "bedrock", scope["region"])
    if signer.signed_headers(signer.headers_to_sign(request)) != scope["signed_headers"]:
        return BAD_SIGNATURE
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected.encode(), scope["signature"].encode()):
        return BAD_SIGNATURE
    return None


# --- AWS event-stream framing (application/vnd.amazon.eventstream) ----------------------------------------------------

_STRING_HEADER = 7


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
    return (struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING_HEADER, len(raw_value))
            + raw_value)


def event_message(event_type: str, payload: Mapping[str, Any], message_type: str = "event") -> bytes:
    """One event-stream message: the prelude (total length, headers length, the prelude's CRC32), string headers
    (``:event-type`` or, for an exception, ``:exception-type``; ``:content-type``; ``:message-type``), the JSON
    payload and the CRC32 of everything before it."""
    type_header = ":exception-type" if message_type == "exception" else ":event-type"
    headers = (_header(type_header, event_type) + _header(":content-type", "application/json")
               + _header(":message-type", message_type))
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


# --- Converse answers ---------------------------------------------------------------------------------------------


def input_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens grow with the request's messages, so a test can tell the provider's figure from a constant."""
    return 11 + len(json.dumps(body.get("messages", ""))) // 8


def _called_tool(body: Mapping[str, Any]) -> str | None:
    """The tool the stand-in calls: the one toolChoice names, else the first declared, unless the conversation ends
    in a toolResult (then it answers in text)."""
    config = body.get("toolConfig")
    tools = [t["toolSpec"]["name"] for t in (config or {}).get("tools") or []
             if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict) and t["toolSpec"].get("name")]
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else {}
    answered = any(isinstance(block, dict) and "toolResult" in block for block in last.get("content") or [])
    if not tools or answered:
        return None
    named = ((config or {}).get("toolChoice") or {}).get("tool")
    return str(named["name"]) if isinstance(named, dict) and named.get("name") else str(tools[0])


def _reply_tokens(body: Mapping[str, Any]) -> tuple[str, int]:
    """The text and its output tokens, cut to inferenceConfig.maxTokens as Bedrock cuts an answer."""
    limit = (body.get("inferenceConfig") or {}).get("maxTokens")
    words = REPLY.split(" ")
    if isinstance(limit, int) and limit < len(words):
        return " ".join(words[:limit]), limit
    return REPLY, len(words)


# A model id whose answers carry no usage (a stream without its metadata event): what the gateway charges then.
NO_USAGE = "standin-no-usage"


def converse_answer(body: Mapping[str, Any], model_id: str) -> dict[str, Any]:
    """A Converse response: the assistant message (text, or one toolUse block), stopReason, usage and metrics."""
    prompt = input_tokens(body)
    tool = _called_tool(body)
    if tool is not None:
        content: list[dict[str, Any]] = [{"toolUse": {"toolUseId": "tooluse_standin0001", "name": tool,
                                                      "input": {}}}]
        output, stop = 12, "tool_use"
    else:
        text, output = _reply_tokens(body)
        limit = (body.get("inferenceConfig") or {}).get("maxTokens")
        content = [{"text": text}]
        stop = "max_tokens" if isinstance(limit, int) and output >= limit and text != REPLY else "end_turn"
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": {"inputTokens": prompt, "outputTokens": output, "totalTokens": prompt + output},
            "metrics": {"latencyMs": 42}}


async def converse_events(body: Mapping[str, Any], model_id: str, delay: float = 0.0) -> AsyncIterator[bytes]:
    """A ConverseStream answer as event-stream messages: messageStart, the content block (text deltas, or a toolUse
    start and its input as JSON text), contentBlockStop, messageStop, and metadata with usage."""
    answer = converse_answer(body, model_id)
    block = answer["output"]["message"]["content"][0]
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    if "toolUse" in block:
        use = block["toolUse"]
        events.append(("contentBlockStart", {"contentBlockIndex": 0, "start": {
            "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
        events.append(("contentBlockDelta", {"contentBlockIndex": 0,
                                             "delta": {"toolUse": {"input": json.dumps(use["input"])}}}))
    else:
        words = block["text"].split(" ")
        for i, word in enumerate(words):
            events.append(("contentBlockDelta", {"contentBlockIndex": 0,
                                                 "delta": {"text": word if i == 0 else " " + word}}))
    events += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": answer["stopReason"]})]
    if model_id != NO_USAGE:
        events.append(("metadata", {"usage": answer["usage"], "metrics": answer["metrics"]}))
    for event_type, payload in events:
        if delay:
            await asyncio.sleep(delay)
        yield event_message(event_type, payload)
