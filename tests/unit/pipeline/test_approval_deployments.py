"""The approval check for a model with several deployments, as an attacker would probe it: each call must go to one
of the approved model's deployments, with the approved body, and never more calls than the policy's budget; a
refused call refuses every later one. Settlement prices the deployment that served.

threat-model: TM-T17
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.credits.pricing import Price
from gateway.pipeline.approval import (
    CURRENT,
    Approval,
    Attempt,
    Deployment,
    HandoffMismatch,
    credential_digest,
    verify,
)
from gateway.pipeline.credits import LedgerThreads, Meter

FIELDS = frozenset({"model", "messages", "max_tokens"})
OPENAI = Deployment("openai/gpt-4o", "https://api.openai.com/v1", credential_digest("key-openai"), "openai", 600,
                    FIELDS, label="openai:gpt-4o")
AZURE = Deployment("azure/gpt4o-prod", "https://r.openai.azure.com", credential_digest("key-azure"), "azure", 600,
                   FIELDS, api_version="2024-10-21", label="azure_eu:gpt4o-prod")
OTHER = Deployment("openai/o3", "https://api.openai.com/v1", credential_digest("key-openai"), "openai", 600,
                   FIELDS, label="openai:o3")
DEPLOYMENTS = {"gpt-4o": (OPENAI, AZURE), "o3": (OTHER,)}
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
TO_OPENAI = {"model": "openai/gpt-4o", "api_base": "https://api.openai.com/v1", "api_key": "key-openai"}
TO_AZURE = {"model": "azure/gpt4o-prod", "api_base": "https://r.openai.azure.com", "api_key": "key-azure",
            "api_version": "2024-10-21"}
TO_OTHER = {**TO_OPENAI, "model": "openai/o3"}


def _approval(max_calls: int = 2) -> Approval:
    return Approval(request_id="req_1", key_id="key_1", model="gpt-4o", mode="chat", body=BODY, output_bound=5,
                    choices=1, stream=False, max_calls=max_calls)


def _call(target: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {**target, "messages": BODY["messages"], "max_tokens": 5, "stream": False, **overrides}


def _calls(approval: Approval, *kwargs: dict[str, Any]) -> list[str]:
    """Each call through the check in turn; what happened to each (the deployment's label, or the refusal)."""
    token = CURRENT.set(approval)
    outcomes = []
    try:
        for call in kwargs:
            try:
                outcomes.append(verify(call, "acompletion", DEPLOYMENTS)[1].label)
            except HandoffMismatch as refused:
                outcomes.append("refused:" + refused.reason)
            if approval.attempts:
                approval.attempts[-1].failed = True  # as the failure hook marks a call that ended in an error
    finally:
        CURRENT.reset(token)
    return outcomes


def test_a_retry_may_go_to_either_deployment_of_the_model() -> None:
    approval = _approval()
    assert _calls(approval, _call(TO_OPENAI), _call(TO_AZURE)) == ["openai:gpt-4o", "azure_eu:gpt4o-prod"]
    assert approval.served_by == "azure_eu:gpt4o-prod"


def test_never_more_calls_than_the_budget() -> None:
    assert _calls(_approval(2), _call(TO_OPENAI), _call(TO_AZURE), _call(TO_OPENAI))[2] == "refused:second_call"
    assert _calls(_approval(1), _call(TO_AZURE), _call(TO_AZURE)) == ["azure_eu:gpt4o-prod", "refused:second_call"]


def test_a_second_call_before_the_first_failed_is_refused() -> None:
    # A hedged or duplicate call (the first still running, or answered) would be billed twice for one reservation.
    approval = _approval(3)
    token = CURRENT.set(approval)
    try:
        assert verify(_call(TO_OPENAI), "acompletion", DEPLOYMENTS)[1].label == "openai:gpt-4o"
        with pytest.raises(HandoffMismatch) as refused:
            verify(_call(TO_AZURE), "acompletion", DEPLOYMENTS)
    finally:
        CURRENT.reset(token)
    assert refused.value.reason == "overlapping_call" and approval.served_by == "openai:gpt-4o"


@pytest.mark.parametrize(("call", "reason"), [
    (_call(TO_OTHER), "model"),  # another model's deployment, same host and key
    (_call({**TO_AZURE, "api_key": "key-openai"}), "api_key"),  # one deployment's target, the other's key
    (_call({**TO_OPENAI, "api_base": "https://r.openai.azure.com"}), "api_base"),
    (_call({**TO_AZURE, "api_version": "2025-01-01-preview"}), "api_version"),
    (_call(TO_AZURE, messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "partial"}]),
     "value"),  # a retry that carries what the first deployment produced
    (_call(TO_AZURE, max_tokens=50), "value"),
    (_call(TO_AZURE, num_retries=3), "field:num_retries"),
    (_call(TO_AZURE, fallbacks=["o3"]), "field:fallbacks"),
])
def test_a_retry_that_differs_from_the_approval_is_refused(call: dict[str, Any], reason: str) -> None:
    approval = _approval(3)
    assert _calls(approval, _call(TO_OPENAI), call) == ["openai:gpt-4o", "refused:" + reason]
    # Once refused, always refused: a later, well-formed retry does not get past it.
    assert _calls(approval, _call(TO_AZURE)) == ["refused:" + reason]
    assert approval.served_by == "openai:gpt-4o" and approval.mismatch == reason


