"""Logs: one JSON object per line (or plain text), a redaction pass over every line, the request id on every line.

Every logger's records go through the root handler configured here, LiteLLM's included (its own handlers are removed
so it cannot write around the redaction). The redactor masks the secret values boot registers (master key, pepper,
audit key, provider keys) wherever they appear, plus anything shaped like one of our keys or a bearer credential.
Extras carry identifiers and reason codes only; callers never pass keys, digests or secret values.

One record is one line, whatever the client sent. Messages and extras can carry client-supplied text (a request path,
a header, a prompt at DEBUG), so control characters in them are escaped: C0 (``\\n``, ``\\r``, ``\\t``, ``\\x1b``
...), DEL, C1 and the Unicode line and paragraph separators (``\\u2028``, ``\\u2029``). The JSON format gets this
from ``json.dumps``; the text format escapes the message and every extra value itself. A traceback in the text format
keeps its own line breaks so it stays readable, but each of its lines is escaped the same way and starts with
:data:`CONTINUATION`: a line of the text log that does not start with it is always the start of a record, so an
exception message cannot forge one either.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import NoReturn

EXTRAS = ("request_id", "key_id", "reason", "surface", "path", "by", "outcome", "step", "deployment")
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("gateway_request_id", default=None)


def new_request_id() -> str:
    """A fresh id for one request: returned as ``x-request-id`` and written on each of its log and audit lines."""
    return "req_" + uuid.uuid4().hex


MASK = "[redacted]"
_PATTERNS = [
    re.compile(r"lgw_(?:ck|ak)_[0-9A-Za-z]{49}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
]


# Every C0 control, DEL, every C1 control, and U+2028/U+2029 (line breaks to many log viewers and JSON tools).
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_SHORT_ESCAPES = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_ESCAPES = {c: _SHORT_ESCAPES.get(c, f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _CONTROLS}
# Starts every line of a traceback after the record's first line, in the text format.
CONTINUATION = "  | "


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return text.translate(_ESCAPES)


class _RedactedValue:
    """One secret value the redactor masks. Nothing but the redactor reads it: repr, str, format and pickle never
    show it, and a scan of the process's objects finds it in this one, clearly named, holder."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "_RedactedValue('**********')"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a redacted value cannot be pickled")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a redacted value cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("a redacted value cannot be pickled")


class Redactor:
    def __init__(self) -> None:
        self._values: list[_RedactedValue] = []

    def add(self, value: str) -> None:
        if len(value) >= 8 and all(held._value != value for held in self._values):
            self._values.append(_RedactedValue(value))
            self._values.sort(key=lambda held: len(held._value), reverse=True)

    def __call__(self, text: str) -> str:
        for held in self._values:
            if held._value in text:
                text = text.replace(held._value, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} values)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("the redactor cannot be pickled")


REDACT = Redactor()


def _extras(record: logging.LogRecord) -> dict[str, object]:
    found = {name: getattr(record, name) for name in EXTRAS if getattr(record, name, None) is not None}
    if "request_id" not in found and REQUEST_ID.get() is not None:
        found["request_id"] = REQUEST_ID.get()
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Redact before json.dumps too: its escapes (a tab as \t) would hide "Bearer<tab>token" from the pattern.
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": REDACT(record.getMessage()),
            **{name: REDACT(value) if isinstance(value, str) else value for name, value in _extras(record).items()},
        }
        if record.exc_info:
            entry["exc"] = REDACT(self.formatException(record.exc_info))
        # json.dumps escapes every control character (ensure_ascii: C1, U+2028 and U+2029 too): one record, one line.
        return REDACT(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    """``<asctime> <level> <logger>: <message> name=value ...`` on one line; a traceback follows on lines that start
    with :data:`CONTINUATION`. Redaction runs before escaping, so an escape cannot hide a credential from it."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = escape_controls(REDACT(self.formatMessage(record)))
        extras = " ".join(f"{name}={escape_controls(REDACT(str(value)))}" for name, value in _extras(record).items())
        if extras:
            line = f"{line} {extras}"
        tail = []
        if record.exc_info:
            tail.append(self.formatException(record.exc_info))
        if record.stack_info:
            tail.append(self.formatStack(record.stack_info))
        for block in tail:
            # Only "\n" separates a traceback's lines; anything else (\r, U+2028 in an exception message) is escaped.
            line += "".join(f"\n{CONTINUATION}{escape_controls(REDACT(part))}" for part in block.split("\n"))
        # Once more over the whole: an escape may not assemble anything the parts' redaction would have caught.
        return REDACT(line)


def configure(level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # LiteLLM's background scheduler (the gateway schedules nothing with it) warns at every start that its first
    # model-info refresh "was missed" by the seconds LiteLLM's own startup took; its errors still show.
    logging.getLogger("apscheduler").setLevel(level if level == "DEBUG" else "ERROR")
    # Alembic announces each of its plugins at INFO when it is imported, on every start, before anything happened.
    logging.getLogger("alembic.runtime.plugins").setLevel(level if level == "DEBUG" else "WARNING")
    adopt_library_loggers(level)


def adopt_library_loggers(level: str) -> None:
    """Route LiteLLM's loggers through the root handler (and its redaction); call again after LiteLLM is imported."""
    for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router", "LiteLLM Proxy.stdout"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        # LiteLLM's own loggers are chatty below WARNING; follow the gateway's level only when it asks for DEBUG.
        logger.setLevel(level if level == "DEBUG" else "WARNING")
