"""Soak: a gateway under steady load for a while, with a streaming mix, on loopback (`make soak`; not a test).

Starts OpenBao (dev), the provider stand-in and `gateway serve` as child processes, drives REQUESTS_PER_SECOND with
the official openai SDK (60 % plain chat, 40 % streamed chat), and reports errors, latency, the gateway's RSS growth
after warm-up, and ledger parity. Exits non-zero if any request failed, RSS grew 10 % or more, or parity broke.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from gateway.boot.bootstrap import bootstrap, issue_credentials, operator_client
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings
from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import free_port, start_dev_vault, stop_process, wait_http
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store

POLICY = """version: 1
providers:
  standin:
    api_base: {base}
models:
  - name: chat-model
    provider: standin
    upstream_model: upstream-chat
    price: {{input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}}
rate_limits:
  default_rpm: 1000000
  default_tpm: 1000000000
"""


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
    vault = start_dev_vault(work / "bao.log")
    children: list[subprocess.Popen[bytes]] = [vault.process]
    try:
        standin_port = free_port()
        children.append(subprocess.Popen([sys.executable, "-m", "gateway.devstack.fake_provider", "--port",
                                          str(standin_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{standin_port}/_standin/requests")
        policy = work / "policy.yaml"
        policy.write_text(POLICY.format(base=f"http://127.0.0.1:{standin_port}/v1"))
        settings = Settings(vault_addr=vault.addr)
        root = operator_client(settings, Secret(vault.root_token))
        bootstrap(root, settings, provider_keys={"standin": Secret("soak-" + secrets.token_urlsafe(16))},
                  credentials_dir=work)
        core = root.secrets.kv.v2.read_secret_version(path="gateway/core", raise_on_deleted_version=True)
        database_url = f"sqlite:///{work / 'gw.db'}"
        engine = open_store(database_url)
        ledger = SqlLedger(engine)
        account = ledger.create_account("soak")
        ledger.top_up(account.id, 10**13, "soak")
        key, _ = KeyService(SqlKeyStore(engine), KeyHasher(core["data"]["data"]["pepper"].encode())).issue(
            KeyKind.CUSTOMER, name="soak", models=["chat-model"], account_id=account.id)
        issue_credentials(root, settings, work)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
        env.update({"GATEWAY_VAULT_ADDR": vault.addr, "GATEWAY_VAULT_ROLE_ID_FILE": str(work / "role_id"),
                    "GATEWAY_VAULT_SECRET_ID_FILE": str(work / "secret_id"), "GATEWAY_DATABASE_URL": database_url,
                    "GATEWAY_POLICY_FILE": str(policy), "GATEWAY_PORT": str(port), "GATEWAY_LOG_LEVEL": "WARNING"})
        gateway = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "serve"], env=env,
                                   stdout=open(work / "gateway.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        children.append(gateway)
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90)
        result = asyncio.run(drive(f"http://127.0.0.1:{port}", key, args.rate, args.seconds, args.warmup,
                                   gateway.pid))
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
    finally:
        for child in reversed(children):
            stop_process(child)


if __name__ == "__main__":
    sys.exit(main())
