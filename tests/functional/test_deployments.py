"""Several deployments per model, end to end with the official ``openai`` SDK: LiteLLM's router balances between an
OpenAI-compatible and an Azure OpenAI deployment (and between two Anthropic keys), falls back to another deployment
when one fails (5xx, timeout) within the policy's budget of calls, never retries or cools a deployment down for a
client's bad request, reserves at the model's worst prices, settles at the deployment that served, and names it in
the log line; Anthropic's prompt-cache tokens settle at their own prices.

threat-model: TM-D6, TM-T17
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.pipeline.fields import KIND_STEERING_FIELDS
from tests.support import (
    AZURE_API_VERSION,
    HI,
    RunningGateway,
    Stack,
    StandIn,
    account_state,
    start_gateway,
    together,
    wait_until_settled,
)

# Price (USD per million tokens) of each deployment of "mixed": the OpenAI-compatible one is cheap on input and dear
# on output, the Azure one the other way round, so the reservation's maxima (3 and 4) exceed both.
CHEAP_OUT = {"input_usd_per_million_tokens": "1", "output_usd_per_million_tokens": "4"}
CHEAP_IN = {"input_usd_per_million_tokens": "3", "output_usd_per_million_tokens": "2"}
ONE_ONE = {"input_usd_per_million_tokens": "1", "output_usd_per_million_tokens": "1"}
CLAUDE = {"input_usd_per_million_tokens": "1", "output_usd_per_million_tokens": "2",
          "cache_write_usd_per_million_tokens": "4", "cache_read_usd_per_million_tokens": "0.5"}
# What each deployment's protocol looks like at the stand-in.
OPENAI_PATH = "/v1/chat/completions"
AZURE_PATH = "/openai/deployments/{}/chat/completions"
# Router fields LiteLLM 1.106.12 reads from a request's keyword arguments (litellm/router.py, router_utils/): each
# would pick, add or retry a deployment. None is an OpenAI field, so each is refused before LiteLLM sees it.
ROUTER_FIELDS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "num_retries", "max_retries",
                 "model_group", "specific_deployment", "deployment_id", "model_id", "mock_testing_fallbacks",
                 "mock_testing_context_fallbacks", "mock_testing_content_policy_fallbacks",
                 "mock_testing_rate_limit_error", "timeout", "request_timeout", "stream_timeout",
                 "model_group_retry_policy", "_retry_skipped_deployment_ids", "disable_fallbacks",
                 "include_fallback_errors", "routing_strategy", "order", "weight", "priority", "tags", "cooldown_time",
                 "model_info", "metadata", "litellm_metadata", "max_fallbacks", "allowed_fails")


def _deployment(provider: str, upstream: str, price: dict[str, str]) -> str:
    return f"      - {{provider: {provider}, upstream_model: {upstream}, price: {json.dumps(price)}}}\n"


def _model(name: str, deployments: list[tuple[str, str, dict[str, str]]], routing: str) -> str:
    return (f"  - name: {name}\n    mode: chat\n    max_output_tokens: 1000\n    deployments:\n"
            + "".join(_deployment(*d) for d in deployments) + f"    routing: {routing}\n")


def deployments_policy(root: str) -> str:
    providers = (f"  openai_a:\n    api_base: {root}/v1\n"
                 f"  azure_b:\n    kind: azure\n    api_base: {root}\n    api_version: '{AZURE_API_VERSION}'\n"
                 f"  claude_1:\n    kind: anthropic\n    api_base: {root}\n"
                 f"  claude_2:\n    kind: anthropic\n    api_base: {root}\n")
    held = "{retries: 1, allowed_fails: 0, cooldown_seconds: 600}"
    models = (
        _model("mixed", [("openai_a", "standin-chat", CHEAP_OUT), ("azure_b", "standin-chat", CHEAP_IN)], held)
        + _model("clients", [("openai_a", "standin-chat", ONE_ONE), ("azure_b", "standin-chat", ONE_ONE)], held)
        + _model("halfbroken", [("openai_a", "standin-error-500", ONE_ONE), ("azure_b", "standin-chat", ONE_ONE)],
                 held)
        + _model("slowfast", [("openai_a", "standin-slow-6000", ONE_ONE), ("azure_b", "standin-chat", ONE_ONE)],
                 "{retries: 1, allowed_fails: 0, cooldown_seconds: 600, timeout_seconds: 1}")
        + _model("allbroken", [("openai_a", "standin-error-500", ONE_ONE),
                               ("azure_b", "standin-error-500", ONE_ONE)], held)
        + _model("streambreak", [("openai_a", "standin-stream-break", ONE_ONE),
                                 ("azure_b", "standin-stream-break", ONE_ONE)], held)
        + _model("claudes", [("claude_1", "standin-chat", CLAUDE), ("claude_2", "standin-chat", CLAUDE)],
                 "{retries: 1}")
        # least-busy: the deployment with the fewest calls in flight (LiteLLM registers its counter at boot).
        + _model("busy", [("openai_a", "standin-chat", ONE_ONE), ("azure_b", "standin-chat", ONE_ONE)],
                 "{strategy: least-busy, retries: 1}")
        # One deployment, named as long as "mixed": the same request's prompt bound at a price of 1 and 1.
        + "  - name: cheap\n    provider: openai_a\n    upstream_model: standin-chat\n    mode: chat\n"
          f"    max_output_tokens: 1000\n    price: {json.dumps(ONE_ONE)}\n")
    return (f"version: 1\nproviders:\n{providers}models:\n{models}"
            "upstream:\n  timeout_seconds: 3\nrate_limits:\n  default_rpm: 1000000\n  default_tpm: 1000000000\n")


@dataclass
class Deployments:
    gateway: RunningGateway
    standin: StandIn
    keys: dict[str, str]
    models: list[str]

    def customer(self) -> tuple[openai.OpenAI, str]:
        """A client with a key of its own on an account of its own (so its ledger entries are its own)."""
        account = self.gateway.keys.account(10**9)
        key, _ = self.gateway.keys.customer(models=self.models, account_id=account)
        return openai.OpenAI(base_url=self.gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30), account

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.standin.recorder.all() if c["path"] != "/_standin/requests"]

    def entries(self, account: str, request_id: str) -> dict[str, int]:
        """The request's ledger entries, once it is settled (an error answer leaves before its release is written)."""
        wait_until_settled(self.gateway, account)
        return {str(e["kind"]): int(e["amount_micro_usd"])  # type: ignore[call-overload]
                for e in self.gateway.keys.ledger.recent_entries(account) if e["request_id"] == request_id}


