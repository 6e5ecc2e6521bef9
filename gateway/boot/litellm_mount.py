"""HAZMAT: configuring LiteLLM's proxy in memory and entering its lifespan from ours.

This is the only module that imports ``litellm.proxy.proxy_server``. It

* refuses to import LiteLLM at all unless the installed version is exactly the pin (compromised releases ran their
  payload on ``import litellm.proxy``, so the check reads package metadata first);
* refuses to run when environment variables that would reconfigure LiteLLM (or carry a secret) are set;
* hands LiteLLM its config as a Python dict: LiteLLM's startup is pointed at a sentinel config path under
  ``/proc/self`` (where no file can ever be created), and its config-file reader is swapped, for the duration of the
  startup only, for one that returns our dict. No secret goes to ``os.environ`` or to disk;
* after startup checks that LiteLLM holds our master key and our custom_auth bridge, and that it has no database.

The master key stays in LiteLLM's module globals for the life of the process: threat-model TM-T1.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import http.cookiejar
import importlib.metadata
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from gateway import LITELLM_COMPROMISED, LITELLM_PIN, logs
from gateway.boot import bedrock_credentials
from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.pipeline.approval import Deployment, call_credential, credential_digest
from gateway.pipeline.fields import ALLOWED_TOP
from gateway.policy import Model as PolicyModel
from gateway.policy import ModelDeployment, ModelMode, Policy, ProviderKind

SENTINEL_CONFIG_PATH = "/proc/self/gateway-in-memory-config.yaml"
BRIDGE = "gateway.pipeline.bridge.custom_auth"

# Environment variables that LiteLLM's proxy reads at startup to find a config, a database, a master key, start-up
# hooks, or weaker checks. Any of them set would mean a second, unreviewed source of configuration or a secret in the
# environment.
FORBIDDEN_ENV = (
    "LITELLM_MASTER_KEY",
    "LITELLM_SALT_KEY",
    "DATABASE_URL",
    "DIRECT_URL",
    "CONFIG_FILE_PATH",
    "WORKER_CONFIG",
    "LITELLM_CONFIG_BUCKET_NAME",
    "LITELLM_WORKER_STARTUP_HOOKS",
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
    "LITELLM_MIGRATE_FROM_MASTER_KEY",
    "UI_USERNAME",
    "UI_PASSWORD",
)
# LiteLLM's Anthropic and Azure handlers fall back to environment variables for what the policy and Vault set: keys
# (ANTHROPIC_API_KEY, AZURE_API_KEY, AZURE_OPENAI_API_KEY), bearer tokens (ANTHROPIC_AUTH_TOKEN, AZURE_AD_TOKEN),
# hosts (ANTHROPIC_BASE_URL, AZURE_API_BASE), the API version (AZURE_API_VERSION), and Entra ID logins
# (AZURE_TENANT_ID with AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_USERNAME/AZURE_PASSWORD, which LiteLLM reads
# even when an API key is set, and then sends a token as well). Any variable with these prefixes is refused, so a
# credential or host reaches a provider from the policy and Vault only (threat-model TM-E6).
# Its Gemini path reads GEMINI_API_KEY, GOOGLE_API_KEY and PALM_API_KEY for the key, GEMINI_API_BASE for the host, and
# VERTEXAI_*/VERTEX_* (project, location, credentials, host), DEFAULT_VERTEXAI_* and GOOGLE_APPLICATION_CREDENTIALS
# (through Google's auth library) for Vertex AI; those prefixes are refused as well.
# Google's auth library (google-auth, for vertex_ai) reads GOOGLE_* (default credentials, quota project, certificate
# config), GCE_METADATA_* (the metadata server's address) and CLOUDSDK_CONFIG (gcloud's configuration folder), the
# last two only when no credential was given, which the approval check rules out (threat-model TM-S9); they are
# refused all the same. gcloud's own CLOUDSDK_CORE_* settings are not read by google-auth and stay allowed.
# Its Bedrock path, and botocore under it, read AWS_* variables for every setting the policy and Vault make: the keys
# (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), a bearer token that replaces SigV4
# (AWS_BEARER_TOKEN_BEDROCK), the region (AWS_REGION_NAME, AWS_REGION, AWS_DEFAULT_REGION), the host
# (AWS_BEDROCK_RUNTIME_ENDPOINT, AWS_ENDPOINT_URL*), other sources of credentials (AWS_PROFILE, AWS_ROLE_NAME,
# AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_STS_ENDPOINT, AWS_CONTAINER_CREDENTIALS_*, AWS_CONFIG_FILE,
# AWS_SHARED_CREDENTIALS_FILE, AWS_EC2_METADATA_*) and TLS (AWS_CA_BUNDLE); BEDROCK_MANTLE_* for its Mantle route.
# AWS_ and BEDROCK_ are refused whole; boot then sets AWS_FILES_OFF itself.
PROVIDER_ENV_PREFIXES = ("ANTHROPIC_", "AZURE_", "LITELLM_ANTHROPIC_", "GEMINI_", "GOOGLE_", "PALM_", "VERTEXAI_",
                         "VERTEX_", "DEFAULT_VERTEXAI_", "DEFAULT_GOOGLE_", "LITELLM_GEMINI_", "GCE_METADATA_",
                         "CLOUDSDK_CONFIG", "AWS_", "BEDROCK_")
# Set by boot (and accepted with exactly these values when found): botocore reads no shared config or credentials file
# (a path under /proc/self, where no file can be created; botocore treats a missing file as none) and never asks the
# instance metadata service. With the keys given explicitly LiteLLM takes no other source of credentials anyway
# (tests/unit/boot/test_bedrock_config.py); these close the file reads boto3.Session() still makes for its settings.
AWS_FILES_OFF = {
    "AWS_CONFIG_FILE": "/proc/self/gateway-no-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/proc/self/gateway-no-aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Environment variables that change where secrets travel or how TLS is checked, for hvac (requests), httpx, aiohttp
# or LiteLLM: turning verification off (SSL_VERIFY), weakening it (ciphers, curves), presenting a client certificate,
# writing the TLS session keys to a file (SSLKEYLOGFILE, which urllib3 and Python's ssl honour), rerouting LiteLLM to
# another proxy, and hvac's CA and client-certificate settings (read when hvac is imported, so they cannot be undone
# later). Compared without regard to case. Every ``*_proxy`` variable is refused as well (see _is_proxy_variable).
TRANSPORT_ENV = (
    "SSL_VERIFY",
    "SSL_CERTIFICATE",
    "SSL_SECURITY_LEVEL",
    "SSL_ECDH_CURVE",
    "SSLKEYLOGFILE",
    "AIOHTTP_TRUST_ENV",
    "LITELLM_PROXY_API_BASE",
    "LITELLM_PROXY_API_KEY",
    "VAULT_CACERT",
    "VAULT_CAPATH",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
)
# Variables that replace the CA bundle requests, httpx, LiteLLM and OpenSSL trust. They are common in base images
# (pointing at the system bundle), so boot removes them from its own environment instead of refusing: TLS to Vault
# and to providers is then checked against certifi's bundle (pinned in the hash-locked requirements) or, for Vault,
# the gateway's own GATEWAY_VAULT_CACERT, and a variable can never add a certificate authority. A warning names each
# one removed.
# AWS_CA_BUNDLE (botocore's) is one of them too.
NEUTRALIZED_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE")
# `import litellm` loads a .env file found by walking up from LiteLLM's install folder unless LITELLM_MODE is set to
# something other than "DEV"; boot sets it to PRODUCTION, the only value it accepts from the environment.
LITELLM_MODE = "PRODUCTION"
# Non-secret settings LiteLLM reads at import time: use the bundled cost map (no outbound fetch at boot), no
# feedback box or banner noise on stdout, no telemetry; and (read at a request) the bundled table of Anthropic beta
# headers, which LiteLLM would otherwise fetch from the internet on the first Anthropic call that needs one.
QUIET_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    "LITELLM_TELEMETRY": "False",
}


def check_litellm_version() -> str:
    try:
        installed = importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        raise BootError("litellm version", "litellm is not installed") from None
    if installed in LITELLM_COMPROMISED:
        raise BootError("litellm version", f"litellm {installed} is a known-compromised release; refusing to import it")
    if installed != LITELLM_PIN:
        raise BootError(
            "litellm version", f"litellm {installed} is installed but this gateway is pinned to {LITELLM_PIN}"
        )
    return installed


def _is_proxy_variable(name: str) -> bool:
    # urllib's getproxies (used by requests and aiohttp) takes any "<scheme>_proxy" variable, in any case; httpx reads
    # HTTP_PROXY, HTTPS_PROXY and ALL_PROXY. NO_PROXY only exempts hosts from a proxy, and no proxy is allowed.
    lowered = name.lower()
    return lowered.endswith("_proxy") and lowered != "no_proxy"


def check_environment() -> None:
    """Refuse variables that reconfigure LiteLLM or reroute secrets; neutralize CA overrides and LiteLLM's .env.

    Runs before the Vault login (``serve.prepare``) and before LiteLLM is imported. The error names the variable,
    never its value."""
    present = [name for name in FORBIDDEN_ENV if name in os.environ]
    if present:
        raise BootError(
            "environment", f"{present[0]} is set; it would reconfigure LiteLLM outside the policy. Unset it"
        )
    for name in sorted(os.environ):
        if AWS_FILES_OFF.get(name) == os.environ[name] or name in NEUTRALIZED_ENV:
            continue
        if name.upper().startswith(PROVIDER_ENV_PREFIXES):
            raise BootError("environment", f"{name} is set; LiteLLM would read a provider credential or setting from "
                                           "it instead of the policy and Vault. Unset it")
    check_transport_environment()
    mode = os.environ.get("LITELLM_MODE")
    if mode is not None and mode != LITELLM_MODE:
        raise BootError("environment", f"LITELLM_MODE is set to a value other than {LITELLM_MODE}; LiteLLM would load "
                                       "a .env file. Unset it")
    os.environ["LITELLM_MODE"] = LITELLM_MODE
    os.environ.update(AWS_FILES_OFF)


def check_transport_environment() -> None:
    """Refuse proxy and TLS variables (TRANSPORT_ENV, ``*_proxy``), then remove CA overrides (NEUTRALIZED_ENV). Also
    run by the operator commands, whose Vault calls carry the operator token and a new secret_id."""
    transport = {name.upper() for name in TRANSPORT_ENV}
    for name in sorted(os.environ):
        if _is_proxy_variable(name):
            raise BootError("environment", f"{name} is set; a proxy would see the Vault credentials and the provider "
                                           "keys. Unset it")
        if name.upper() in transport:
            raise BootError("environment", f"{name} is set; it changes how secrets travel or how TLS is checked. "
                                           "Unset it")
    for name in NEUTRALIZED_ENV:
        if os.environ.pop(name, None) is not None:
            logging.getLogger("gateway.boot").warning(
                "%s removed from the environment: TLS is checked against certifi's bundle (and, for Vault, "
                "GATEWAY_VAULT_CACERT when set)", name)


def import_litellm() -> Any:
    """Import LiteLLM (not its proxy) after the version check, with the settings it reads at import time: without
    them its import fetches a cost map from the internet (and retries for seconds when it cannot)."""
    check_litellm_version()
    for name, value in QUIET_ENV.items():
        os.environ[name] = value
    import litellm

    return litellm


def import_proxy() -> Any:
    """Import LiteLLM's proxy module after the version and environment checks."""
    check_environment()
    import_litellm()
    from litellm.proxy import proxy_server

    return proxy_server


