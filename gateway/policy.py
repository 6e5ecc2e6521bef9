"""The gateway policy (policy/*.yaml): which models are exposed, through which provider, and request limits.

Validated at boot; any error names the file and the offending field. The policy holds no secret: provider API keys are
referenced by provider name and resolved from Vault at boot.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")  # matched whole (fullmatch)
# Boot reports a bad deny pattern through PolicyError; RE2 need not also print it to stderr.
_QUIET_RE2 = re2.Options()
_QUIET_RE2.log_errors = False


# The kinds of call a model serves. A Literal rather than an enum, so policy errors and every value read from the
# policy stay plain text.
ModelMode = Literal["chat", "completion", "embedding"]


class PolicyError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The wire protocols a provider may speak (``kind``). ``openai``: any OpenAI-compatible API (the default); ``gemini``:
# Google AI Studio's Gemini API; ``vertex_ai``: Gemini models on Google Cloud's Vertex AI, with a service account's
# OAuth token; ``bedrock``: AWS Bedrock's Converse API.
ProviderKind = Literal["openai", "anthropic", "azure", "gemini", "vertex_ai", "bedrock"]
# Azure OpenAI's dated API versions ("2024-10-21", "2025-01-01-preview"). The undated "v1"/"latest" API takes another
# URL scheme and is not accepted until it is tested here.
AZURE_API_VERSION = re.compile(r"20[0-9]{2}-[01][0-9]-[0-3][0-9](-preview)?")
# An Azure deployment name becomes one segment of the request path: letters, digits, '.', '_' and '-' only.
AZURE_DEPLOYMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A Gemini model name becomes one segment of the request path (".../models/<name>:generateContent"): the same
# characters as an Azure deployment name, so nothing in it can reach another path, query or host.
GEMINI_MODEL = AZURE_DEPLOYMENT
# Gemini's api_base names the API version LiteLLM appends "/models/<model>:generateContent" to; without one LiteLLM
# would build a path Google does not serve.
GEMINI_API_BASE_VERSION = re.compile(r".*/v1(beta|alpha)?")
# Vertex AI: a Google Cloud project id (6 to 30 lower-case letters, digits and hyphens) and a location ("us-central1",
# "europe-west4", the multi-regions "us"/"eu", or "global"); both become path segments of every call, and the location
# picks the default host.
VERTEX_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
VERTEX_LOCATION = re.compile(r"global|[a-z]{2,12}|[a-z]{2,12}-[a-z]{2,12}[0-9]{1,2}")
VERTEX_LOCATION_REQUIRED = ("location is required for kind vertex_ai: a Vertex AI location such as 'us-central1', "
                            "'europe-west4', 'us' or 'global'")
# LiteLLM sends a vertex_ai model to the Gemini API (generateContent) only when its name holds "gemini"; other names
# go to partner, Model Garden or legacy protocols that are not served here.
VERTEX_GEMINI_MODEL = re.compile(r"gemini-[A-Za-z0-9._-]{1,57}")
# An AWS region name ("us-east-1", "eu-central-2", "us-gov-west-1"): it names the default endpoint's host and is signed
# into every request (SigV4), so nothing but lowercase letters, digits and single hyphens.
AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
# A Bedrock model id or inference profile id ("anthropic.claude-3-5-sonnet-20240620-v1:0",
# "us.anthropic.claude-3-5-sonnet-20240620-v1:0"): LiteLLM percent-encodes it into one path segment
# (".../model/<id>/converse"). No '/': an ARN or a "<region>/<model>" prefix would make LiteLLM take another region or
# route from it.
BEDROCK_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# The modes each kind serves here; LiteLLM translates OpenAI's chat API to Anthropic's Messages API and to Gemini's
# generateContent only.
KIND_MODES: dict[str, frozenset[str]] = {
    "openai": frozenset({"chat", "completion", "embedding"}),
    "anthropic": frozenset({"chat"}),
    "azure": frozenset({"chat"}),
    "gemini": frozenset({"chat"}),
    "vertex_ai": frozenset({"chat"}),
    "bedrock": frozenset({"chat"}),
}


def vertex_api_base(location: str) -> str:
    """Google's Vertex AI endpoint for ``location``, as LiteLLM 1.106.12 builds it (get_vertex_base_url)."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if "-" not in location:
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