@pytest.fixture(scope="module")
def deps(stack: Stack, workdir: Path) -> Iterator[Deployments]:
    from gateway.boot.bootstrap import bootstrap
    from gateway.boot.secret import Secret
    from gateway.boot.settings import Settings

    names = ("openai_a", "azure_b", "claude_1", "claude_2")
    keys = {name: f"{name}-canary-{secrets.token_urlsafe(18)}" for name in names}
    standin = StandIn(credentials=list(keys.values())).start()
    text = deployments_policy(standin.root_url)
    policy_file = workdir / "deployments-policy.yaml"
    policy_file.write_text(text, encoding="utf-8")
    bootstrap(stack.root(), Settings(vault_addr=stack.vault_addr),
              provider_keys={name: Secret(key) for name, key in keys.items()},
              credentials_dir=workdir / "deployments-boot")
    stack.canaries += list(keys.values())
    gateway = start_gateway(stack, workdir, "gw-deployments", f"sqlite:///{workdir / 'deployments.db'}",
                            GATEWAY_POLICY_FILE=str(policy_file))
    models = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("  - name: ")]
    yield Deployments(gateway, standin, keys, models)
    gateway.process.stop()
    standin.stop()


def _served(call: dict[str, Any]) -> str:
    """Which deployment a stand-in call went to, by its protocol."""
    return "openai_a" if call["path"] == OPENAI_PATH else "azure_b" if call["path"].startswith("/openai/") else "?"


def _chat(client: openai.OpenAI, model: str, messages: list[dict[str, str]] = HI, **kwargs: Any) -> tuple[Any, str]:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages,  # type: ignore[arg-type]
                                                           max_tokens=10, **kwargs)
    return raw.parse(), raw.headers["x-request-id"]