def litellm_params(policy: Policy, model: ModelDeployment, provider_keys: Mapping[str, Secret]) -> dict[str, Any]:
    """One deployment of a policy model as LiteLLM takes it: the provider's protocol (``<kind>/<upstream_model>``), where
    it lives, its credential from Vault, and for Azure the API version. Every value comes from the policy or Vault;
    nothing is left for LiteLLM to look up in the environment (boot refuses the variables it would read)."""
    provider = policy.providers[model.provider]
    if provider.kind == "bedrock":
        # "bedrock/converse/<id>" pins Bedrock's Converse API (LiteLLM would pick another route for some models), signed
        # with SigV4 from the Vault credential for the policy's region. No api_key: with one LiteLLM sends it as a
        # bearer token instead of signing.
        try:
            credential = bedrock_credentials.parse(provider_keys[model.provider].reveal())
        except bedrock_credentials.CredentialShapeError as exc:
            raise BootError("vault read", f"the providers field {model.provider!r} (kind bedrock) {exc}") from None
        return {"model": f"bedrock/converse/{model.upstream_model}", "api_base": provider.api_base,
                "aws_region_name": provider.region, **credential}
    params: dict[str, Any] = {
        # "openai/" speaks chat, text completions and embeddings to any OpenAI-compatible API; "anthropic/" translates
        # chat to Anthropic's Messages API; "azure/<deployment>" calls that Azure OpenAI deployment; "gemini/<model>"
        # translates chat to Google AI Studio's generateContent, with the key in the x-goog-api-key header (never in
        # the URL); "vertex_ai/<model>" to Vertex AI's generateContent, with a bearer token google-auth obtains for
        # the service account.
        "model": f"{provider.kind}/{model.upstream_model}",
        "api_base": provider.api_base,
    }
    if provider.kind == "vertex_ai":
        # The service account's JSON as text: LiteLLM parses it in memory (a text this long cannot name a file, so
        # its "is it a path?" check never opens one) and never falls back to Google's default credentials.
        params.update(vertex_project=provider.project, vertex_location=provider.location,
                      vertex_credentials=provider_keys[model.provider].reveal())
    else:
        params["api_key"] = provider_keys[model.provider].reveal()
    if provider.kind == "azure":
        params["api_version"] = provider.api_version
    return params


