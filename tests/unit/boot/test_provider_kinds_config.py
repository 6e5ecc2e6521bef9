"""LiteLLM's configuration per provider kind: ``<kind>/<upstream_model>``, the policy's host and API version, the key
from Vault; the approval check's deployments mirror it; prices come from the cost map under the provider's own name
only; provider variables LiteLLM would read from the environment are refused."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from gateway.boot import litellm_mount
from gateway.boot.errors import BootError
from gateway.boot.prices import resolve_deployment_prices, resolve_prices
from gateway.boot.secret import Secret
from gateway.pipeline.approval import credential_digest
from gateway.policy import Policy, load_policy

POLICY = """version: 1
providers:
  o: {api_base: 'https://api.openai.com/v1'}
  a: {kind: anthropic, api_base: 'https://api.anthropic.com'}
  z: {kind: azure, api_base: 'https://r.openai.azure.com', api_version: '2024-10-21'}
  g: {kind: gemini, api_base: 'https://generativelanguage.googleapis.com/v1beta'}
models:
  - {name: o, provider: o, upstream_model: gpt-4o-mini}
  - {name: a, provider: a, upstream_model: claude-sonnet-4-5}
  - {name: z, provider: z, upstream_model: gpt-4o-mini}
  - {name: z-own-name, provider: z, upstream_model: prod-chat, price: {input_usd_per_million_tokens: '1'}}
  - {name: g, provider: g, upstream_model: gemini-2.5-flash}
