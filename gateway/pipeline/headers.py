"""Steps around the handoff: which request headers LiteLLM may see, and which response headers the client may see.

Both are allow-lists. LiteLLM reads keys from many carriers (``x-litellm-api-key``, ``api-key``, ``x-api-key``,
``x-goog-api-key``, ``Ocp-Apim-Subscription-Key``, ``?key=``, Basic and AWS-style headers) and honours control headers
(``x-litellm-*``); none of them passes. On the way back LiteLLM adds ``x-litellm-model-api-base`` (the upstream URL),
``llm_provider-*`` (upstream headers), spend and cost headers; only plain HTTP headers pass.
"""

from __future__ import annotations

from gateway.pipeline.asgi import Scope

# Request headers LiteLLM may see. Authorization is replaced (never the customer's key) and Content-Type is set by
# the gateway: LiteLLM picks its body parser from it, and the body it gets is always our canonical JSON.
FORWARDED_REQUEST_HEADERS = frozenset({b"host", b"accept", b"user-agent"})
# The placeholder credential LiteLLM sees; our custom_auth bridge ignores it and reads the scope's principal.
PLACEHOLDER_AUTHORIZATION = b"Bearer gateway-verified-principal"

PASSED_RESPONSE_HEADERS = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"transfer-encoding", b"cache-control", b"vary"}
)


def scrub_request(scope: Scope, body_length: int) -> list[tuple[bytes, bytes]]:
    headers = [(k, v) for k, v in scope.get("headers", ()) if k in FORWARDED_REQUEST_HEADERS]
    headers.append((b"authorization", PLACEHOLDER_AUTHORIZATION))
    headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(body_length).encode()))
    return headers


def scrub_response(headers: list[tuple[bytes, bytes]], request_id: str) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() in PASSED_RESPONSE_HEADERS]
    kept.append((b"x-request-id", request_id.encode()))
    return kept