# What LiteLLM's router retries, per exception type, for a model with several deployments (its RetryPolicy; the
# number is the policy's ``routing.retries``). Never retried: a client's bad request (400, and its subclasses context
# window and content policy), which would fail the same way at every deployment; and a timeout, because the
# timed-out call reached the provider, which may run it to its bound and bill it, and a client can make any call time
# out (a long answer from a model with a short timeout): each retry would be one more billed call behind a reservation
# that covers one. The timed-out request is charged its whole reservation instead (threat-model TM-T9, TM-T17).
# Everything else (5xx, 502 and connection errors through DefaultRetries, 429, 401, 404) is a failure of the
# deployment, billed by no provider, and goes to another.
CLIENT_ERROR_RETRIES = ("BadRequestErrorRetries", "ContentPolicyViolationErrorRetries", "TimeoutErrorRetries")
PROVIDER_ERROR_RETRIES = ("AuthenticationErrorRetries", "RateLimitErrorRetries",
                          "InternalServerErrorRetries", "ServiceUnavailableErrorRetries", "NotFoundErrorRetries",
                          "DefaultRetries")


def deployment_timeout(policy: Policy, model: PolicyModel) -> float | None:
    """How long one call to one of ``model``'s deployments may take, when the policy sets it below the upstream
    timeout: LiteLLM's proxy gives every call the upstream timeout, and the approval check's hook replaces it with
    this one (:class:`gateway.pipeline.bridge.ApprovalCheck`)."""
    own = model.routing.timeout_seconds if model.deployments is not None else None
    return own if own is not None and own < policy.upstream.timeout_seconds else None


