"""Logs: one JSON object per line (or plain text), a redaction pass over every line, the request id on every line.

Every logger's records go through the root handler configured here, LiteLLM's included (its own handlers are removed
so it cannot write around the redaction). The redactor masks the secret values boot registers (master key, pepper,
audit key, provider keys) wherever they appear, plus anything shaped like one of our keys or a bearer credential.
Extras carry identifiers and reason codes only; callers never pass keys, digests or secret values.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime

EXTRAS = ("request_id", "key_id", "reason", "surface", "path", "by", "outcome", "step")
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("gateway_request_id", default=None)
MASK = "[redacted]"
_PATTERNS = [
    re.compile(r"lgw_(?:ck|ak)_[0-9A-Za-z]{49}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
]


class Redactor:
    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, value: str) -> None:
        if len(value) >= 8 and value not in self._values:
            self._values.append(value)
            self._values.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} values)"


REDACT = Redactor()


def _extras(record: logging.LogRecord) -> dict[str, object]:
    found = {name: getattr(record, name) for name in EXTRAS if getattr(record, name, None) is not None}
    if "request_id" not in found and REQUEST_ID.get() is not None:
        found["request_id"] = REQUEST_ID.get()
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return REDACT(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{name}={value}" for name, value in _extras(record).items())
        return REDACT(f"{line} {extras}" if extras else line)


def configure(level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    adopt_library_loggers(level)


def adopt_library_loggers(level: str) -> None:
    """Route LiteLLM's loggers through the root handler (and its redaction); call again after LiteLLM is imported."""
    for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router", "LiteLLM Proxy.stdout"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        # LiteLLM's own loggers are chatty below WARNING; follow the gateway's level only when it asks for DEBUG.
        logger.setLevel(level if level == "DEBUG" else "WARNING")
