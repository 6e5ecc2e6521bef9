"""Step: what the pre-flight approved travels with the request, and LiteLLM's final view of the call is checked
against it just before the provider is called.

The gateway and LiteLLM parse a request separately. Any difference between the two readings (a content type LiteLLM
parses as a form, a field LiteLLM reads that we did not, a default it fills in) would let LiteLLM act on something the
pre-flight never approved. So the handoff does not rely on the readings agreeing: the pre-flight writes an
:class:`Approval` (the deployment, the forwarded fields and their values, the output-token bound, the number of
choices, streaming) and LiteLLM's last hook before dispatch (``async_pre_call_deployment_hook``, run after the router
merged the deployment's parameters into the call) hands its keyword arguments to :func:`verify`. Anything that is not
exactly what was approved refuses the call, and so does a call beyond the approval's budget (``max_calls``: one,
plus the policy's retries for a model with several deployments): the provider is never contacted, the client gets
``400 request_mismatch`` and the audit log a ``handoff_mismatch`` entry. A future parser difference therefore fails
closed.

A model with several deployments: each call may go to any one of that model's deployments (never another model's),
with the approved body as that deployment's kind forwards it. The approval records every call (:class:`Attempt`), so
settlement prices the deployment that answered and the log line names it.

Where the approval travels: a context variable set by the handoff. LiteLLM runs the call in the handoff's own task (or
in tasks it creates from it, which copy the context), so the variable is visible there and nowhere else. A call that
reaches the hook without one (an internal LiteLLM call, or a request that bypassed the pipeline) is refused.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from gateway.pipeline.fields import RouteKind
from gateway.pipeline.responses import ALLOWED_TOP as RESPONSES_FIELDS

# The LiteLLM entry point (``@client``-wrapped function) each route's call must go through.
CALL_TYPES = {"chat": "acompletion", "completion": "atext_completion", "embedding": "aembedding",
              "responses": "aresponses"}

# The deployment parameters the router merges into every call from the policy's model list (boot's build_config).
DEPLOYMENT_PARAMS = frozenset({"model", "api_base", "api_key", "api_version", "vertex_project", "vertex_location",
                               "vertex_credentials"})
# The deployment parameter that carries each kind's credential (the others carry it in api_key; bedrock in the three
# BEDROCK_CREDENTIAL arguments).
CREDENTIAL_PARAM = {"vertex_ai": "vertex_credentials"}
# A bedrock deployment's instead: no api_key (LiteLLM would switch to bearer auth with it) but the AWS credential from
# Vault and the policy's region. Any other aws_* argument (a role, profile, web identity, STS or runtime endpoint) is
# none of these, so the check refuses it like any unknown argument.
BEDROCK_CREDENTIAL = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
BEDROCK_PARAMS = frozenset({"model", "api_base", *BEDROCK_CREDENTIAL, "aws_region_name"})

# LiteLLM's own arguments, added by its proxy and router to every call on the gateway's three routes (1.106.12, read
# from its source and seen in tests/functional/test_approval.py), each with the only values it may carry. None of them
# may select a provider, host, credential or price: those are the deployment parameters above, whose values are
# checked. Any other argument that is not an approved body field refuses the call.


def _anything(_value: Any, _deployment: Deployment) -> bool:
    return True


def _off(value: Any, _deployment: Deployment) -> bool:
    return value is None or value is False


def _no_retries(value: Any, _deployment: Deployment) -> bool:
    return value is None or value == 0


def _within_timeout(value: Any, deployment: Deployment) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                             and 0 < value <= deployment.timeout)


def _proxy_metadata(value: Any, _deployment: Deployment) -> bool:
    # Built by LiteLLM's proxy from the principal (the pre-flight refuses a client's metadata): only keys it writes.
    if value is None:
        return True
    if not isinstance(value, dict) or not all(key in METADATA_KEYS for key in value):
        return False
    requester = value.get("requester_metadata")
    return requester is None or (isinstance(requester, dict) and set(requester) <= REQUESTER_METADATA_KEYS)


METADATA_KEYS = frozenset({
    "_routing_request_tags", "actor_agent_id", "agent_execution_mode", "agent_id", "api_base", "attempted_fallbacks",
    "attempted_retries", "billing_agent_id", "caching_groups", "caller_tags", "deployment", "deployment_model_name",
    "endpoint", "global_max_parallel_requests", "headers", "inherited_tags", "litellm_api_version",
    "litellm_parent_otel_span", "litellm_received_at", "litellm_roi_estimator", "llm_api_timing_windows",
    "max_retries", "model_group", "model_group_alias", "model_group_size", "model_info", "original_model_group",
    "queue_time_seconds", "requester_ip_address", "requester_metadata", "target_agent_id", "used_client_oauth_token",
    "user_agent", "user_api_end_user_max_budget", "user_api_key", "user_api_key_alias", "user_api_key_auth",
    "user_api_key_auth_metadata", "user_api_key_budget_reset_at", "user_api_key_end_user_id",
    "user_api_key_end_user_model_max_budget", "user_api_key_hash", "user_api_key_max_budget", "user_api_key_metadata",
    "user_api_key_model_max_budget", "user_api_key_object_permission_id", "user_api_key_org_alias",
    "user_api_key_org_id", "user_api_key_project_alias", "user_api_key_project_id", "user_api_key_request_route",
    "user_api_key_spend", "user_api_key_team_alias", "user_api_key_team_id", "user_api_key_team_max_budget",
    "user_api_key_team_metadata", "user_api_key_team_model_max_budget", "user_api_key_team_object_permission_id",
    "user_api_key_team_spend", "user_api_key_user_email", "user_api_key_user_id", "user_api_key_user_max_budget",
    "user_api_key_user_model_max_budget", "user_api_key_user_spend", "verified_human_user_id",
    # The router's record of earlier attempts, on a retry to another deployment (Router.log_retry).
    "previous_models", "request_retry_count", "routing_decision",
})
# LiteLLM copies a client's own ``metadata`` here; the pre-flight refuses one, so only what the proxy adds remains.
REQUESTER_METADATA_KEYS = frozenset({"headers", "used_client_oauth_token"})

LITELLM_OWN: dict[str, Any] = {
    # Opaque bookkeeping: ids, the logging object, the parsed request, HTTP clients and sessions.
    "litellm_call_id": _anything, "litellm_logging_obj": _anything, "litellm_trace_id": _anything,
    "proxy_server_request": _anything, "secret_fields": _anything, "shared_session": _anything,
    "client": _anything, "_context_compaction_state": _anything, "model_info": _anything,
    "metadata": _proxy_metadata, "litellm_metadata": _proxy_metadata,
    # Switches that would change where or how the call goes: only their off values.
    "caching": _off, "use_in_pass_through": _off, "use_litellm_proxy": _off, "use_xai_oauth": _off,
    "merge_reasoning_content_in_choices": _off, "allow_client_keepalive_override": _off,
    "max_retries": _no_retries, "num_retries": _no_retries,
    "timeout": _within_timeout, "request_timeout": _within_timeout,
}

# Arguments LiteLLM may add with a default (``stream=False``); their values are checked against the bounds below.
BOUNDS = frozenset({"stream", "max_tokens", "max_completion_tokens", "n", "best_of", "max_output_tokens"})
# Each route's output bound: the arguments LiteLLM sends on as the most tokens the provider may produce.
CHAT_OUTPUT_BOUNDS = ("max_tokens", "max_completion_tokens")
OUTPUT_BOUNDS = {"responses": ("max_output_tokens",)}
ALL_OUTPUT_BOUNDS = (*CHAT_OUTPUT_BOUNDS, "max_output_tokens")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,40}")


def _shown(name: object) -> str:
    """A field name fit for a log line or an audit reason (it may come from the client)."""
    return name if isinstance(name, str) and _SAFE_NAME.fullmatch(name) else "?"


_DIGEST_KEY = os.urandom(32)  # per process: the digests below mean nothing outside it


def credential_digest(value: str) -> bytes:
    """A per-process HMAC of a provider credential, so the check never holds the credential itself."""
    return hmac.new(_DIGEST_KEY, value.encode("utf-8"), hashlib.sha256).digest()


def call_credential(params: Mapping[str, Any], provider: str) -> bytes | None:
    """The digest of the credential in a call's (or a deployment's) parameters, None when it has none: the api_key,
    or for bedrock the AWS access key id, secret key and session token together."""
    if provider == "bedrock":
        values = [params.get(name) for name in BEDROCK_CREDENTIAL]
        if not all(isinstance(v, str) for v in values[:2]) or not isinstance(values[2], str | None):
            return None
        return credential_digest(json.dumps(values))
    key = params.get("api_key")
    return credential_digest(key) if isinstance(key, str) else None


@dataclasses.dataclass(frozen=True, slots=True)
class Deployment:
    """What the router must call for one policy model: built at boot from the policy and Vault."""

    litellm_model: str  # e.g. "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "azure/<deployment>"
    api_base: str
    credential: bytes  # credential_digest() of the provider key
    provider: str  # LiteLLM's provider name, the policy's kind ("openai", "anthropic", "azure")
    timeout: float  # the policy's upstream timeout: the longest a call may be given
    fields: frozenset[str]  # the body fields LiteLLM forwards to this deployment (others it would drop silently)
    api_version: str | None = None  # Azure's API version from the policy; None for the other kinds
    label: str = ""  # the policy's provider name and upstream model ("azure_eu:gpt4o-prod"), for logs and prices
    call_timeout: float | None = None  # the model's routing.timeout_seconds, when below ``timeout``
    vertex_project: str | None = None  # Vertex AI's project and location from the policy; None for the other kinds
    vertex_location: str | None = None
    region: str | None = None  # Bedrock's AWS region from the policy; None for the other kinds


@dataclasses.dataclass(slots=True)
class Attempt:
    """One provider call the check let through: to which deployment, and whether it then failed (set by the bridge's
    failure hook, from LiteLLM's exception: ``True`` once the call ended in an error)."""

    deployment: str  # Deployment.label
    failed: bool = False


class HandoffMismatch(Exception):
    """LiteLLM was about to send something other than what the pre-flight approved (the reason is a short code)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(slots=True, eq=False)
class Approval:
    """One request's approval. Written by the pre-flight; ``dispatched`` and ``mismatch`` by the check."""

    request_id: str
    key_id: str
    model: str  # the policy model name
    mode: RouteKind
    body: Mapping[str, Any]  # the canonical body handed to LiteLLM (after shaping)
    output_bound: int | None  # max tokens per choice; None for embeddings
    choices: int
    stream: bool
    dispatched: bool = False  # the check passed: LiteLLM went on to call the provider
    mismatch: str | None = None  # the check refused: why (a code, never a value)
    max_calls: int = 1  # provider calls this approval allows: 1 + the model's retries (policy)
    attempts: list[Attempt] = dataclasses.field(default_factory=list)  # each call let through, in order

    @property
    def served_by(self) -> str | None:
        """The deployment of the last call let through: the one whose answer the client got, if any did."""
        return self.attempts[-1].deployment if self.attempts else None


CURRENT: contextvars.ContextVar[Approval | None] = contextvars.ContextVar("gateway_approval", default=None)


def _refuse(approval: Approval | None, reason: str) -> HandoffMismatch:
    if approval is not None and approval.mismatch is None:
        approval.mismatch = reason
    return HandoffMismatch(reason)


def _bound(kwargs: Mapping[str, Any], name: str) -> int | None:
    value = kwargs.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise HandoffMismatch(f"{name}_type")
    return value


def verify(kwargs: Mapping[str, Any], call_type: str | None,
           deployments: Mapping[str, tuple[Deployment, ...]]) -> tuple[Approval, Deployment]:
    """Raise :class:`HandoffMismatch` unless ``kwargs`` (LiteLLM's arguments for the provider call) are exactly what
    the request's approval allows; record the call otherwise, and return the approval and the deployment called."""
    approval = CURRENT.get()
    if approval is None:
        raise _refuse(None, "no_approval")
    if approval.mismatch is not None:
        # Once a call was refused, every later one under this approval is too (a retry must not get past a refusal).
        raise _refuse(approval, approval.mismatch)
    if len(approval.attempts) >= approval.max_calls:
        # The policy's budget of calls per request (one, plus its retries between deployments): a further retry
        # LiteLLM would make (say, from a num_retries it read that the pre-flight never saw) would call the provider
        # again for a request reserved once.
        raise _refuse(approval, "second_call")
    if approval.attempts and not approval.attempts[-1].failed:
        # A retry follows a call that ended in an error (the bridge's failure hook marks it first). A call while the
        # previous one is still running or succeeded would be a hedged or duplicate call, billed twice.
        raise _refuse(approval, "overlapping_call")
    try:
        deployment = _verify(approval, kwargs, call_type, deployments)
    except HandoffMismatch as mismatch:
        raise _refuse(approval, mismatch.reason) from None
    approval.dispatched = True
    approval.attempts.append(Attempt(deployment.label))
    return approval, deployment


def _target(kwargs: Mapping[str, Any], candidates: tuple[Deployment, ...]) -> Deployment:
    """The one of ``candidates`` (the approved model's deployments) that ``kwargs`` call: the policy's upstream model,
    host, API version, Vertex AI project and location, Bedrock region, and credential, all of the same deployment,
    nothing a request could have put there. For Vertex AI the credential is the service-account JSON google-auth gets
    the bearer token for (its token cache is keyed by this very JSON, so a matching JSON is a token of the policy's
    account); for Bedrock, the AWS key id, secret and session token together (call_credential)."""
    reason = "model"
    for deployment in candidates:
        if kwargs.get("model") != deployment.litellm_model:
            continue
        bedrock = deployment.provider == "bedrock"
        credential = None if bedrock else CREDENTIAL_PARAM.get(deployment.provider, "api_key")
        others = sorted(name for name in ("api_key", "vertex_credentials")
                        if name != credential and kwargs.get(name) is not None)
        if kwargs.get("api_base") != deployment.api_base:
            reason = "api_base"
        elif kwargs.get("api_version") != deployment.api_version:
            reason = "api_version"
        elif kwargs.get("vertex_project") != deployment.vertex_project:
            reason = "vertex_project"
        elif kwargs.get("vertex_location") != deployment.vertex_location:
            reason = "vertex_location"
        elif bedrock and kwargs.get("aws_region_name") != deployment.region:
            reason = "aws_region_name"
        elif others:
            reason = others[0]
        else:
            if bedrock:
                digest = call_credential(kwargs, "bedrock")
            else:
                key = kwargs.get(credential or "api_key")
                digest = credential_digest(key) if isinstance(key, str) else None
            if digest is not None and hmac.compare_digest(digest, deployment.credential):
                return deployment
            reason = credential or "api_key"
    raise HandoffMismatch(reason)


def _verify(approval: Approval, kwargs: Mapping[str, Any], call_type: str | None,
            deployments: Mapping[str, tuple[Deployment, ...]]) -> Deployment:
    if call_type != CALL_TYPES[approval.mode]:
        raise HandoffMismatch("call_type")
    candidates = deployments.get(approval.model)
    if not candidates:
        raise HandoffMismatch("deployment_unknown")
    deployment = _target(kwargs, candidates)
    deployment_params = BEDROCK_PARAMS if deployment.provider == "bedrock" else DEPLOYMENT_PARAMS
    # The fields: each argument is an approved body field, a deployment parameter or one of LiteLLM's own with an
    # allowed value.
    for name, value in kwargs.items():
        if name in approval.body or name in deployment_params or name in BOUNDS:
            continue
        # The router names the deployment's provider on Responses API calls (only that value: another one would
        # send the call, and the key, elsewhere).
        if name == "custom_llm_provider" and approval.mode == "responses" and value == deployment.provider:
            continue
        allowed = LITELLM_OWN.get(name)
        if allowed is None or not allowed(value, deployment):
            raise HandoffMismatch("field:" + _shown(name))
    # The values: every approved field reaches the call with the approved value (none dropped, none rewritten), and
    # is one LiteLLM forwards to this deployment rather than dropping it after this hook.
    # LiteLLM sends every Responses API field to an OpenAI deployment (its config declares them all supported).
    forwarded = RESPONSES_FIELDS if approval.mode == "responses" else deployment.fields
    for name, value in approval.body.items():
        if name not in forwarded:
            raise HandoffMismatch("not_forwarded:" + _shown(name))
        if name == "model":
            continue  # the policy name was replaced by the deployment's, checked above
        if name not in kwargs or kwargs[name] != value:
            raise HandoffMismatch("value")
    # The bounds the reservation was computed from; an output bound of another route must not be there at all.
    names = OUTPUT_BOUNDS.get(approval.mode, CHAT_OUTPUT_BOUNDS)
    if any(kwargs.get(name) is not None for name in ALL_OUTPUT_BOUNDS if name not in names):
        raise HandoffMismatch("output_bound")
    if approval.output_bound is None:
        if any(kwargs.get(name) is not None for name in names):
            raise HandoffMismatch("output_bound")
    else:
        bounds = [b for b in (_bound(kwargs, name) for name in names) if b is not None]
        if not bounds or max(bounds) > approval.output_bound:
            raise HandoffMismatch("output_bound")
    choices = max(_bound(kwargs, "n") or 1, _bound(kwargs, "best_of") or 1)
    if choices > approval.choices:
        raise HandoffMismatch("choices")
    if bool(kwargs.get("stream")) is not approval.stream:
        raise HandoffMismatch("stream")
    return deployment