def model_info(policy: Policy, model: PolicyModel, index: int) -> dict[str, Any]:
    """A deployment's ``model_info``: its mode, a stable id, and its cooldown settings. LiteLLM reads the cooldown
    settings here, never from the request (litellm/router_utils/cooldown_handlers.py).

    One deployment: never cooled down (``cooldown_time`` 0; taking it out of rotation would only answer every tenant
    429 for a while, TM-D4). Several: a deployment is taken out of rotation for ``routing.cooldown_seconds`` once more
    than ``routing.allowed_fails`` of its calls failed in a minute. LiteLLM counts only what
    ``_is_cooldown_required`` accepts: 401, 402, 404, 408, 429 and 5xx, never another 4xx (400 bad request, context
    window, content policy, 403, 413, 422), so a client's bad request cannot cool a deployment down for other tenants
    (threat-model TM-D6). The deployment's own ``cooldown_time`` also wins over a provider's Retry-After header."""
    info: dict[str, Any] = {"mode": model.mode, "id": f"{model.name}#{index}"}
    if model.deployments is None:
        info["cooldown_time"] = 0
    else:
        info["cooldown_time"] = model.routing.cooldown_seconds
        info["allowed_fails"] = model.routing.allowed_fails
    return info


def build_config(policy: Policy, master_key: Secret, provider_keys: dict[str, Secret]) -> dict[str, Any]:
    """LiteLLM's config as a dict. It holds secrets: keep it local, drop it after startup."""
    model_list = []
    for model in policy.models:
        for index, deployment in enumerate(model.served_by()):
            params = litellm_params(policy, deployment, provider_keys)
            model_list.append({"model_name": model.name, "litellm_params": params,
                               "model_info": model_info(policy, model, index)})
    several = [model for model in policy.models if model.deployments is not None]
    return {
        "model_list": model_list,
        "general_settings": {
            "master_key": master_key.reveal(),
            "custom_auth": BRIDGE,
            "disable_spend_logs": True,
            "disable_adding_master_key_hash_to_db": True,
            "allow_requests_on_db_unavailable": False,
            "store_model_in_db": False,
            # No proxy in front of LiteLLM is trusted (X-Forwarded-For is never believed, as when unset); saying so
            # explicitly also keeps LiteLLM from warning at every start about Admin UI sign-in limits (that UI is
            # not reachable through the gateway).
            "trusted_proxy_ranges": [],
            # LiteLLM would otherwise call every deployment's api_base (GET /models, with the provider key) at start
            # and every few minutes, outside any request and so outside the approval check: the provider hears from
            # the gateway only for an approved request (TM-E5).
            "disable_model_info_refresh": True,
        },
        "litellm_settings": {
            "telemetry": False,
            "drop_params": False,
            "request_timeout": policy.upstream.timeout_seconds,
            "num_retries": 0,
        },
        # No retries and no fallbacks to other models: one customer request is one provider call, or for a model with
        # several deployments at most 1 + its routing.retries, each to one of its own deployments and only after
        # the previous one failed (threat-model TM-T10, TM-T17). No cooldowns unless some model has several
        # deployments; even then a one-deployment model is never cooled down and a client's bad request cools
        # nothing down (model_info above; TM-D4, TM-D6).
        "router_settings": {"num_retries": 0, "fallbacks": [], "disable_cooldowns": not several,
                            **router_routing(several)},
    }


def router_routing(several: list[PolicyModel]) -> dict[str, Any]:
    """The router settings for the models with several deployments: each one's retry policy, and a routing group
    for each that does not use the default strategy (simple-shuffle)."""
    settings: dict[str, Any] = {}
    if several:
        settings["model_group_retry_policy"] = {
            model.name: {**dict.fromkeys(CLIENT_ERROR_RETRIES, 0),
                         **dict.fromkeys(PROVIDER_ERROR_RETRIES, model.routing.retries)}
            for model in several}
    groups = [{"group_name": f"gateway-routing-{index}", "models": [model.name],
               "routing_strategy": model.routing.strategy}
              for index, model in enumerate(several) if model.routing.strategy != "simple-shuffle"]
    if groups:
        settings["routing_groups"] = groups
    return settings