"""
KEYS = {"o": Secret("key-o"), "a": Secret("key-a"), "z": Secret("key-z"), "g": Secret("key-g")}


def _policy(tmp_path: Path, text: str = POLICY) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def test_each_kind_is_configured_for_its_own_protocol(tmp_path: Path) -> None:
    config = litellm_mount.build_config(_policy(tmp_path), Secret("master"), KEYS)
    params = {entry["model_name"]: entry["litellm_params"] for entry in config["model_list"]}
    assert params["o"] == {"model": "openai/gpt-4o-mini", "api_base": "https://api.openai.com/v1", "api_key": "key-o"}
    assert params["a"] == {"model": "anthropic/claude-sonnet-4-5", "api_base": "https://api.anthropic.com",
                           "api_key": "key-a"}
    assert params["z"] == {"model": "azure/gpt-4o-mini", "api_base": "https://r.openai.azure.com",
                           "api_key": "key-z", "api_version": "2024-10-21"}
    assert params["g"] == {"model": "gemini/gemini-2.5-flash",
                           "api_base": "https://generativelanguage.googleapis.com/v1beta", "api_key": "key-g"}
    # Nothing LiteLLM would resolve from the environment.
    assert not any(str(v).startswith("os.environ/") for p in params.values() for v in p.values())


def test_deployments_mirror_the_config(tmp_path: Path) -> None:
    deployments = litellm_mount.build_deployments(_policy(tmp_path), KEYS)
    assert (deployments["a"][0].litellm_model, deployments["a"][0].provider, deployments["a"][0].api_version) == (
        "anthropic/claude-sonnet-4-5", "anthropic", None)
    assert (deployments["z"][0].litellm_model, deployments["z"][0].provider, deployments["z"][0].api_version) == (
        "azure/gpt-4o-mini", "azure", "2024-10-21")
    assert deployments["a"][0].credential == credential_digest("key-a")
    # Anthropic's translation drops n, logprobs and seed: the pre-flight refuses them for that kind.
    assert {"n", "logprobs", "seed"} <= deployments["o"][0].fields
    assert not {"n", "logprobs", "seed"} & deployments["a"][0].fields
    assert {"messages", "max_tokens", "tools", "stream_options"} <= deployments["a"][0].fields
    # Gemini's translation drops user, logit_bias and top_logprobs: refused for that kind too.
    assert (deployments["g"][0].litellm_model, deployments["g"][0].provider, deployments["g"][0].api_version) == (
        "gemini/gemini-2.5-flash", "gemini", None)
    assert not {"user", "logit_bias", "top_logprobs"} & deployments["g"][0].fields
    assert {"messages", "max_tokens", "tools", "stream_options", "n", "seed"} <= deployments["g"][0].fields


def test_gemini_and_anthropic_calls_get_the_gateways_http_client() -> None:
    # Their LiteLLM handlers would otherwise use a cached client that follows redirects with the key.
    assert {"anthropic", "gemini"} <= set(litellm_mount.OWN_CLIENT_KINDS)


def test_the_gateways_handler_carries_the_policys_timeout() -> None:
    # LiteLLM's Gemini handler passes no timeout with a call on a client it was given.
    async def main() -> tuple[object, bool]:
        async with litellm_mount.provider_http_client(7.5) as handler:
            return handler.timeout, handler.client.follow_redirects

    assert asyncio.run(main()) == (httpx.Timeout(7.5), False)


def test_prices_come_from_the_cost_map_under_the_providers_own_name(tmp_path: Path) -> None:
    served = resolve_deployment_prices(_policy(tmp_path))
    prices = {name: next(iter(listed.values())) for name, listed in served.items()}
    litellm = litellm_mount.import_litellm()
    claude = litellm.model_cost["claude-sonnet-4-5"]
    assert prices["a"].input_per_million == round(claude["input_cost_per_token"] * 1e12)
    assert (prices["a"].cache_write, prices["a"].cache_read) == (
        round(claude["cache_creation_input_token_cost"] * 1e12), round(claude["cache_read_input_token_cost"] * 1e12))
    # The reservation prices every input token at the most an input token may cost: a cache write, for Claude.
    assert resolve_prices(_policy(tmp_path))["a"].input_per_million == prices["a"].cache_write > \
        prices["a"].input_per_million
    assert prices["z"].input_per_million == round(litellm.model_cost["azure/gpt-4o-mini"]["input_cost_per_token"] * 1e12)
    assert prices["z-own-name"].input_per_million == 1_000_000
    entry = litellm.model_cost["gemini/gemini-2.5-flash"]
    assert (prices["g"].input_per_million, prices["g"].output_per_million) == (
        round(entry["input_cost_per_token"] * 1e12), round(entry["output_cost_per_token"] * 1e12))


@pytest.mark.parametrize(("kind", "upstream"), [("anthropic", "gpt-4o-mini"), ("azure", "claude-sonnet-4-5"),
                                                ("azure", "prod-chat"), ("gemini", "claude-sonnet-4-5"),
                                                ("gemini", "gpt-4o-mini"),
                                                ("gemini", "gemini-2.5-flash-preview-09-2025")])
def test_another_providers_price_is_never_taken(tmp_path: Path, kind: str, upstream: str) -> None:
    extra = ", api_version: '2024-10-21'" if kind == "azure" else ""
    base = "https://h.example/v1beta" if kind == "gemini" else "https://h.example"
    policy = _policy(tmp_path, f"version: 1\nproviders: {{p: {{kind: {kind}, api_base: '{base}'{extra}}}}}\n"
                               f"models: [{{name: m, provider: p, upstream_model: {upstream}}}]\n")
    with pytest.raises(BootError, match="no price in the policy and none in LiteLLM's cost map"):
        resolve_prices(policy)


@pytest.mark.parametrize("name", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "AZURE_API_KEY",
                                  "AZURE_OPENAI_API_KEY", "AZURE_AD_TOKEN", "AZURE_API_BASE", "AZURE_API_VERSION",
                                  "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "azure_username",
                                  "LITELLM_ANTHROPIC_DISABLE_URL_SUFFIX", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                                  "PALM_API_KEY", "GEMINI_API_BASE", "GOOGLE_APPLICATION_CREDENTIALS",
                                  "VERTEXAI_CREDENTIALS", "VERTEXAI_PROJECT", "VERTEX_LOCATION",
                                  "DEFAULT_VERTEXAI_PROJECT", "DEFAULT_GOOGLE_APPLICATION_CREDENTIALS"])
def test_provider_variables_are_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """threat-model: TM-E6"""
    for existing in list(os.environ):
        if existing.upper().startswith(litellm_mount.PROVIDER_ENV_PREFIXES):
            monkeypatch.delenv(existing)
    monkeypatch.setenv(name, "value-from-env")
    with pytest.raises(BootError) as caught:
        litellm_mount.check_environment()
    assert name in str(caught.value) and "value-from-env" not in str(caught.value)


def test_anthropic_beta_headers_are_never_fetched_from_the_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    litellm_mount.import_litellm()
    from litellm import anthropic_beta_headers_manager as manager

    fetched: list[str] = []
    monkeypatch.setattr(manager.GetAnthropicBetaHeadersConfig, "fetch_remote_beta_headers_config",
                        staticmethod(lambda url: fetched.append(url) or {}))
    config = manager.get_beta_headers_config("https://example.invalid/beta-headers.json")
    assert fetched == [] and config  # the bundled table, without a network call


# --- vertex_ai ----------------------------------------------------------------------------------------------------

VERTEX_POLICY = """version: 1
providers:
  v: {kind: vertex_ai, project: proj-one, location: europe-west4}
