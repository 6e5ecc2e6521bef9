"""``gateway audit verify``: walk the tamper-evident audit chain (the audit key comes from Vault)."""

from __future__ import annotations

from gateway.audit.log import Broken
from gateway.ops.context import open_audit, open_settings, open_store_and_core


def verify_audit(expect_head: tuple[int, str] | None = None) -> tuple[list[Broken], int]:
    """The chain's breaks and how many entries were walked; ``expect_head`` is a head logged earlier."""
    settings = open_settings()
    engine, core = open_store_and_core(settings)
    audit = open_audit(settings, engine, core)
    return audit.verify_chain(expect_head)