def _log_line(deps: Deployments, request_id: str, message: str) -> str:
    lines = [line for line in deps.gateway.process.output().splitlines() if request_id in line and message in line]
    assert len(lines) == 1, lines
    return lines[0]


# --- balancing, reservation, settlement ----------------------------------------------------------------------------


def test_requests_are_balanced_across_an_openai_and_an_azure_deployment(deps: Deployments) -> None:
    client, _ = deps.customer()
    deps.standin.recorder.clear()
    for _ in range(16):
        reply, _ = _chat(client, "mixed")
        assert reply.choices[0].message.content == "Hello from the provider stand-in."
    served = Counter(_served(call) for call in deps.calls())
    # Each call went to exactly one of the two deployments, on its own protocol; both served (a random choice of
    # one of two, 16 times: both appear unless the draw was 16 times the same, probability 2**-15).
    assert sum(served.values()) == 16 and set(served) == {"openai_a", "azure_b"}
    for call in deps.calls():
        if _served(call) == "azure_b":
            assert call["path"] == AZURE_PATH.format("standin-chat") and call["query"] == \
                f"api-version={AZURE_API_VERSION}"
            assert call["headers"]["api-key"] == deps.keys["azure_b"]
        else:
            assert call["headers"]["authorization"] == f"Bearer {deps.keys['openai_a']}"


def test_reservation_takes_the_worst_price_of_each_token_kind_and_settlement_the_deployment_that_served(
        deps: Deployments) -> None:
    client, account = deps.customer()
    _, cheap_id = _chat(client, "cheap")
    cheap = deps.entries(account, cheap_id)
    # cheap is priced 1 and 1: its reservation is the prompt bound plus the 10 output tokens.
    prompt_bound = cheap["reserve"] - 10
    seen = set()
    for _ in range(12):
        deps.standin.recorder.clear()
        _, request_id = _chat(client, "mixed")
        (call,) = deps.calls()
        served = _served(call)
        seen.add(served)
        entries = deps.entries(account, request_id)
        # The worst case at the maxima of each price (3 per input token, 4 per output token): more than either
        # deployment's own worst case (1 and 4: P + 40; 3 and 2: 3P + 20).
        assert entries["reserve"] == 3 * prompt_bound + 4 * 10
        # The stand-in reports 9 input and 7 output tokens; charged at the price of the deployment that served.
        assert entries["settle"] == (9 * 1 + 7 * 4 if served == "openai_a" else 9 * 3 + 7 * 2)
        line = _log_line(deps, request_id, "settled")
        assert f"{served}:standin-chat" in line and "calls=1" in line
        assert not any(key in line for key in deps.keys.values())
    assert seen == {"openai_a", "azure_b"}
    assert account_state(deps.gateway, account)["reserved_micro_usd"] == 0


# --- fallback between deployments ------------------------------------------------------------------------------------


def test_a_failing_deployment_falls_back_to_the_other_and_is_then_left_out(deps: Deployments) -> None:
    client, account = deps.customer()
    deps.standin.recorder.clear()
    for _ in range(20):
        reply, request_id = _chat(client, "halfbroken")
        assert reply.choices[0].message.content == "Hello from the provider stand-in."
        # Always charged at the deployment that answered (9 and 7 tokens at 1 and 1), never for the failed call.
        assert deps.entries(account, request_id)["settle"] == 16
    calls = [_served(call) for call in deps.calls()]
    # The failing deployment was called once (one draw in two, 20 times: once unless never drawn, 2**-20): its
    # 500 went on to the other deployment in the same request and took it out of rotation for the cooldown.
    assert calls.count("openai_a") == 1 and calls.count("azure_b") == 20
    failed_at = calls.index("openai_a")
    assert calls[failed_at + 1] == "azure_b"
    line = next(line for line in deps.gateway.process.output().splitlines()
                if "settled" in line and "calls=2" in line)
    assert "azure_b:standin-chat" in line


