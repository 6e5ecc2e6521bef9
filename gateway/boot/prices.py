"""Each exposed model's prices, settled at boot: per deployment the policy's, else LiteLLM's bundled cost map under
the provider's own name for the model. Boot refuses a deployment with neither (the gateway cannot reserve credit for a
request it cannot price)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.boot.errors import BootError
from gateway.boot.litellm_mount import import_litellm
from gateway.credits.pricing import Price, per_million_from_usd_per_million, per_million_from_usd_per_token
from gateway.policy import ModelDeployment, Policy, ProviderKind


def resolve_deployment_prices(policy: Policy) -> dict[str, dict[str, Price]]:
    """Per model, each deployment's price (by its label, ``provider:upstream_model``): the policy's, else LiteLLM's
    cost map under the provider's own name for the model (``anthropic/claude-…``, ``azure/<deployment>``). Cache-token
    prices: the policy's, else (policy price unset) the cost map's, else the input price."""
    litellm = import_litellm()
    return {model.name: {d.label: _price(litellm.model_cost, policy, model.name, d) for d in model.served_by()}
            for model in policy.models}


def resolve_prices(policy: Policy) -> dict[str, Price]:
    """Each model's reservation price: the most any of its deployments charges for each kind of token
    (:func:`worst_price`)."""
    return {name: worst_price(prices.values()) for name, prices in resolve_deployment_prices(policy).items()}


def worst_price(prices: Any) -> Price:
    """The price a reservation uses for a model whose request any of ``prices``' deployments may serve: the maximum of
    each price separately. A deployment's cost is input × its input price + output × its output price, every term
    non-negative, so for the same token bounds no deployment costs more than the maxima do (the combination may cost
    more than any one deployment: the reservation is an upper bound, and settlement charges the one that served). The
    input price is also at least each cache price, since cache tokens are part of the input tokens."""
    listed = list(prices)
    cache_write = max(p.cache_write for p in listed)
    cache_read = max(p.cache_read for p in listed)
    return Price(max(*(p.input_per_million for p in listed), cache_write, cache_read),
                 max(p.output_per_million for p in listed), cache_write, cache_read)


def _price(model_cost: Mapping[str, Any], policy: Policy, name: str, deployment: ModelDeployment) -> Price:
    where = f"model {name!r}" + ("" if len(policy.model(name).served_by()) == 1 else f" deployment {deployment.label}")
    if deployment.price is not None:
        configured = deployment.price
        cache_write, cache_read = (None if value is None else per_million_from_usd_per_million(value)
                                   for value in (configured.cache_write_usd_per_million_tokens,
                                                 configured.cache_read_usd_per_million_tokens))
        return Price(per_million_from_usd_per_million(configured.input_usd_per_million_tokens),
                     per_million_from_usd_per_million(configured.output_usd_per_million_tokens),
                     cache_write, cache_read)
    entry = cost_map_entry(model_cost, policy.providers[deployment.provider].kind, deployment.upstream_model)
    if not entry or entry.get("input_cost_per_token") is None:
        raise BootError("prices", f"{where}: no price in the policy and none in LiteLLM's cost map")
    try:
        cache_write, cache_read = (None if entry.get(field) is None else per_million_from_usd_per_token(entry[field])
                                   for field in ("cache_creation_input_token_cost", "cache_read_input_token_cost"))
        return Price(per_million_from_usd_per_token(entry["input_cost_per_token"]),
                     per_million_from_usd_per_token(entry.get("output_cost_per_token") or 0), cache_write, cache_read)
    except ValueError:
        raise BootError("prices", f"{where}: LiteLLM's price cannot be represented exactly; set price in the "
                                  "policy") from None


def cost_map_entry(model_cost: Mapping[str, Any], kind: ProviderKind, upstream_model: str) -> Mapping[str, Any] | None:
    """The cost-map entry for ``upstream_model`` at a provider of ``kind``: the bare name or ``<kind>/<model>``, when
    the map lists it for that same provider (never another provider's price for a name they share). An
    OpenAI-compatible API may serve any catalogue's model, so for kind openai the entry is taken as listed. An Azure
    deployment is found only when it is named after its model; otherwise the policy sets the price. LiteLLM lists
    Vertex AI's Gemini models under their bare names as ``vertex_ai-language-models``, and a Bedrock model id under
    Bedrock's own two names for itself (``bedrock``, and ``bedrock_converse`` for the models LiteLLM calls through
    Converse only)."""
    providers = COST_MAP_PROVIDERS.get(kind, (kind,))
    for key in (upstream_model, f"{kind}/{upstream_model}"):
        entry = model_cost.get(key)
        if isinstance(entry, Mapping) and (kind == "openai" or entry.get("litellm_provider") in providers):
            return entry
    return None


# The cost map's provider names for a kind, where they are not the kind itself.
COST_MAP_PROVIDERS: dict[str, tuple[str, ...]] = {"vertex_ai": ("vertex_ai", "vertex_ai-language-models"),
                                                  "bedrock": ("bedrock", "bedrock_converse")}
