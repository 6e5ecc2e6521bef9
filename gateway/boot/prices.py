"""Each exposed model's price, settled at boot: the policy's, else LiteLLM's bundled cost map under the provider's own
name for the model. Boot refuses a model with neither (the gateway cannot reserve credit for a request it cannot
price)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.boot.errors import BootError
from gateway.boot.litellm_mount import import_litellm
from gateway.credits.pricing import Price, per_million_from_usd_per_million, per_million_from_usd_per_token
from gateway.policy import Policy, ProviderKind


def resolve_prices(policy: Policy) -> dict[str, Price]:
    """Each exposed model's price: the policy's, else LiteLLM's bundled cost map under the provider's own name for the
    model (``anthropic/claude-…``, ``azure/<deployment>``). A model without one is refused: the gateway cannot
    reserve credit for a request it cannot price."""
    litellm = import_litellm()

    prices: dict[str, Price] = {}
    for model in policy.models:
        if model.price is not None:
            prices[model.name] = Price(
                per_million_from_usd_per_million(model.price.input_usd_per_million_tokens),
                per_million_from_usd_per_million(model.price.output_usd_per_million_tokens),
            )
            continue
        entry = cost_map_entry(litellm.model_cost, policy.kind(model), model.upstream_model)
        if not entry or entry.get("input_cost_per_token") is None:
            raise BootError("prices", f"model {model.name!r}: no price in the policy and none in LiteLLM's cost map")
        try:
            prices[model.name] = Price(
                per_million_from_usd_per_token(entry["input_cost_per_token"]),
                per_million_from_usd_per_token(entry.get("output_cost_per_token") or 0),
            )
        except ValueError:
            raise BootError("prices", f"model {model.name!r}: LiteLLM's price cannot be represented exactly; "
                                      "set price in the policy") from None
    return prices


def cost_map_entry(model_cost: Mapping[str, Any], kind: ProviderKind, upstream_model: str) -> Mapping[str, Any] | None:
    """The cost-map entry for ``upstream_model`` at a provider of ``kind``: the bare name or ``<kind>/<model>``, when
    the map lists it for that same provider (never another provider's price for a name they share). An
    OpenAI-compatible API may serve any catalogue's model, so for kind openai the entry is taken as listed. An Azure
    deployment is found only when it is named after its model; otherwise the policy sets the price. A Bedrock model id is
    listed under Bedrock's own two names for itself (``bedrock``, and ``bedrock_converse`` for the models LiteLLM
    calls through Converse only)."""
    providers = COST_MAP_PROVIDERS.get(kind, (kind,))
    for key in (upstream_model, f"{kind}/{upstream_model}"):
        entry = model_cost.get(key)
        if isinstance(entry, Mapping) and (kind == "openai" or entry.get("litellm_provider") in providers):
            return entry
    return None


COST_MAP_PROVIDERS: dict[str, tuple[str, ...]] = {"bedrock": ("bedrock", "bedrock_converse")}
