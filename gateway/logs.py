"""Log set-up: one line per record with the structured extras we use (reason, key_id, request_id, …).

Extras carry identifiers and reason codes only; callers never pass keys, digests or secret values.
"""

from __future__ import annotations

import logging
import sys

EXTRAS = ("request_id", "key_id", "reason", "surface", "path", "by", "outcome", "step")


class ExtrasFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{name}={getattr(record, name)}" for name in EXTRAS if getattr(record, name, None) is not None]
        return f"{line} {' '.join(extras)}" if extras else line


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ExtrasFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # LiteLLM's own loggers are chatty below WARNING; follow the gateway's level only when it asks for DEBUG.
    for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router"):
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