def build_deployments(policy: Policy, provider_keys: dict[str, Secret]) -> dict[str, tuple[Deployment, ...]]:
    """What the router may call for each policy model (each of its deployments), as the approval check compares it
    (credentials as digests). Mirrors :func:`build_config`'s model list."""
    deployments = {}
    for model in policy.models:
        listed = []
        for served in model.served_by():
            provider = policy.providers[served.provider]
            params = litellm_params(policy, served, provider_keys)
            if provider.kind == "vertex_ai":
                check_vertex_route(model.name, served.upstream_model, provider.location)
            if provider.kind == "bedrock":
                check_bedrock_output_bound(model.name, served.upstream_model)
            account = params.get("vertex_credentials")
            credential = (credential_digest(account) if provider.kind == "vertex_ai" and isinstance(account, str)
                          else call_credential(params, provider.kind))
            if credential is None:
                raise BootError("vault read", f"provider {served.provider!r} has no credential")
            listed.append(Deployment(
                litellm_model=params["model"], api_base=provider.api_base, credential=credential,
                provider=provider.kind,
                timeout=policy.upstream.timeout_seconds, call_timeout=deployment_timeout(policy, model),
                api_version=provider.api_version, vertex_project=provider.project, vertex_location=provider.location,
                region=provider.region,
                fields=forwarded_fields(model.mode, served.upstream_model, provider.kind), label=served.label))
            del params
        deployments[model.name] = tuple(listed)
    return deployments


def model_fields(deployments: Mapping[str, tuple[Deployment, ...]]) -> dict[str, frozenset[str]]:
    """Per model, the request fields every one of its deployments forwards: any of them may serve a request, so the
    pre-flight accepts only what all of them pass on unchanged."""
    return {name: frozenset.intersection(*(d.fields for d in listed)) for name, listed in deployments.items()}


def check_vertex_routes(policy: Policy) -> None:
    """:func:`check_vertex_route` for every vertex_ai deployment of the policy (run by ``serve --check`` as well)."""
    for model in policy.models:
        for served in model.served_by():
            provider = policy.providers[served.provider]
            if provider.kind == "vertex_ai":
                check_vertex_route(model.name, served.upstream_model, provider.location)


def check_vertex_route(name: str, upstream_model: str, location: str | None) -> None:
    """LiteLLM must call a vertex_ai model through the Gemini API at the policy's location: it routes by the model's
    name (partner and Model Garden names go elsewhere), and it silently replaces a location its cost map does not
    list for the model with the first one listed."""
    import_litellm()
    from litellm.llms.vertex_ai.common_utils import VertexAIModelRoute, get_vertex_ai_model_route
    from litellm.llms.vertex_ai.vertex_llm_base import VertexBase

    if get_vertex_ai_model_route(model=upstream_model, litellm_params={}) != VertexAIModelRoute.GEMINI:
        raise BootError("policy", f"model {name!r}: LiteLLM would not call {upstream_model!r} through Vertex AI's "
                                  "Gemini API")
    if VertexBase.get_vertex_region(location, upstream_model) != location:
        raise BootError("policy", f"model {name!r}: LiteLLM would send it to another location than {location!r} "
                                  "(its cost map lists the model's locations)")


def check_bedrock_output_bound(name: str, upstream_model: str) -> None:
    """Refuse a Bedrock model whose max_tokens LiteLLM raises after the approval check: for OpenAI gpt and xAI grok
    models its Converse translation sends at least 16 as inferenceConfig.maxTokens, so Bedrock could bill more output
    than the reservation bounds."""
    import_litellm()
    from litellm.llms.bedrock.chat.converse_transformation import AmazonConverseConfig

    if AmazonConverseConfig._requires_min_max_tokens(upstream_model):
        raise BootError("litellm config", f"model {name!r}: LiteLLM raises max_tokens below 16 to 16 for this Bedrock "
                                          "model after the approval check, which the reservation would not cover; "
                                          "it is not served")


