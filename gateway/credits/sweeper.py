"""The sweeper: expires reservations left open by requests that can no longer finish (a killed process)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from gateway.credits.ledger import SqlLedger

log = logging.getLogger("gateway.credits")


async def sweep_forever(ledger: SqlLedger, ttl: timedelta, interval_seconds: float) -> None:
    while True:
        try:
            expired = await asyncio.to_thread(ledger.sweep, ttl)
            if expired:
                log.warning("sweeper expired reservations", extra={"outcome": str(expired)})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep failed")
        await asyncio.sleep(interval_seconds)
