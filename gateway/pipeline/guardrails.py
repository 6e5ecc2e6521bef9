"""Step: guardrails on what the request would send to a third-party provider. Each decision is logged with a code.

* Secret scanning (on by default): a prompt that carries a high-confidence credential — a private key block, a cloud
  or platform access key, one of our own keys (checksum verified) — is refused with ``400 secret_in_prompt`` naming
  the kind of credential, never the value, so users do not ship secrets to a provider by accident.
* Deny patterns (policy): regular expressions an operator forbids; a match is ``400 content_blocked`` naming the rule.

Scanned text: message contents (and text parts), tool-call arguments, the prompt and embedding inputs; on the
Responses API the instructions, the input text and its function calls' arguments and outputs.

Every pattern, built-in or from the policy, runs on RE2 (``google-re2``), which never backtracks: matching time is
linear in the text (threat-model TM-D1). The backtracking engine used before spent about 6 s on ``"sk-" * 32000``
(96 KB) with the OpenAI-key pattern, quadratic in the length, on the event loop. RE2 syntax has no lookarounds or
backreferences, and ``\\b``, ``\\w``, ``\\d`` and ``\\s`` are ASCII-only; the policy loader refuses a deny pattern
RE2 cannot compile.

The check runs where the pipeline calls it, on the event loop. Measured per MiB of text (the default body limit)
on the 2-core development machine, against the backtracking engine on the same text: ordinary prose about 20 to
35 ms (was 210 to 285 ms); a repeated credential prefix such as ``sk-`` about 40 ms (was minutes); text packed with
look-alikes of our own keys about 0.4 s, one checksum check each (was the same). RE2's own worst case is text
crafted against a long counted repetition (the Anthropic format's ``{80,}``): its automaton then gains a state at
nearly every byte, up to about 0.7 s per MiB split over many messages (was about 0.45 s); still linear, with a
constant that grows with the pattern. A short policy deny pattern adds about 2 ms per MiB. RE2 releases the GIL
while it matches, so the call can move to a worker thread to keep that cost off the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

import re2

from gateway.keys import format as key_format
from gateway.keys.format import KeyKind
from gateway.pipeline.errors import Denial
from gateway.pipeline.fields import RouteKind
from gateway.pipeline.responses import response_texts

log = logging.getLogger("gateway.guardrails")


# On crafted text RE2 may switch to its slower automaton; expected, so no log line each time.
_QUIET = re2.Options()
_QUIET.log_errors = False


class CompiledPattern(Protocol):
    """What ``re2.compile`` returns (a backtracking ``re`` pattern has the same interface, not the time bound)."""

    def search(self, text: str | bytes, /) -> object | None: ...


# (kind, pattern): each a format with a fixed prefix and enough structure that prose does not match by accident.
# Open-ended repetitions are lazy ({n,}?): the same texts match, and a match ends at its first possible boundary.
# Each pattern has its own RE2 object: one alternation of all of them was faster on prose (one pass instead of
# nine) but its automaton outgrew RE2's memory budget on crafted text, which then took half a second per MiB.
SECRET_PATTERNS: list[tuple[str, CompiledPattern]] = [(kind, re2.compile(source, _QUIET)) for kind, source in [
    ("private_key", r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b"),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20}\b"),
    ("slack_token", r"\bxox[baprs]-[A-Za-z0-9-]{10,}?\b"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    ("stripe_secret_key", r"\b[rs]k_live_[0-9A-Za-z]{24,}?\b"),
    ("openai_api_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}?T3BlbkFJ[A-Za-z0-9_-]{20,}?\b"),
    ("anthropic_api_key", r"\bsk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,}?\b"),
]]
OWN_KEY = re2.compile(r"\blgw_(?:ck|ak)_[0-9A-Za-z]{49}\b", _QUIET)


def _texts(mode: RouteKind, body: dict[str, Any]) -> Iterator[str]:
    if mode == "responses":
        yield from response_texts(body)
    elif mode == "chat":
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                yield content
            elif isinstance(content, list):
                for part in content:
                    if not isinstance(part, dict):
                        continue
                    yield part.get("text", "")
                    # An image URL reaches the provider, which fetches it: a secret in it goes to that host.
                    image = part.get("image_url")
                    url = image.get("url") if isinstance(image, dict) else None
                    if isinstance(url, str) and url.startswith("https://"):
                        yield url
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


def _utf8(text: str) -> bytes:
    # RE2 matches UTF-8. A lone surrogate escape ("\ud800") has no UTF-8 form; body.py would refuse it later too.
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise Denial(400, "invalid_request", "Request body must be valid UTF-8 JSON.") from None


def _own_key(data: bytes) -> bool:
    # Scanned as bytes, encoded once: RE2's str interface maps every match offset back to characters.
    for match in OWN_KEY.finditer(data):
        candidate = match.group(0).decode("ascii")
        kind = KeyKind.CUSTOMER if candidate.startswith("lgw_ck_") else KeyKind.ADMIN
        try:
            key_format.check(candidate, kind)
        except key_format.MalformedKey:
            continue
        return True
    return False


def _credential(data: bytes) -> str | None:
    """The kind of credential the text carries (our own keys first), or None."""
    if _own_key(data):
        return "gateway_key"
    return next((kind for kind, pattern in SECRET_PATTERNS if pattern.search(data)), None)


class Guardrails:
    def __init__(self, *, secret_scan: bool, deny_patterns: list[tuple[str, CompiledPattern]]) -> None:
        self._secret_scan = secret_scan
        self._deny = deny_patterns

    def check(self, mode: RouteKind, body: dict[str, Any], key_id: str, request_id: str) -> None:
        for text in _texts(mode, body):
            data = _utf8(text)
            if self._secret_scan:
                kind = _credential(data)
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