def forwarded_fields(mode: ModelMode, upstream_model: str, kind: ProviderKind = "openai") -> frozenset[str]:
    """The request fields LiteLLM sends on to this upstream model. LiteLLM drops some OpenAI fields without an error
    after its last hook, depending on the model name (``user`` outside OpenAI's own model catalogue,
    ``reasoning_effort`` for models it thinks do not reason, ``dimensions`` before text-embedding-3); the pre-flight
    refuses those instead, so what reaches the provider is what was approved (tests/security/test_differential.py).

    For the translated kinds the list is what LiteLLM maps to the provider's own API (for anthropic: no ``n``,
    ``logprobs``, ``seed``, penalties or ``logit_bias``; for gemini: no ``user``, ``logit_bias`` or ``top_logprobs``;
    for bedrock: what Converse maps for that model id, tools only for the models LiteLLM knows take them), plus
    ``stream_options``: Anthropic, Gemini and Bedrock always stream their usage, and LiteLLM's stream wrapper reads
    ``include_usage`` itself to pass the usage chunk on."""
    allowed = set(ALLOWED_TOP[mode])
    if mode == "chat":
        litellm = import_litellm()
        # LiteLLM answers for Bedrock by route: the Converse one is what the deployment calls.
        named = f"converse/{upstream_model}" if kind == "bedrock" else upstream_model
        supported = set(litellm.get_supported_openai_params(model=named, custom_llm_provider=kind) or ())
        kept = {"model", "messages"} | ({"stream_options"} if kind in ("anthropic", "gemini", "vertex_ai", "bedrock")
                                        else set())
        if kind == "bedrock":
            from litellm.llms.bedrock.common_utils import bedrock_converse_supports_parallel_tool_use_config

            # Converse drops parallel_tool_calls without an error for the models its cost map does not mark.
            if not bedrock_converse_supports_parallel_tool_use_config(upstream_model):
                supported.discard("parallel_tool_calls")
        return frozenset(allowed & (supported | kept))
    if mode == "embedding" and "text-embedding-3" not in upstream_model:
        allowed.discard("dimensions")
    return frozenset(allowed)


# LiteLLM's own per-request hooks for features the gateway does not use, by class name: each would run on every call
# (pre-call and success/failure logging) and find nothing to do, because the gateway's custom_auth returns a bare
# principal (no LiteLLM budgets, limits, sessions or cache permissions) and LiteLLM has no telemetry exporter here.
# The gateway enforces budgets, limits and access itself, before LiteLLM sees the request.
UNUSED_CALLBACKS = {
    "_PROXY_VirtualKeyModelMaxBudgetLimiter": "per-model budgets of LiteLLM keys",
    "_PROXY_MaxParallelRequestsHandler_v3": "rpm/tpm/parallel limits of LiteLLM keys",
    "_PROXY_CacheControlCheck": "cache-control permissions of LiteLLM keys (no cache configured)",
    "_PROXY_MaxIterationsHandler": "per-session iteration caps",
    "_PROXY_MaxBudgetPerSessionHandler": "per-session budgets",
    "PromptCacheObserver": "prompt-cache statistics",
    "ServiceLogging": "service health telemetry",
}
# The callbacks LiteLLM 1.106.12's proxy registers for this configuration. Boot refuses any other set: a new hook
# (from a version change or a config change) must be reviewed before it runs, or is trimmed, on customer traffic.
EXPECTED_CALLBACKS = frozenset(UNUSED_CALLBACKS) | {
    "ResponsesIDSecurity", "SkillsInjectionHook", "_PROXY_SensitiveDataRoutingHandler"}
CALLBACK_LISTS = ("callbacks", "success_callback", "_async_success_callback", "failure_callback",
                  "_async_failure_callback")


def _callback_name(callback: Any) -> str:
    return callback if isinstance(callback, str) else type(callback).__name__


# The router's selector for each routing strategy the policy may name besides simple-shuffle (which has none); LiteLLM
# registers it as a callback (it counts calls in flight, or latencies), so boot expects it when a model uses it.
ROUTING_CALLBACKS = {"least-busy": "LeastBusyLoggingHandler", "latency-based-routing": "LowestLatencyLoggingHandler"}


def routing_callbacks(config: Mapping[str, Any]) -> frozenset[str]:
    """The routing selectors LiteLLM registers for ``config``'s routing groups."""
    groups = config.get("router_settings", {}).get("routing_groups", [])
    return frozenset(ROUTING_CALLBACKS[group["routing_strategy"]] for group in groups)


def trim_per_request_work(routing: frozenset[str] = frozenset()) -> list[str]:
    """Switch off per-request work in LiteLLM that the gateway does not use; returns what was switched off.

    * ``_seed_request_destinations`` routes OpenTelemetry spans to per-tenant destinations. The gateway configures
      no OpenTelemetry; without the optional ``opentelemetry-sdk`` the function's import fails on every request, and
      a failed import is retried, module compilation included, each time (measured: about 6 % of the process's CPU
      under load, docs/benchmarks.md).
    * the hooks in :data:`UNUSED_CALLBACKS`, from every callback list (``function_setup`` re-adds what is still in
      ``litellm.callbacks`` on each call, so that list too).
    """
    import litellm
    from litellm.proxy.auth import user_api_key_auth

    registered = {_callback_name(c) for c in litellm.callbacks}
    expected = EXPECTED_CALLBACKS | routing
    if registered != expected:
        raise BootError("litellm startup", "LiteLLM registered an unexpected set of callbacks: "
                                           f"{sorted(registered ^ expected)}")

    def _no_tenant_destinations(*_args: Any, **_kwargs: Any) -> None:
        return None

    user_api_key_auth._seed_request_destinations = _no_tenant_destinations
    for name in CALLBACK_LISTS:
        current = getattr(litellm, name)
        current[:] = [c for c in current if _callback_name(c) not in UNUSED_CALLBACKS]
    return ["otel_tenant_destinations", *sorted(UNUSED_CALLBACKS)]