def test_a_deployment_that_times_out_is_not_retried_and_the_request_pays_its_reservation(deps: Deployments) -> None:
    client, account = deps.customer()
    deps.standin.recorder.clear()
    timed_out = 0
    for _ in range(12):
        try:
            reply, request_id = _chat(client, "slowfast")
        except openai.APIStatusError as caught:
            # The slow deployment got the call and may bill it to its bound; a client can cause a timeout at will
            # (a long answer), so no second deployment is called behind a reservation that covers one call, and the
            # request pays that reservation (TM-T9, TM-T17).
            assert caught.status_code == 504 and caught.body["code"] == "upstream_timeout"  # type: ignore[index]
            entries = deps.entries(account, caught.response.headers["x-request-id"])
            assert set(entries) == {"reserve", "settle"} and entries["settle"] == entries["reserve"] > 16
            timed_out += 1
            continue
        assert reply.choices[0].message.content == "Hello from the provider stand-in."
        assert deps.entries(account, request_id)["settle"] == 16
    calls = [_served(call) for call in deps.calls()]
    # One call per request, never a retry; the slow deployment drawn at least once (one draw in two, 12 times: 2**-12).
    assert len(calls) == 12 and calls.count("openai_a") == timed_out >= 1


def test_the_calls_never_exceed_the_policys_budget_and_each_goes_to_another_deployment(deps: Deployments) -> None:
    client, account = deps.customer()
    deps.standin.recorder.clear()
    with pytest.raises(openai.APIStatusError) as caught:
        _chat(client, "allbroken")
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_error"  # type: ignore[index]
    # One call and the policy's one retry, to each deployment once: never a third.
    assert sorted(_served(call) for call in deps.calls()) == ["azure_b", "openai_a"]
    request_id = caught.value.response.headers["x-request-id"]
    entries = deps.entries(account, request_id)
    assert set(entries) == {"reserve", "release"} and entries["reserve"] == entries["release"]


def test_a_stream_that_breaks_mid_way_is_not_retried_and_is_charged_its_reservation(deps: Deployments) -> None:
    client, account = deps.customer()
    deps.standin.recorder.clear()
    raw = client.chat.completions.with_raw_response.create(model="streambreak", messages=HI,  # type: ignore[arg-type]
                                                           max_tokens=10, stream=True)
    request_id = raw.headers["x-request-id"]
    with pytest.raises(openai.APIError):
        for _ in raw.parse():
            pass
    # The first deployment's answer had begun (the provider bills what it produced): LiteLLM does not retry it on
    # the other deployment, and the stream ends without usage, so the whole reservation is charged (TM-T9).
    assert len(deps.calls()) == 1
    entries = deps.entries(account, request_id)
    assert entries["settle"] == entries["reserve"]


# --- client errors: no retry, no cooldown --------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["standin-status:400", "standin-status:400:context_window",
                                     "standin-status:400:content_policy"])
def test_a_clients_bad_request_is_not_retried(deps: Deployments, trigger: str) -> None:
    client, account = deps.customer()
    deps.standin.recorder.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(client, "clients", [{"role": "user", "content": trigger}])
    assert caught.value.body["code"] == "invalid_request"  # type: ignore[index]
    assert len(deps.calls()) == 1
    entries = deps.entries(account, caught.value.response.headers["x-request-id"])
    assert set(entries) == {"reserve", "release"}


def test_bad_requests_leave_every_deployment_serving(deps: Deployments) -> None:
    """threat-model: TM-D6"""
    client, _ = deps.customer()
    # allowed_fails 0: one provider-side failure would take a deployment out for 600 s. Twelve bad requests, four of
    # each kind of client error, reach both deployments ...
    deps.standin.recorder.clear()
    for trigger in ("standin-status:400", "standin-status:400:context_window",
                    "standin-status:400:content_policy") * 4:
        with pytest.raises(openai.BadRequestError):
            _chat(client, "clients", [{"role": "user", "content": trigger}])
    assert {_served(call) for call in deps.calls()} == {"openai_a", "azure_b"}
    # ... and afterwards both still serve other requests.
    deps.standin.recorder.clear()
    for _ in range(16):
        reply, _ = _chat(client, "clients")
        assert reply.choices[0].message.content == "Hello from the provider stand-in."
    assert {_served(call) for call in deps.calls()} == {"openai_a", "azure_b"}


