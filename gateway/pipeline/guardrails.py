"""Step: guardrails on what the request would send to a third-party provider. Each decision is logged with a code.

* Secret scanning (on by default): a prompt that carries a high-confidence credential — a private key block, a cloud
  or platform access key, one of our own keys (checksum verified) — is refused with ``400 secret_in_prompt`` naming
  the kind of credential, never the value, so users do not ship secrets to a provider by accident.
* Deny patterns (policy): regular expressions an operator forbids; a match is ``400 content_blocked`` naming the rule.

Scanned text: message contents (and text parts), tool-call arguments, the prompt and embedding inputs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from gateway.keys import format as key_format
from gateway.keys.format import KeyKind
from gateway.pipeline.errors import Denial

log = logging.getLogger("gateway.guardrails")

# (kind, pattern): each a format with a fixed prefix and enough structure that prose does not match by accident.
SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----")),
    ("aws_access_key_id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b")),
    ("gitlab_token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20}\b")),
    ("slack_token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("stripe_secret_key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{24,}\b")),
    ("openai_api_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}\b")),
    ("anthropic_api_key", re.compile(r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,}\b")),
]
OWN_KEY = re.compile(r"\blgw_(?:ck|ak)_[0-9A-Za-z]{49}\b")


def _texts(mode: str, body: dict[str, Any]) -> Iterator[str]:
    if mode == "chat":
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                yield content
            elif isinstance(content, list):
                yield from (part.get("text", "") for part in content if isinstance(part, dict))
            for call in message.get("tool_calls") or []:
                arguments = (call.get("function") or {}).get("arguments")
                if isinstance(arguments, str):
                    yield arguments
    else:
        value = body.get("prompt") if mode == "completion" else body.get("input")
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (item for item in value if isinstance(item, str))


def _own_key(text: str) -> bool:
    for match in OWN_KEY.finditer(text):
        candidate = match.group(0)
        kind = KeyKind.CUSTOMER if candidate.startswith("lgw_ck_") else KeyKind.ADMIN
        try:
            key_format.check(candidate, kind)
        except key_format.MalformedKey:
            continue
        return True
    return False


class Guardrails:
    def __init__(self, *, secret_scan: bool, deny_patterns: list[tuple[str, re.Pattern[str]]]) -> None:
        self._secret_scan = secret_scan
        self._deny = deny_patterns

    def check(self, mode: str, body: dict[str, Any], key_id: str, request_id: str) -> None:
        for text in _texts(mode, body):
            if self._secret_scan:
                kind = "gateway_key" if _own_key(text) else next(
                    (name for name, pattern in SECRET_PATTERNS if pattern.search(text)), None)
                if kind is not None:
                    log.warning("guardrail blocked", extra={"request_id": request_id, "key_id": key_id,
                                                            "reason": f"secret_in_prompt:{kind}"})
                    raise Denial(400, "secret_in_prompt",
                                 f"The request appears to contain a credential ({kind}); it was not sent.")
            for name, pattern in self._deny:
                if pattern.search(text):
                    log.warning("guardrail blocked", extra={"request_id": request_id, "key_id": key_id,
                                                            "reason": f"content_blocked:{name}"})
                    raise Denial(400, "content_blocked", f"The request was blocked by policy rule '{name}'.")
