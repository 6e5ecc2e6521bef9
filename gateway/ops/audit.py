"""``gateway audit verify``: walk the tamper-evident audit chain (the audit key comes from Vault)."""

from __future__ import annotations

from gateway.audit.log import Broken
from gateway.ops.context import open_audit, open_engine, open_settings


def verify_audit(expect_head: tuple[int, str] | None = None) -> tuple[list[Broken], int]:
    """The chain's breaks and how many entries were walked; ``expect_head`` is a head logged earlier."""
    settings = open_settings()
    audit = open_audit(settings, open_engine(settings))
    return audit.verify_chain(expect_head)
