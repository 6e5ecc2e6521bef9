"""Client-facing errors: the OpenAI error shape with a stable code, and nothing else.

Denials raised by pipeline steps::

    Denial(status, code)
      ├── 401 invalid_api_key        every authentication failure, whatever the reason (reason goes to logs)
      ├── 403 model_not_allowed      the key may not use this model (or the model is not exposed)
      ├── 400 invalid_request        body is not a JSON object, or a required field is missing or of the wrong type
      ├── 400 unsupported_parameter  a body field that would steer LiteLLM (destination, credential, cost, callbacks)
      ├── 413 request_too_large      body over the policy's max_body_bytes
      ├── 429 rate_limited           the key's requests or tokens per minute (Retry-After, x-ratelimit-*)
      ├── 404 not_found              path/method not on the allow-list
      ├── 503 service_unavailable    the key store is unreachable (fail closed)
      ├── 500 internal_error         anything unexpected (details in logs only)
      └── 502/504 upstream_error, upstream_timeout   LiteLLM or the provider failed (their text is never relayed)
"""

from __future__ import annotations

import json

from gateway.metrics import DENIALS
from gateway.pipeline.asgi import Send, send_json


class Denial(Exception):
    def __init__(self, status: int, code: str, message: str, *, error_type: str = "invalid_request_error",
                 headers: list[tuple[bytes, bytes]] | None = None, param: str | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type
        self.headers = headers or []
        self.param = param  # the request field at fault, when one is (OpenAI's ``param``); never its value


def invalid_api_key() -> Denial:
    return Denial(401, "invalid_api_key", "Invalid API key.", error_type="authentication_error")


def not_found() -> Denial:
    return Denial(404, "not_found", "Not found.")


def internal_error() -> Denial:
    return Denial(500, "internal_error", "Internal error.", error_type="server_error")


def service_unavailable() -> Denial:
    """A store the answer depends on (keys, ledger, rate-limit counters) is unreachable: fail closed."""
    return Denial(503, "service_unavailable", "Service temporarily unavailable.", error_type="server_error")


def error_body(denial: Denial) -> bytes:
    return json.dumps(
        {"error": {"message": denial.message, "type": denial.error_type, "param": denial.param, "code": denial.code}}
    ).encode()


async def send_denial(send: Send, denial: Denial, request_id: str) -> None:
    DENIALS.labels(code=denial.code).inc()
    headers = list(denial.headers)
    if denial.status == 401:
        headers.insert(0, (b"www-authenticate", b'Bearer realm="gateway"'))
    await send_json(send, denial.status, error_body(denial), request_id, headers)
