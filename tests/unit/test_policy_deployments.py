"""Several deployments per model in the policy: the list form, the single form it extends, their routing, and
errors that name the file and the field; how boot hands them to LiteLLM's router.

threat-model: TM-D6, TM-T17
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.boot import litellm_mount
from gateway.boot.prices import resolve_deployment_prices, resolve_prices, worst_price
from gateway.boot.secret import Secret
from gateway.credits.pricing import Price
from gateway.policy import PolicyError, load_policy

PROVIDERS = ("providers:\n  openai: {api_base: 'https://api.openai.com/v1'}\n"
             "  azure_eu: {kind: azure, api_base: 'https://r.openai.azure.com', api_version: '2024-10-21'}\n"
             "  claude_a: {kind: anthropic, api_base: 'https://api.anthropic.com'}\n"
             "  claude_b: {kind: anthropic, api_base: 'https://api.anthropic.com'}\n")
TWO = ("  - name: gpt-4o\n    deployments:\n"
       "      - {provider: openai, upstream_model: gpt-4o-mini}\n"
       "      - {provider: azure_eu, upstream_model: gpt4o-prod, price: {input_usd_per_million_tokens: '3',"
       " output_usd_per_million_tokens: '0.5'}}\n")
KEYS = {name: Secret(f"key-{name}") for name in ("openai", "azure_eu", "claude_a", "claude_b")}


def _load(tmp_path: Path, models: str) -> object:
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\n{PROVIDERS}models:\n{models}", encoding="utf-8")
    return load_policy(path)


def test_a_model_lists_several_deployments_and_the_single_form_means_one(tmp_path: Path) -> None:
    policy = _load(tmp_path, TWO + "  - name: mini\n    provider: openai\n    upstream_model: gpt-4o-mini\n")
    two, one = policy.model("gpt-4o"), policy.model("mini")  # type: ignore[attr-defined]
    assert [d.label for d in two.served_by()] == ["openai:gpt-4o-mini", "azure_eu:gpt4o-prod"]
    assert [d.label for d in one.served_by()] == ["openai:gpt-4o-mini"]
    assert (two.max_calls, one.max_calls) == (2, 1)  # routing.retries defaults to 1; one deployment: one call
    assert policy.kinds(two) == {"openai", "azure"} and policy.provider_names() == {"openai", "azure_eu"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("models", "words"), [
    ("  - {name: m, provider: openai, upstream_model: x, deployments: [{provider: openai, upstream_model: y}]}\n",
     "models.0: Value error, a model with deployments sets provider"),
    (("  - {name: m, deployments: [{provider: openai, upstream_model: y, price: {input_usd_per_million_tokens: '1'}}],"
     " price: {input_usd_per_million_tokens: '1'}}\n"), "not on the model"),
    ("  - {name: m}\n", "needs provider and upstream_model, or a list of deployments"),
    ("  - {name: m, deployments: []}\n", "models.0.deployments"),
    ("  - {name: m, deployments: [{provider: nowhere, upstream_model: y}]}\n",
     "model 'm' deployments.0 names unknown provider 'nowhere'"),
    ("  - {name: m, deployments: [{provider: openai, upstream_model: y}, {provider: azure_eu, upstream_model: 'a/b'}]}\n",
     "model 'm' deployments.1: upstream_model is the Azure deployment name"),
    (("  - {name: m, mode: embedding, deployments: [{provider: openai, upstream_model: y},"
     " {provider: claude_a, upstream_model: z}]}\n"), "model 'm' deployments.1: a provider of kind anthropic serves chat"),
    ("  - {name: m, deployments: [{provider: openai, upstream_model: y}, {provider: openai, upstream_model: y}]}\n",
     "listed twice"),
    ("  - {name: m, provider: openai, upstream_model: y, routing: {retries: 2}}\n", "routing applies to a model with"),
    ("  - {name: m, deployments: [{provider: openai, upstream_model: y}], routing: {strategy: cost-based-routing}}\n",
     "models.0.routing.strategy"),
    ("  - {name: m, deployments: [{provider: openai, upstream_model: y}], routing: {retries: 9}}\n",
     "models.0.routing.retries"),
    ("  - {name: m, deployments: [{provider: openai, upstream_model: y, api_key: sk-oops}]}\n",
     "models.0.deployments.0.api_key"),
    (("  - {name: m, deployments: [{provider: openai, upstream_model: y, price: {input_usd_per_million_tokens: '1',"
     " cache_write_usd_per_million_tokens: 'lots'}}]}\n"), "cache_write_usd_per_million_tokens"),
])
def test_invalid_deployments_name_the_file_and_the_field(tmp_path: Path, models: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path, models)
    assert words in str(caught.value) and str(tmp_path / "policy.yaml") in str(caught.value)
    assert "sk-oops" not in str(caught.value)


def test_each_deployment_is_one_entry_of_the_router_under_the_models_name(tmp_path: Path) -> None:
    policy = _load(tmp_path, TWO + "  - {name: mini, provider: openai, upstream_model: gpt-4o-mini}\n")
    config = litellm_mount.build_config(policy, Secret("master"), KEYS)  # type: ignore[arg-type]
    entries = [(e["model_name"], e["litellm_params"]["model"], e["litellm_params"]["api_key"], e["model_info"])
               for e in config["model_list"]]
    assert entries == [
        ("gpt-4o", "openai/gpt-4o-mini", "key-openai",
         {"mode": "chat", "id": "gpt-4o#0", "cooldown_time": 30, "allowed_fails": 0}),
        ("gpt-4o", "azure/gpt4o-prod", "key-azure_eu",
         {"mode": "chat", "id": "gpt-4o#1", "cooldown_time": 30, "allowed_fails": 0}),
        # One deployment is never cooled down (TM-D4).
        ("mini", "openai/gpt-4o-mini", "key-openai", {"mode": "chat", "id": "mini#0", "cooldown_time": 0}),
    ]
    router = config["router_settings"]
    assert router["num_retries"] == 0 and router["fallbacks"] == [] and router["disable_cooldowns"] is False
    # A client's bad request and a timeout (a call the provider may bill) are never retried; a deployment's failure
    # is, up to routing.retries times.
    assert router["model_group_retry_policy"] == {"gpt-4o": {
        "BadRequestErrorRetries": 0, "ContentPolicyViolationErrorRetries": 0, "AuthenticationErrorRetries": 1,
        "TimeoutErrorRetries": 0, "RateLimitErrorRetries": 1, "InternalServerErrorRetries": 1,
        "ServiceUnavailableErrorRetries": 1, "NotFoundErrorRetries": 1, "DefaultRetries": 1}}
    assert "routing_groups" not in router


def test_a_policy_without_several_deployments_configures_the_router_as_before(tmp_path: Path) -> None:
    policy = _load(tmp_path, "  - {name: mini, provider: openai, upstream_model: gpt-4o-mini}\n")
    router = litellm_mount.build_config(policy, Secret("master"), KEYS)["router_settings"]  # type: ignore[arg-type]
    assert router == {"num_retries": 0, "fallbacks": [], "disable_cooldowns": True}


def test_a_strategy_other_than_shuffle_is_a_routing_group_of_its_own(tmp_path: Path) -> None:
    policy = _load(tmp_path, TWO + "    routing: {strategy: latency-based-routing, retries: 0, timeout_seconds: 20}\n")
    config = litellm_mount.build_config(policy, Secret("master"), KEYS)  # type: ignore[arg-type]
    assert config["router_settings"]["routing_groups"] == [
        {"group_name": "gateway-routing-0", "models": ["gpt-4o"], "routing_strategy": "latency-based-routing"}]
    assert litellm_mount.routing_callbacks(config) == {"LowestLatencyLoggingHandler"}
    deployments = litellm_mount.build_deployments(policy, KEYS)  # type: ignore[arg-type]
    assert [(d.label, d.call_timeout, d.timeout) for d in deployments["gpt-4o"]] == [
        ("openai:gpt-4o-mini", 20, 600), ("azure_eu:gpt4o-prod", 20, 600)]


def test_the_pre_flight_accepts_only_fields_every_deployment_forwards(tmp_path: Path) -> None:
    policy = _load(tmp_path, "  - name: m\n    deployments:\n      - {provider: openai, upstream_model: gpt-4o-mini}\n"
                             "      - {provider: claude_a, upstream_model: claude-sonnet-4-5}\n")
    fields = litellm_mount.model_fields(litellm_mount.build_deployments(policy, KEYS))  # type: ignore[arg-type]
    # Anthropic's translation has no n, logprobs or seed: refused for the model, whichever deployment would serve.
    assert {"messages", "max_tokens", "tools"} <= fields["m"] and not {"n", "logprobs", "seed"} & fields["m"]


def test_prices_per_deployment_and_the_reservations_worst_case(tmp_path: Path) -> None:
    policy = _load(tmp_path, TWO)
    served = resolve_deployment_prices(policy)["gpt-4o"]  # type: ignore[arg-type]
    cost_map = served["openai:gpt-4o-mini"]
    assert served["azure_eu:gpt4o-prod"] == Price(3_000_000, 500_000)
    worst = resolve_prices(policy)["gpt-4o"]  # type: ignore[arg-type]
    # The maximum of each price separately: the Azure deployment's input, the cost map's gpt-4o-mini output.
    assert (worst.input_per_million, worst.output_per_million) == (3_000_000, max(500_000, cost_map.output_per_million))


def test_the_worst_price_bounds_every_deployment_and_every_cache_price() -> None:
    listed = [Price(1_000_000, 4_000_000), Price(3_000_000, 2_000_000, 3_750_000, 300_000)]
    worst = worst_price(listed)
    # The first deployment has no cache prices: its cache reads cost its input price (1), the most of the two.
    assert worst == Price(3_750_000, 4_000_000, 3_750_000, 1_000_000)
    for prompt, output, written, read in [(100, 10, 0, 0), (100, 10, 100, 0), (100, 0, 0, 100), (7, 3, 2, 5)]:
        assert all(price.cost(prompt, output, written, read) <= worst.cost(prompt, output) for price in listed)


def test_cache_tokens_are_charged_at_their_prices_inside_the_input() -> None:
    price = Price(1_000_000, 2_000_000, 4_000_000, 500_000)
    # 100 input tokens of which 20 were written to the cache and 30 read from it, 7 output tokens.
    assert price.cost(100, 7, 20, 30) == 50 + 80 + 15 + 14
    assert Price(1_000_000, 2_000_000).cost(100, 7, 20, 30) == 100 + 14  # no cache prices: the input price
    with pytest.raises(ValueError, match="more cache tokens"):
        price.cost(10, 0, 20, 0)