@pytest.mark.parametrize("name", sorted(set(ROUTER_FIELDS) | set(KIND_STEERING_FIELDS["azure"])))
def test_router_fields_are_refused_before_any_deployment_is_called(deps: Deployments, name: str) -> None:
    client, _ = deps.customer()
    deps.standin.recorder.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mixed", messages=HI, max_tokens=5,  # type: ignore[arg-type]
                                       extra_body={name: ["clients"] if "fallbacks" in name else 1})
    assert caught.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    assert deps.calls() == []


# --- two Anthropic keys, cache tokens ------------------------------------------------------------------------------


def test_two_anthropic_keys_share_the_load(deps: Deployments) -> None:
    client, _ = deps.customer()
    deps.standin.recorder.clear()
    for _ in range(16):
        reply, _ = _chat(client, "claudes")
        assert reply.choices[0].message.content == "Hello from the provider stand-in."
    used = Counter(call["headers"]["x-api-key"] for call in deps.calls())
    assert set(used) == {deps.keys["claude_1"], deps.keys["claude_2"]} and sum(used.values()) == 16


def test_the_least_busy_strategy_serves_each_request_from_one_deployment(deps: Deployments) -> None:
    client, _ = deps.customer()
    deps.standin.recorder.clear()
    replies = together([lambda: _chat(client, "busy")[0] for _ in range(8)])
    assert all(reply.choices[0].message.content == "Hello from the provider stand-in." for reply in replies)
    served = [_served(call) for call in deps.calls()]
    assert len(served) == 8 and set(served) <= {"openai_a", "azure_b"}


def test_anthropic_cache_tokens_settle_at_their_own_prices(deps: Deployments) -> None:
    client, account = deps.customer()
    deps.standin.recorder.clear()
    messages = [{"role": "system", "content": "standin-cache:20:30"}, *HI]
    reply, request_id = _chat(client, "claudes", messages)
    (call,) = deps.calls()
    written, read = 20, 30
    uncached = 9 + len(json.dumps(call["body"]["messages"])) // 8
    assert reply.usage is not None and reply.usage.prompt_tokens == uncached + written + read
    entries = deps.entries(account, request_id)
    # Input at 1, cache writes at 4, cache reads at 0.5, output at 2 (USD per million tokens), rounded up.
    micro = uncached * 1_000_000 + written * 4_000_000 + read * 500_000 + 7 * 2_000_000
    assert entries["settle"] == -(-micro // 1_000_000)


def test_ledger_parity_after_the_run(deps: Deployments) -> None:
    assert deps.gateway.keys.ledger.check() == []


def test_a_one_deployment_model_is_never_cooled_down_where_cooldowns_are_on(deps: Deployments) -> None:
    """threat-model: TM-D4"""
    client, _ = deps.customer()
    # Cooldowns are on in this policy (models with several deployments); "cheap" has one deployment. A 429 with
    # Retry-After: 3600 that one client's request causes answers that request only.
    with pytest.raises(openai.RateLimitError):
        _chat(client, "cheap", [{"role": "user", "content": "standin-status:429"}])
    reply, _ = _chat(client, "cheap")
    assert reply.choices[0].message.content == "Hello from the provider stand-in."


def test_anthropic_cache_tokens_of_a_stream_settle_at_their_own_prices(deps: Deployments) -> None:
    client, account = deps.customer()
    deps.standin.recorder.clear()
    messages = [{"role": "system", "content": "standin-cache:20:30"}, *HI]
    raw = client.chat.completions.with_raw_response.create(model="claudes", messages=messages,  # type: ignore[arg-type]
                                                           max_tokens=10, stream=True,
                                                           stream_options={"include_usage": True})
    request_id = raw.headers["x-request-id"]
    usage = [chunk.usage for chunk in raw.parse() if chunk.usage is not None]
    (call,) = deps.calls()
    uncached = 9 + len(json.dumps(call["body"]["messages"])) // 8
    assert [u.prompt_tokens for u in usage] == [uncached + 20 + 30]
    output = usage[0].completion_tokens
    micro = uncached * 1_000_000 + 20 * 4_000_000 + 30 * 500_000 + output * 2_000_000
    assert deps.entries(account, request_id)["settle"] == -(-micro // 1_000_000)
