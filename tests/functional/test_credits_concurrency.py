"""200 concurrent requests against a budget that fits only some: never overspent, never negative, books balanced.

Mix: plain chat, streamed chat, requests the provider fails, and streams whose client hangs up after the first
chunk. Run on the SQLite gateway and on the Postgres gateway.

threat-model: TM-T9, TM-T10
"""

from __future__ import annotations

import asyncio
import random

import httpx
import openai
import pytest

from gateway.credits.ledger import SqlLedger
from gateway.store.engine import open_store
from tests.support import RunningGateway, StandIn, wait_until_settled

BUDGET = 6_000  # micro-USD; each request reserves ~150 (max_tokens=5), so only a few dozen fit at a time


async def _one(client: openai.AsyncOpenAI, kind: str, number: int) -> str:
    # Each request's prompt names it, so the provider's record says which requests reached it.
    messages = [{"role": "user", "content": f"Hi #{number}"}]
    try:
        if kind == "plain":
            await client.chat.completions.create(model="chat-model", messages=messages, max_tokens=5)
        elif kind == "stream":
            stream = await client.chat.completions.create(model="chat-model", messages=messages, max_tokens=5, stream=True)
            async for _ in stream:
                pass
        elif kind == "failing":
            await client.chat.completions.create(model="failing-model", messages=messages, max_tokens=5)
        else:  # the client hangs up after the first chunk of a slow stream
            stream = await client.chat.completions.create(model="slow-model", messages=messages, max_tokens=5, stream=True)
            async for _ in stream:
                break
            await stream.close()
            return "disconnected"
        return "ok"
    except openai.APIStatusError as exc:
        return str(exc.body.get("code") if isinstance(exc.body, dict) else exc.status_code)


@pytest.mark.parametrize("backend", ["gateway", "pg_gateway"])
@pytest.mark.slow
def test_200_concurrent_requests_never_overspend(backend: str, request: pytest.FixtureRequest,
                                                 standin: StandIn) -> None:
    gateway: RunningGateway = request.getfixturevalue(backend)
    account = gateway.keys.account(BUDGET)
    key, _ = gateway.keys.customer(account_id=account)
    rng = random.Random(20261127)
    kinds = rng.choices(["plain", "stream", "failing", "disconnect"], weights=[40, 30, 10, 20], k=200)
    standin.recorder.clear()

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0,
                                        http_client=http)
            return await asyncio.gather(*(_one(client, kind, i) for i, kind in enumerate(kinds)))

    outcomes = asyncio.run(run())
    admitted = [o for o in outcomes if o != "budget_exhausted"]
    assert "budget_exhausted" in outcomes, "the budget should have run out"
    assert any(o == "ok" for o in outcomes) and any(o == "disconnected" for o in outcomes)
    assert set(outcomes) <= {"ok", "disconnected", "budget_exhausted", "upstream_error"}

    state = wait_until_settled(gateway, account)
    assert state["reserved_micro_usd"] == 0
    assert 0 <= state["balance_micro_usd"] <= BUDGET
    settled = sum(e["amount_micro_usd"] for e in _all_entries(gateway, account) if e["kind"] == "settle")
    assert settled == BUDGET - state["balance_micro_usd"] <= BUDGET
    # Requests refused for credit never reached the provider; every request answered with content did.
    reached = {int(r["body"]["messages"][0]["content"].removeprefix("Hi #")) for r in standin.recorder.all()
               if r["method"] == "POST"}
    assert not {i for i, o in enumerate(outcomes) if o == "budget_exhausted"} & reached
    assert {i for i, o in enumerate(outcomes) if o in ("ok", "disconnected")} <= reached
    assert len(reached) <= len(admitted)
    assert SqlLedger(open_store(gateway.process.env["GATEWAY_DATABASE_URL"])).check() == []


def _all_entries(gateway: RunningGateway, account_id: str) -> list[dict]:
    return SqlLedger(open_store(gateway.process.env["GATEWAY_DATABASE_URL"])).recent_entries(account_id, limit=10_000)