models:
  - {name: v, provider: v, upstream_model: gemini-2.5-flash}
"""
SERVICE_ACCOUNT = '{"type": "service_account", "client_email": "gw@proj-one.iam.gserviceaccount.com"}'


def test_vertex_ai_is_configured_with_the_policys_project_location_and_the_service_account(tmp_path: Path) -> None:
    """threat-model: TM-E8"""
    policy = _policy(tmp_path, VERTEX_POLICY)
    config = litellm_mount.build_config(policy, Secret("master"), {"v": Secret(SERVICE_ACCOUNT)})
    (entry,) = config["model_list"]
    # No api_key: LiteLLM's Vertex path takes the service account's JSON, and google-auth gets the bearer token.
    assert entry["litellm_params"] == {"model": "vertex_ai/gemini-2.5-flash",
                                       "api_base": "https://europe-west4-aiplatform.googleapis.com",
                                       "vertex_project": "proj-one", "vertex_location": "europe-west4",
                                       "vertex_credentials": SERVICE_ACCOUNT}
    deployment = litellm_mount.build_deployments(policy, {"v": Secret(SERVICE_ACCOUNT)})["v"][0]
    assert (deployment.provider, deployment.vertex_project, deployment.vertex_location) == (
        "vertex_ai", "proj-one", "europe-west4")
    assert deployment.credential == credential_digest(SERVICE_ACCOUNT)
    # LiteLLM drops user and logit_bias for Vertex AI too; it maps top_logprobs there (not for AI Studio).
    assert not {"user", "logit_bias"} & deployment.fields
    assert {"messages", "max_tokens", "tools", "stream_options", "top_logprobs"} <= deployment.fields
    # What LiteLLM keeps as its config state for the life of the process: no credential.
    kept = litellm_mount._without_secrets({"model_list": [entry]})
    assert "vertex_credentials" not in kept["model_list"][0]["litellm_params"]
    assert "vertex_ai" in litellm_mount.OWN_CLIENT_KINDS


@pytest.mark.parametrize(("upstream", "words"), [("gemini-openai-compatible", "through Vertex AI's Gemini API"),
                                                 ("gemini-bge-large", "through Vertex AI's Gemini API")])
def test_a_vertex_model_litellm_would_not_call_as_gemini_is_refused(tmp_path: Path, upstream: str,
                                                                    words: str) -> None:
    policy = _policy(tmp_path, VERTEX_POLICY.replace("gemini-2.5-flash", upstream))
    with pytest.raises(BootError, match=words):
        litellm_mount.build_deployments(policy, {"v": Secret(SERVICE_ACCOUNT)})


def test_vertex_prices_come_from_the_cost_map_under_vertex_ais_name(tmp_path: Path) -> None:
    prices = resolve_prices(_policy(tmp_path, VERTEX_POLICY))
    entry = litellm_mount.import_litellm().model_cost["gemini-2.5-flash"]
    assert entry["litellm_provider"] == "vertex_ai-language-models"
    assert (prices["v"].input_per_million, prices["v"].output_per_million) == (
        round(entry["input_cost_per_token"] * 1e12), round(entry["output_cost_per_token"] * 1e12))
    # An AI Studio-only or another provider's name is not taken.
    for upstream in ("gemini-3.1-flash-live-preview", "gemini-standin-chat"):
        with pytest.raises(BootError, match="no price"):
            resolve_prices(_policy(tmp_path, VERTEX_POLICY.replace("gemini-2.5-flash", upstream)))


@pytest.mark.parametrize("name", ["GCE_METADATA_HOST", "GCE_METADATA_IP", "GCE_METADATA_ROOT", "CLOUDSDK_CONFIG",
                                  "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_QUOTA_PROJECT",
                                  "GOOGLE_API_CERTIFICATE_CONFIG"])
def test_google_auth_variables_are_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """threat-model: TM-S9"""
    for existing in list(os.environ):
        if existing.upper().startswith(litellm_mount.PROVIDER_ENV_PREFIXES):
            monkeypatch.delenv(existing)
    monkeypatch.setenv(name, "value-from-env")
    with pytest.raises(BootError) as caught:
        litellm_mount.check_environment()
    assert name in str(caught.value)
