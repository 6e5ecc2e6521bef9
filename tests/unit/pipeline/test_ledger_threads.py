"""Ledger writes on the request path run off the event loop, and a meter settles exactly once from any thread."""

from __future__ import annotations

import asyncio
import threading
import time

from gateway.credits.pricing import Price
from gateway.pipeline.credits import LedgerThreads, Meter


class SlowLedger:
    writers = 1

    def __init__(self) -> None:
        self.settled: list[tuple[str, int]] = []
        self.released: list[str] = []

    def reserve(self, **_: object) -> int:
        time.sleep(0.3)
        return 0

    def settle(self, request_id: str, charge: int) -> int:
        time.sleep(0.05)
        self.settled.append((request_id, charge))
        return 0

    def release(self, request_id: str, reason: str) -> None:
        self.released.append(request_id)


def test_a_slow_ledger_does_not_stall_the_event_loop() -> None:
    threads = LedgerThreads(1)
    ledger = SlowLedger()

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await threads.run(ledger.reserve)
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10  # the loop kept running while the write took 300 ms


def test_a_meter_settles_once_whoever_calls_finish() -> None:
    ledger = SlowLedger()
    meter = Meter(ledger, "req_1", "key_1", Price(1_000_000, 2_000_000), 500, 10_000, "chat", LedgerThreads(1))
    meter.started()
    meter.observe_json(b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}')
    callers = [threading.Thread(target=meter.finish) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert asyncio.run(meter.finish_off_loop()) is None
    assert ledger.settled == [("req_1", 11)] and meter.closed
