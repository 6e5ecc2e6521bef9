"""Soak: a gateway under steady load for a while, with a streaming mix, on loopback (`make soak`; not a test).

Starts OpenBao (dev), the provider stand-in and `gateway serve` as child processes, drives REQUESTS_PER_SECOND with
the official openai SDK (60 % plain chat, 40 % streamed chat), and reports errors, latency, the gateway's RSS growth
after warm-up, and ledger parity. Exits non-zero if any request failed, RSS grew 10 % or more, or parity broke.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
from stack import children, start_gateway, start_standin


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def drive(base_url: str, key: str, rate: float, seconds: float, warmup: float, pid: int) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[str] = []
    rss_after_warmup = 0
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as http:
        client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, http_client=http)

        async def one(stream: bool) -> None:
            started = time.perf_counter()
            try:
                if stream:
                    chunks = await client.chat.completions.create(
                        model="chat-model", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True)
                    async for _ in chunks:
                        pass
                else:
                    await client.chat.completions.create(model="chat-model", messages=[{"role": "user",
                                                                                         "content": "Hi"}],
                                                         max_tokens=8)
                latencies.append(time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                errors.append(type(exc).__name__)

        tasks = []
        start = time.perf_counter()
        sent = 0
        while (now := time.perf_counter() - start) < seconds:
            if not rss_after_warmup and now >= warmup:
                rss_after_warmup = rss_kib(pid)
            while sent < now * rate:
                tasks.append(asyncio.create_task(one(stream=sent % 5 >= 3)))
                sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    latencies.sort()
    return {"sent": sent, "errors": errors, "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000, "rss_after_warmup_kib": rss_after_warmup,
            "rss_end_kib": rss_kib(pid)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--warmup", type=float, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    with children() as started:
        gateway = start_gateway(work, start_standin(started), started, log_level="WARNING")
        ledger = gateway.ledger
        result = asyncio.run(drive(gateway.url, gateway.key, args.rate, args.seconds, args.warmup,
                                   gateway.process.pid))
        drifts = ledger.check()
        open_left = ledger.open_reservations()
        growth = (result["rss_end_kib"] - result["rss_after_warmup_kib"]) / result["rss_after_warmup_kib"]
        print(f"soak: {args.seconds:.0f} s at {args.rate:.0f} req/s, 40 % streamed: sent {result['sent']}, "
              f"errors {len(result['errors'])} {sorted(set(result['errors']))}, "
              f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
        print(f"soak: gateway RSS after {args.warmup:.0f} s warm-up {result['rss_after_warmup_kib'] / 1024:.1f} MiB, "
              f"at the end {result['rss_end_kib'] / 1024:.1f} MiB ({growth * 100:+.1f} %)")
        print(f"soak: ledger parity {'holds' if not drifts else 'BROKEN'}; open reservations {open_left}")
        return 0 if not result["errors"] and growth < 0.10 and not drifts and open_left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
