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
# The same for /v1/responses, whose output bound is max_output_tokens and which keeps nothing (store: false).
RESPONSES_DIFFERENCES: list[tuple[str, dict[str, Any]]] = [
    ("more_output", {"max_output_tokens": 900}),
    ("chat_bound", {"max_tokens": 900}),
    ("other_model", {"model": "other-chat-model"}),
    ("extra_field", {"temperature": 0.1}),
    # (A body's custom_llm_provider is overwritten with the deployment's before the check on this route.)
    ("steering_field", {"use_chat_completions_api": True}),
    ("credential", {"api_key": "sk-attacker-credential"}),
    ("host", {"api_base": "http://127.0.0.1:9/v1"}),
    ("stream", {"stream": True}),
    ("stored", {"store": True}),
    ("state", {"previous_response_id": "resp_of_another_account"}),
    ("rewritten_input", {"input": "something else"}),
    ("dropped_bound", {"max_output_tokens": None}),
]
# A failing upstream read with retries the pre-flight never saw: at most one provider call.
RETRIED = ("/v1/chat/completions", {"model": "failing-model", "messages": [{"role": "user", "content": "Hi"}],
                                    "max_tokens": 5}, {"num_retries": 3})
ROUTES = [
    ("/v1/chat/completions", {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
     DIFFERENCES),
    ("/v1/responses", {"model": "chat-model", "input": "Hi", "max_output_tokens": 16}, RESPONSES_DIFFERENCES),
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
    key, _ = gateway.keys.issue(KeyKind.CUSTOMER, name="probe",
                                models=["chat-model", "other-chat-model", "failing-model"],
                             account_id=account.id)
    report: dict[str, Any] = {"account": account.id, "results": {}}
    original = customer.canonical_json
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.app), base_url="http://gateway") as client:
        for path, approved, differences in ROUTES:
            for name, change in [("none", {}), *differences]:
                def differing(body: dict[str, Any], change: dict[str, Any] = change) -> bytes:
                    changed = {**body, **change}
                    return original({k: v for k, v in changed.items() if v is not None})

                customer.canonical_json = differing
                try:
                    response = await client.post(path, json=approved, headers={"Authorization": f"Bearer {key}"})
                finally:
                    customer.canonical_json = original
                report["results"][f"{path} {name}"] = {"status": response.status_code, "body": response.json()}
        path, approved, change = RETRIED
        customer.canonical_json = lambda body: original({**body, **change})
        try:
            response = await client.post(path, json=approved, headers={"Authorization": f"Bearer {key}"})
        finally:
            customer.canonical_json = original
        report["retried"] = {"status": response.status_code, "body": response.json()}
    state = gateway.ledger.get_account(account.id)
    report["balance"], report["reserved"] = state.balance_micro_usd, state.reserved_micro_usd
    report["ledger"] = [entry["kind"] for entry in gateway.ledger.recent_entries(account.id, limit=1000)]
    report["audit"] = [(e["event"], e["reason"]) for e in gateway.audit.list(event="handoff_mismatch")]
    return report


if __name__ == "__main__":
    asyncio.run(main())
