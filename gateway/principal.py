"""The verified identity the request path works with. It carries no secret: no key, no digest."""

from __future__ import annotations

import dataclasses
from datetime import datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    kind: str
    name: str
    models: frozenset[str]
    expires_at: datetime | None
    account_id: str | None = None
    spend_cap_micro_usd: int | None = None
    spend_cap_period: str = "none"
    rpm_limit: int | None = None
    tpm_limit: int | None = None
