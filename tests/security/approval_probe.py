"""Boots the gateway in this process with the real LiteLLM, then makes LiteLLM read each request differently from what
the pre-flight approved (as a parser difference would) and prints what happened. Run by test_approval_check.py in a
child process (LiteLLM's proxy is a module global: one per process).

The difference is made the one way the handoff allows it: the bytes LiteLLM parses are replaced after approval,
standing in for any future disagreement between the two parsers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx

# (name, what LiteLLM reads instead of the approved body)
DIFFERENCES: list[tuple[str, dict[str, Any]]] = [
    ("more_output", {"max_tokens": 900}),
    ("more_choices", {"n": 3}),
    ("other_model", {"model": "other-chat-model"}),
    ("extra_field", {"temperature": 0.1}),
    ("steering_field", {"custom_llm_provider": "ollama"}),
    ("credential", {"api_key": "sk-attacker-credential"}),
    ("host", {"api_base": "http://127.0.0.1:9/v1"}),
    ("stream", {"stream": True}),
    ("rewritten_prompt", {"messages": [{"role": "user", "content": "something else"}]}),
    ("dropped_bound", {"max_tokens": None}),
]


async def main() -> None:
    from booted import running_gateway  # this folder: the probe runs as a script

    async with running_gateway() as gateway:
        report = await _differ(gateway)
    sys.stdout.write("PROBE-REPORT " + json.dumps(report) + "\n")


async def _differ(gateway: Any) -> dict[str, Any]:
    from gateway.keys.format import KeyKind
    from gateway.pipeline import customer

    account = gateway.ledger.create_account("probe")
    gateway.ledger.top_up(account.id, 10_000_000, "probe credit")
    key, _ = gateway.keys.issue(KeyKind.CUSTOMER, name="probe", models=["chat-model", "other-chat-model"],
                             account_id=account.id)
    approved = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    report: dict[str, Any] = {"account": account.id, "results": {}}
    original = customer.canonical_json
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app), base_url="http://gateway") as client:
        for name, change in [("none", {}), *DIFFERENCES]:
            def differing(body: dict[str, Any], change: dict[str, Any] = change) -> bytes:
                changed = {**body, **change}
                return original({k: v for k, v in changed.items() if v is not None})

            customer.canonical_json = differing
            try:
                response = await client.post("/v1/chat/completions", json=approved,
                                             headers={"Authorization": f"Bearer {key}"})
            finally:
                customer.canonical_json = original
            report["results"][name] = {"status": response.status_code, "body": response.json()}
    state = gateway.ledger.get_account(account.id)
    report["balance"], report["reserved"] = state.balance_micro_usd, state.reserved_micro_usd
    report["ledger"] = [entry["kind"] for entry in gateway.ledger.recent_entries(account.id)]
    report["audit"] = [(e["event"], e["reason"]) for e in gateway.audit.list(event="handoff_mismatch")]
    return report


if __name__ == "__main__":
    asyncio.run(main())