def _verify_started(proxy_server: Any, master_key: Secret) -> None:
    from gateway.pipeline import bridge

    if proxy_server.user_custom_auth is not bridge.custom_auth:
        raise BootError("litellm startup", "LiteLLM did not install the gateway's custom_auth bridge")
    held = proxy_server.master_key
    if not isinstance(held, str) or not hmac.compare_digest(held.encode(), master_key.reveal().encode()):
        raise BootError("litellm startup", "LiteLLM does not hold the master key from Vault")
    if proxy_server.llm_router is None:
        raise BootError("litellm startup", "LiteLLM's router did not load the policy's models")
    if proxy_server.prisma_client is not None:
        raise BootError("litellm startup", "LiteLLM connected a database; the gateway allows none")


def install_approval_check(deployments: dict[str, tuple[Deployment, ...]], http_handler: Any = None) -> None:
    """Put the gateway's approval check last in LiteLLM's callbacks, so it sees each call after every other hook.
    ``http_handler`` (from :func:`provider_http_client`) goes to the calls of kinds whose LiteLLM handler would use an
    HTTP client of its own (:data:`OWN_CLIENT_KINDS`)."""
    import litellm

    from gateway.pipeline.bridge import ApprovalCheck

    handlers = {kind: http_handler for kind in OWN_CLIENT_KINDS} if http_handler is not None else {}
    litellm.callbacks[:] = [c for c in litellm.callbacks if not isinstance(c, ApprovalCheck)]
    litellm.callbacks.append(ApprovalCheck(deployments, handlers))


# Kinds whose LiteLLM 1.106.12 handler calls the provider through LiteLLM's own AsyncHTTPHandler (cached per provider,
# following redirects) rather than the OpenAI SDK client in litellm.aclient_session: anthropic
# (litellm/llms/anthropic/chat/handler.py) and gemini (litellm/llms/vertex_ai/gemini/, whose cached handler would
# follow a redirect with x-goog-api-key, and vertex_ai, the same handler with a bearer token) and bedrock
# (litellm/llms/bedrock/chat/converse_handler.py: a redirect would carry the SigV4 Authorization header and the signed
# body elsewhere, replayable at AWS for minutes). openai and azure go through the OpenAI SDK with the gateway's client.
OWN_CLIENT_KINDS = ("anthropic", "gemini", "vertex_ai", "bedrock")


@contextlib.asynccontextmanager
async def litellm_lifespan(
    proxy_server: Any, config: dict[str, Any], master_key: Secret, state: dict[str, Any],
    deployments: dict[str, tuple[Deployment, ...]],
) -> AsyncIterator[None]:
    """Enter LiteLLM's lifespan with ``config`` in memory; ``state`` receives LiteLLM's lifespan state.

    ``config`` is emptied once LiteLLM has read it, so no copy of it outlives the startup, and the copy LiteLLM keeps
    as its config state is stored without secrets (:func:`_without_secrets`).
    """
    proxy_config = proxy_server.proxy_config

    async def in_memory_config(config_file_path: str | None = None) -> dict[str, Any]:
        if config_file_path != SENTINEL_CONFIG_PATH:
            raise RuntimeError("LiteLLM asked for a config file other than the gateway's in-memory config")
        return copy.deepcopy(config)

    def config_state_without_secrets(config: Mapping[str, Any]) -> None:
        type(proxy_config).update_config_state(proxy_config, config=_without_secrets(config))

    llm_app = proxy_server.app
    routing = routing_callbacks(config)  # read now: the config is emptied once LiteLLM has read it
    proxy_config._get_config_from_file = in_memory_config
    proxy_config.update_config_state = config_state_without_secrets
    # Not a secret: where to find the config, and the per-request timeout LiteLLM's proxy passes with every call.
    os.environ["WORKER_CONFIG"] = json.dumps({"config": SENTINEL_CONFIG_PATH,
                                              "request_timeout": config["litellm_settings"]["request_timeout"]})
    quiet_custom_auth_warning()
    try:
        async with contextlib.AsyncExitStack() as entered:
            http_handler = await entered.enter_async_context(
                provider_http_client(config["litellm_settings"]["request_timeout"]))
            with startup_prints_to_log():
                llm_state = await entered.enter_async_context(llm_app.router.lifespan_context(llm_app))
            _forget(proxy_config, config)
            _verify_started(proxy_server, master_key)
            trim_per_request_work(routing)
            install_approval_check(deployments, http_handler)
            # LiteLLM's startup re-levels its loggers; route them through ours (and the redaction) again.
            logs.adopt_library_loggers(logging.getLevelName(logging.getLogger().level))
            state.update(llm_state or {})
            yield
    finally:
        _forget(proxy_config, config)