class _Ledger:
    writers = 1

    def __init__(self) -> None:
        self.settled: list[int] = []

    def settle(self, _request_id: str, amount: int) -> int:
        self.settled.append(amount)
        return 0

    def release(self, _request_id: str, _reason: str) -> None:
        self.settled.append(0)


def _settle(approval: Approval, usage: dict[str, Any]) -> int:
    ledger = _Ledger()
    worst = Price(3_000_000, 4_000_000)
    meter = Meter(ledger, "req_1", "key_1", worst, 1_000, 0, "chat", LedgerThreads(1),  # type: ignore[arg-type]
                  {"openai:gpt-4o": Price(1_000_000, 4_000_000), "azure_eu:gpt4o-prod": Price(3_000_000, 2_000_000)})
    meter.attach(approval)
    meter.started()
    meter.observe_json(json.dumps({"usage": usage}).encode())
    meter.finish()
    return ledger.settled[0]


def test_settlement_prices_the_deployment_that_served() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 7}
    served_by_azure = _approval()
    _calls(served_by_azure, _call(TO_OPENAI))
    served_by_azure.attempts[-1].failed = True
    token = CURRENT.set(served_by_azure)
    try:
        verify(_call(TO_AZURE), "acompletion", DEPLOYMENTS)
    finally:
        CURRENT.reset(token)
    assert _settle(served_by_azure, usage) == 9 * 3 + 7 * 2
    served_by_openai = _approval()
    token = CURRENT.set(served_by_openai)
    try:
        verify(_call(TO_OPENAI), "acompletion", DEPLOYMENTS)
    finally:
        CURRENT.reset(token)
    assert _settle(served_by_openai, usage) == 9 * 1 + 7 * 4


def test_an_earlier_call_not_seen_to_fail_is_charged_the_whole_reservation() -> None:
    # The check refuses such a second call (overlapping_call, above); settlement holds the rule on its own as well.
    approval = _approval()
    approval.attempts = [Attempt("openai:gpt-4o"), Attempt("azure_eu:gpt4o-prod")]  # the first never marked failed
    assert _settle(approval, {"prompt_tokens": 9, "completion_tokens": 7}) == 1_000


def test_unreadable_cache_counts_are_charged_the_whole_reservation() -> None:
    approval = _approval()
    token = CURRENT.set(approval)
    try:
        verify(_call(TO_OPENAI), "acompletion", DEPLOYMENTS)
    finally:
        CURRENT.reset(token)
    assert _settle(approval, {"prompt_tokens": 9, "completion_tokens": 7, "cache_read_input_tokens": "5"}) == 1_000
    assert _settle(approval, {"prompt_tokens": 9, "completion_tokens": 7, "cache_read_input_tokens": 50}) == 1_000