class Provider(_Strict):
    # The protocol this provider speaks; LiteLLM is configured for it (gateway/boot/litellm_mount.py).
    kind: ProviderKind = "openai"
    # Where this provider's API lives. Only the policy decides this, never a request. openai: the base URL of the
    # OpenAI-compatible API (".../v1"); anthropic: the host (LiteLLM appends /v1/messages); azure: the resource
    # endpoint ("https://RESOURCE.openai.azure.com"); gemini: the API with its version
    # ("https://generativelanguage.googleapis.com/v1beta"; LiteLLM appends /models/<model>:generateContent); vertex_ai:
    # the host without a path, by default Google's endpoint for the location (LiteLLM appends
    # /v1/projects/<project>/locations/<location>/publishers/google/models/<model>:generateContent); bedrock:
    # the bedrock-runtime endpoint (LiteLLM appends /model/<id>/converse), by default the region's own.
    api_base: str
    # azure only, and required there: the API version sent as ?api-version= on every call.
    api_version: str | None = None
    # vertex_ai only, and required there: the Google Cloud project and location every call names.
    project: str | None = None
    location: str | None = None
    # bedrock only, and required there: the AWS region the calls are signed for.
    region: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _vertex_default_api_base(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("kind") == "vertex_ai" and "api_base" not in data:
            location = data.get("location")
            if not isinstance(location, str) or not VERTEX_LOCATION.fullmatch(location):
                raise ValueError(VERTEX_LOCATION_REQUIRED)
            return {**data, "api_base": vertex_api_base(location)}
        return data

    @model_validator(mode="before")
    @classmethod
    def _bedrock_endpoint(cls, data: object) -> object:
        # A bedrock provider without api_base calls its region's own endpoint. Without a valid region there is none:
        # the region's own check below names the field.
        if isinstance(data, dict) and data.get("kind") == "bedrock" and "api_base" not in data:
            region = data.get("region")
            valid = isinstance(region, str) and AWS_REGION.fullmatch(region) is not None
            return {**data, "api_base": bedrock_endpoint(str(region)) if valid else "https://bedrock-runtime.invalid"}
        return data

    @model_validator(mode="after")
    def _kind_settings(self) -> Provider:
        if self.kind == "azure":
            if self.api_version is None:
                raise ValueError("api_version is required for kind azure (for example '2024-10-21')")
            if not AZURE_API_VERSION.fullmatch(self.api_version):
                raise ValueError("api_version must be a dated Azure OpenAI API version such as '2024-10-21' or "
                                 "'2025-01-01-preview'")
        elif self.api_version is not None:
            raise ValueError(f"api_version belongs to kind azure only, not to kind {self.kind}")
        if self.kind == "bedrock":
            if self.region is None:
                raise ValueError("region is required for kind bedrock (for example 'us-east-1')")
            if not AWS_REGION.fullmatch(self.region):
                raise ValueError("region must be an AWS region name such as 'us-east-1'")
        elif self.region is not None:
            raise ValueError(f"region belongs to kind bedrock only, not to kind {self.kind}")
        if self.kind == "anthropic" and self.api_base.endswith(("/v1", "/v1/messages")):
            raise ValueError("for kind anthropic, api_base is the host without /v1 (LiteLLM appends /v1/messages)")
        if self.kind == "vertex_ai":
            if self.project is None or not VERTEX_PROJECT.fullmatch(self.project):
                raise ValueError("project is required for kind vertex_ai: a Google Cloud project id matching "
                                 + VERTEX_PROJECT.pattern)
            if self.location is None or not VERTEX_LOCATION.fullmatch(self.location):
                raise ValueError(VERTEX_LOCATION_REQUIRED)
            if urlsplit(self.api_base).path not in ("", "/"):
                raise ValueError("for kind vertex_ai, api_base is the host without a path (LiteLLM appends "
                                 "/v1/projects/<project>/locations/<location>/...)")
        elif self.project is not None or self.location is not None:
            raise ValueError(f"project and location belong to kind vertex_ai only, not to kind {self.kind}")
        if self.kind == "gemini" and not GEMINI_API_BASE_VERSION.fullmatch(self.api_base):
            raise ValueError("for kind gemini, api_base ends with the API version, for example "
                             "'https://generativelanguage.googleapis.com/v1beta' (LiteLLM appends /models/<model>:...)")
        return self

    @field_validator("api_base")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", value):
            raise ValueError("must be an http(s) URL")
        parts = urlsplit(value)
        if "@" in parts.netloc:
            # A user part is a credential in the policy file; provider keys come from Vault only.
            raise ValueError("must not carry a user part (user:password@); provider keys come from Vault")
        if not parts.hostname:
            raise ValueError("must be an http(s) URL")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            # The provider key and every prompt would cross the network in clear text.
            raise ValueError("plain http is allowed only to a loopback address; use https")
        return value.rstrip("/")


class Price(_Strict):
    # USD per million tokens, as decimal strings ("0.15"); at most 6 decimals (whole micro-USD per million).
    input_usd_per_million_tokens: str
    output_usd_per_million_tokens: str = "0"
    # Anthropic's prompt-cache tokens (usage's cache_creation_input_tokens and cache_read_input_tokens). Unset: the
    # input price (a policy price is the operator's whole statement; the cost map's cache prices are not mixed in).
    cache_write_usd_per_million_tokens: str | None = None
    cache_read_usd_per_million_tokens: str | None = None

    @field_validator("input_usd_per_million_tokens", "output_usd_per_million_tokens",
                     "cache_write_usd_per_million_tokens", "cache_read_usd_per_million_tokens")
    @classmethod
    def _decimal(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^\d{1,7}(\.\d{1,6})?$", value):
            raise ValueError("must be a decimal string such as '0.15' (at most 6 decimals)")
        return value


class ModelDeployment(_Strict):
    """One place a model is served: a provider and the provider's own name for the model there."""

    provider: str
    # The provider's own name for the model; for kind azure, the name of the Azure deployment (which fixes the model).
    upstream_model: str
    # This deployment's price; unset: LiteLLM's cost map under the provider's own name for the model.
    price: Price | None = None

    @field_validator("upstream_model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must match " + _NAME.pattern)
        return value

    @property
    def label(self) -> str:
        """How logs, audit entries and metrics name this deployment: provider name and upstream model, never a
        credential. Provider names have no ':', so the first ':' separates the two."""
        return f"{self.provider}:{self.upstream_model}"


# How LiteLLM's router picks among a model's deployments (litellm/router_strategy/): at random (the default),
# the one with the fewest calls in flight in this process, or the one with the lowest recent latency. Strategies that
# need LiteLLM's usage counters in a cache (usage-based) or prices per deployment (cost-based) are not offered.
RoutingStrategy = Literal["simple-shuffle", "least-busy", "latency-based-routing"]


class Routing(_Strict):
    """How a model with several deployments spreads calls and recovers from a failed one. Only the policy sets this:
    every router field LiteLLM would read from a request is refused (docs/fields.md)."""

    strategy: RoutingStrategy = "simple-shuffle"
    # Further provider calls after a failed one, each to a deployment of this model (LiteLLM's router picks one that
    # is not cooling down). Only provider-side failures are retried (5xx, timeouts, connection errors, 429, 401/403,
    # 404); a client's bad request (400: invalid, context window, content policy) never is.
    retries: int = Field(default=1, ge=0, le=4)
    # How long one call to a deployment may take; unset: upstream.timeout_seconds.
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    # Provider-side failures of one deployment tolerated per minute before it is taken out of rotation, and for how
    # long. A client's bad request never counts (threat-model TM-D6).
    allowed_fails: int = Field(default=0, ge=0, le=1000)
    cooldown_seconds: int = Field(default=30, ge=1, le=3600)


class Model(_Strict):
    name: str  # the name clients send as "model"
    # One deployment: provider, upstream_model and price on the model itself. Several: ``deployments`` instead.
    provider: str | None = None
    # The provider's own name for the model; for kind azure, the name of the Azure deployment (which fixes the model).
    upstream_model: str | None = None
    # Several deployments of this model (the same model at two providers, or two keys of one provider); LiteLLM's
    # router balances and falls back between them as ``routing`` says.
    deployments: list[ModelDeployment] | None = Field(default=None, min_length=1, max_length=16)
    routing: Routing = Routing()
    mode: ModelMode = "chat"
    # Overrides the price from LiteLLM's bundled cost map; required when the upstream model is not in that map.
    price: Price | None = None
    # The output cap: forwarded as max_tokens when the client omits it, and the most a client may ask for.
    max_output_tokens: int = Field(default=4096, ge=1, le=1_000_000)
    # Image input: the most input tokens the provider may bill for one image (at any `detail`). Unset: images are
    # refused for this model, since nothing else bounds their price before dispatch. OpenAI's gpt-4o bills at most
    # 85 + 170 per 512-px tile of a 2048 x 768 image = 1445 tokens; gpt-4o-mini bills about 33 times that (2833 +
    # 5667 per tile): the figure is per model, from the provider's rules, and a low one is the operator's loss.
    max_image_tokens: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("name", "upstream_model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError("must match " + _NAME.pattern)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Model:
        single = (self.provider, self.upstream_model, self.price)
        if self.deployments is None:
            if self.provider is None or self.upstream_model is None:
                raise ValueError("a model needs provider and upstream_model, or a list of deployments")
            if "routing" in self.model_fields_set:
                raise ValueError("routing applies to a model with several deployments; this one has one")
        elif any(value is not None for value in single):
            raise ValueError("a model with deployments sets provider, upstream_model and price on each deployment, "
                             "not on the model")
        elif len({d.label for d in self.deployments}) != len(self.deployments):
            raise ValueError("deployments: the same provider and upstream_model are listed twice")
        return self

    @property
    def max_calls(self) -> int:
        """Provider calls one request may make: one, plus the routing's retries when there are several deployments."""
        return 1 if self.deployments is None else 1 + self.routing.retries

    def served_by(self) -> tuple[ModelDeployment, ...]:
        """The model's deployments: the list, or the one that the single form names."""
        if self.deployments is not None:
            return tuple(self.deployments)
        if self.provider is None or self.upstream_model is None:
            raise PolicyError(f"model {self.name!r} has no deployment")  # refused by _one_form at load
        return (ModelDeployment(provider=self.provider, upstream_model=self.upstream_model, price=self.price),)


class Limits(_Strict):
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_n: int = Field(default=4, ge=1, le=128)
    max_json_depth: int = Field(default=32, ge=4, le=256)
    max_messages: int = Field(default=256, ge=1, le=4096)


class DenyPattern(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    pattern: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _runs_on_re2(self) -> DenyPattern:
        # Guardrails match with RE2 (time linear in the text, threat-model TM-D1). RE2 refuses what would need
        # backtracking (backreferences, lookarounds) and programs over its memory budget; so does boot.
        try:
            re2.compile(self.pattern, _QUIET_RE2)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else ""
            reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
            raise ValueError(f"rule {self.name!r}: RE2 cannot run this pattern ({reason}); deny patterns use RE2 "
                             "syntax, without backreferences or lookarounds") from None
        return self


class RateLimits(_Strict):
    # Defaults for keys created without their own limits.
    default_rpm: int = Field(default=600, ge=1, le=1_000_000)
    default_tpm: int = Field(default=2_000_000, ge=1, le=1_000_000_000)


class KeyPolicy(_Strict):
    # After a rotation the old key keeps working this long, so clients can switch without an outage.
    rotation_grace_seconds: int = Field(default=60, ge=0, le=7 * 86_400)
    # How long a replica may answer from its cached copy of a customer key (0: no cache, one store read per request).
    # A revocation through another replica or the host CLI takes effect here within this bound (threat-model TM-T6).
    cache_ttl_seconds: float = Field(default=0.5, ge=0, le=1.0)


class Guardrails(_Strict):
    secret_scan: bool = True
    deny_patterns: list[DenyPattern] = Field(default_factory=list, max_length=200)


class Cors(_Strict):
    # Browser origins allowed to call /v1 (exact matches, e.g. "https://app.example.com"). Empty: CORS off.
    allow_origins: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.match(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return value


class Upstream(_Strict):
    # How long LiteLLM waits for a provider before the request fails with 504 upstream_timeout. Keep it below
    # credits.reservation_ttl_seconds, so the sweeper never releases a reservation whose request can still finish.
    timeout_seconds: float = Field(default=600, gt=0, le=3600)


class Credits(_Strict):
    # A reservation still open after this long belongs to a request that can no longer finish (its process died):
    # the sweeper releases it. Keep it above LiteLLM's request timeout (600 s).
    reservation_ttl_seconds: int = Field(default=900, ge=1, le=86_400)
    sweep_interval_seconds: int = Field(default=60, ge=1, le=3_600)


class Policy(_Strict):
    version: Literal[1]
    providers: dict[str, Provider]
    models: list[Model] = Field(min_length=1)
    limits: Limits = Limits()
    credits: Credits = Credits()
    upstream: Upstream = Upstream()
    guardrails: Guardrails = Guardrails()
    rate_limits: RateLimits = RateLimits()
    keys: KeyPolicy = KeyPolicy()
    cors: Cors = Cors()

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, Provider]) -> dict[str, Provider]:
        for name in value:
            if not re.match(r"^[a-z][a-z0-9_]{0,63}$", name):
                raise ValueError(f"provider name {name!r} must match ^[a-z][a-z0-9_]{{0,63}}$")
        return value

    @model_validator(mode="after")
    def _timeouts(self) -> Policy:
        if self.upstream.timeout_seconds >= self.credits.reservation_ttl_seconds:
            raise ValueError("upstream.timeout_seconds must be below credits.reservation_ttl_seconds")
        return self

    @model_validator(mode="after")
    def _references(self) -> Policy:
        seen: set[str] = set()
        for model in self.models:
            for index, deployment in enumerate(model.served_by()):
                # Errors name the deployment's place in the list when the model has several.
                where = f"model {model.name!r}" + (f" deployments.{index}" if model.deployments is not None else "")
                self._check_deployment(where, model.mode, deployment)
            if model.name in seen:
                raise ValueError(f"model {model.name!r} is listed twice")
            seen.add(model.name)
        return self

    def _check_deployment(self, where: str, mode: ModelMode, deployment: ModelDeployment) -> None:
        if deployment.provider not in self.providers:
            raise ValueError(f"{where} names unknown provider {deployment.provider!r}")
        kind = self.providers[deployment.provider].kind
        if mode not in KIND_MODES[kind]:
            raise ValueError(f"{where}: a provider of kind {kind} serves "
                             f"{', '.join(sorted(KIND_MODES[kind]))} here, not {mode}")
        if kind == "azure" and not AZURE_DEPLOYMENT.fullmatch(deployment.upstream_model):
            raise ValueError(f"{where}: upstream_model is the Azure deployment name and must match "
                             + AZURE_DEPLOYMENT.pattern)
        if kind == "gemini" and not GEMINI_MODEL.fullmatch(deployment.upstream_model):
            raise ValueError(f"{where}: upstream_model is the Gemini model name (without 'models/') "
                             "and must match " + GEMINI_MODEL.pattern)
        if kind == "vertex_ai" and not VERTEX_GEMINI_MODEL.fullmatch(deployment.upstream_model):
            raise ValueError(f"{where}: upstream_model is a Gemini model name on Vertex AI and must "
                             "match " + VERTEX_GEMINI_MODEL.pattern)
        if kind == "bedrock" and not BEDROCK_MODEL.fullmatch(deployment.upstream_model):
            raise ValueError(f"{where}: upstream_model is the Bedrock model id or inference profile id "
                             "(not an ARN) and must match " + BEDROCK_MODEL.pattern)

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def kind(self, model: Model) -> ProviderKind:
        """The protocol of the provider of ``model``'s first deployment (``/v1/models`` reports it as owned_by)."""
        return self.providers[model.served_by()[0].provider].kind

    def kinds(self, model: Model) -> frozenset[ProviderKind]:
        """The protocols of every deployment of ``model``: a request must suit each, since any may serve it."""
        return frozenset(self.providers[d.provider].kind for d in model.served_by())

    def provider_names(self) -> set[str]:
        """The providers some model's deployment uses (their credentials are read from Vault)."""
        return {d.provider for model in self.models for d in model.served_by()}

    def model(self, name: str) -> Model:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


def bedrock_endpoint(region: str) -> str:
    """The bedrock-runtime endpoint of an AWS region (the standard partition; others set api_base)."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address: the only hosts plain http may reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Deeper than any policy needs; PyYAML's composer recurses once per level and would hit Python's recursion limit.
MAX_YAML_DEPTH = 32


class _PolicyYamlError(Exception):
    pass


class _PolicyLoader(yaml.SafeLoader):
    """Safe YAML, plus: a key given twice in one mapping is refused (YAML would keep the last one silently, so a
    reviewer could read one setting and the gateway apply another), and nesting is bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                # PyYAML's stubs leave Parser.peek_event untyped; it returns the next event, which has a mark.
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise _PolicyYamlError(f"nested deeper than {MAX_YAML_DEPTH} levels (line {line})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the constructor below refuses it
            if duplicate:
                raise _PolicyYamlError(f"key {str(key)[:64]!r} appears twice in one mapping "
                                       f"(line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str) -> object:
    loader = _PolicyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_policy(path: Path) -> Policy:
    try:
        raw = _read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist") from None
    except _PolicyYamlError as exc:
        raise PolicyError(f"policy file {path}: {exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"policy file {path} cannot be read as YAML ({type(exc).__name__})") from None
    except RecursionError:
        raise PolicyError(f"policy file {path} is nested too deeply") from None
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise PolicyError(f"policy file {path}: {where}: {first['msg']}") from None