@contextlib.asynccontextmanager
async def provider_http_client(timeout: float | None = None) -> AsyncIterator[Any]:
    """One HTTP client for every call LiteLLM makes to a provider, owned and closed by the gateway; yields it wrapped
    as LiteLLM's ``AsyncHTTPHandler``, for the handlers that take one (:data:`OWN_CLIENT_KINDS`). ``timeout`` (the
    policy's upstream timeout) is the handler's own: LiteLLM's Gemini handler passes no timeout with a call on a
    client it was given, so without it a Gemini call would wait the client's 600 seconds.

    Without it LiteLLM's text-completion handler builds a new SDK client, with a new aiohttp session, for every request
    and never closes it: one connection and one session per request until the garbage collector finds them. This
    client keeps a bounded pool of connections, follows no redirects, keeps no cookies, and reads nothing from the
    environment (no proxy variables, no ``~/.netrc``). LiteLLM never closes a session set here
    (``litellm.aclient_session``). LiteLLM's own URL validation (it resolves a URL it fetches itself, for token
    counting, and refuses private addresses) must stay on: boot refuses to start without it.
    """
    litellm = import_litellm()
    if getattr(litellm, "user_url_validation", None) is not True:
        raise BootError("litellm startup", "LiteLLM's URL validation (litellm.user_url_validation) is off")
    client = httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(600.0),
                               limits=httpx.Limits(max_connections=512, max_keepalive_connections=64))
    # One client serves every tenant: a cookie a provider sets (load-balancer affinity, say) must not ride along on the
    # next tenant's call. Nothing is ever stored.
    client.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    litellm.aclient_session = client
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    # Built on a bare transport (so it opens nothing of its own: no aiohttp session, no proxy mounts), then given the
    # gateway's client; the handler does not close a client it was given.
    handler = AsyncHTTPHandler(transport=httpx.AsyncHTTPTransport(), follow_redirects=False)
    handler.client = client
    if timeout is not None:
        handler.timeout = httpx.Timeout(timeout)
    try:
        yield handler
    finally:
        litellm.aclient_session = None
        await client.aclose()


def quiet_custom_auth_warning() -> None:
    """LiteLLM warns at every start that with custom_auth, budgets, model-access allowlists and per-model limits of
    its own DB team/project records "will NOT be enforced". There are no such records (LiteLLM has no database
    here), and the gateway enforces credits, model access and rate limits itself before LiteLLM sees a request;
    turning on LiteLLM's common checks instead would add per-request work for nothing. Its warn-once flag is set, and
    one line of ours says what holds."""
    from litellm.proxy.auth import auth_utils

    auth_utils._custom_auth_common_checks_warning_emitted = True
    logging.getLogger("gateway.boot").info(
        "LiteLLM's own budget and access checks are off (custom_auth): the gateway enforces credits, model access "
        "and rate limits before LiteLLM sees a request")


@contextlib.contextmanager
def startup_prints_to_log() -> Iterator[None]:
    """LiteLLM's startup prints to stdout (its ASCII banner, offering no switch, and the list of models): the
    gateway's stdout is its own, so those lines go to the log at DEBUG instead (through the redaction). Only the
    startup is covered: uvicorn does not accept connections before it ends."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        log = logging.getLogger("LiteLLM Proxy.stdout")
        for line in captured.getvalue().splitlines():
            if line.strip():
                log.debug("%s", line)


def _forget(proxy_config: Any, config: dict[str, Any]) -> None:
    os.environ.pop("WORKER_CONFIG", None)
    for swapped in ("_get_config_from_file", "update_config_state"):
        with contextlib.suppress(AttributeError):
            delattr(proxy_config, swapped)
    config.clear()


# What LiteLLM's config state keeps of each deployment's litellm_params: where it routes, never a credential.
CONFIG_STATE_PARAMS = ("model", "api_base", "aws_region_name")


def _without_secrets(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as LiteLLM may keep it for the life of the process: no master key, no provider credential.

    LiteLLM stores a deep copy of the loaded config as ``proxy_config.config`` (its "config state"), and its startup
    keeps another deep copy of that in a local of its lifespan generator, suspended until shutdown. Dropping
    ``proxy_config.config`` after startup would leave that second copy; stripping the secrets before the state is
    stored leaves neither. Nothing on the routes the gateway exposes reads the secrets from the state: LiteLLM reads
    it for team callbacks (``load_team_config``, only for a caller with a team, which the bridge never sets), search
    tools and its config/admin endpoints (unreachable). The master key and router it uses come from the config
    returned to ``load_config``, not from the state.
    """
    state = dict(config)
    general_settings = state.get("general_settings")
    if isinstance(general_settings, Mapping):
        state["general_settings"] = {k: v for k, v in general_settings.items() if k != "master_key"}
    model_list = state.get("model_list")
    if isinstance(model_list, list):
        state["model_list"] = [
            {**entry, "litellm_params": {k: v for k, v in entry.get("litellm_params", {}).items()
                                         if k in CONFIG_STATE_PARAMS}}
            for entry in model_list if isinstance(entry, Mapping)
        ]
    return state
