"""The approval check: LiteLLM's final call must be exactly what the pre-flight approved, or it is refused.

threat-model: TM-E5
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.pipeline.approval import (
    CURRENT,
    Approval,
    Deployment,
    HandoffMismatch,
    call_credential,
    credential_digest,
    verify,
)

PROVIDER_KEY = "provider-key-for-the-test"
FIELDS = frozenset({"model", "messages", "max_tokens", "input", "user"})
DEPLOYMENTS = {"chat-model": (Deployment("openai/upstream-chat", "http://127.0.0.1:9/v1",
                                         credential_digest(PROVIDER_KEY), "openai", 600, FIELDS),),
               "other": (Deployment("openai/upstream-other", "http://127.0.0.1:9/v1",
                                    credential_digest(PROVIDER_KEY), "openai", 600, FIELDS),)}
BODY = {"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}


def _approval(**overrides: Any) -> Approval:
    fields: dict[str, Any] = {"request_id": "req_1", "key_id": "key_1", "model": "chat-model", "mode": "chat",
                              "body": BODY, "output_bound": 5, "choices": 1, "stream": False}
    fields.update(overrides)
    return Approval(**fields)


def _call(**overrides: Any) -> dict[str, Any]:
    """LiteLLM's arguments as its router builds them for an approved request (shape seen on 1.106.12)."""
    kwargs: dict[str, Any] = {
        "model": "openai/upstream-chat", "api_base": "http://127.0.0.1:9/v1", "api_key": PROVIDER_KEY,
        "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "stream": False,
        "litellm_call_id": "c", "litellm_logging_obj": object(), "litellm_trace_id": "t", "proxy_server_request": {},
        "secret_fields": {}, "shared_session": None, "_context_compaction_state": object(), "model_info": {"id": "x"},
        "metadata": {"model_group": "chat-model", "deployment": "openai/upstream-chat",
                     "requester_metadata": {"headers": {}}},
        "caching": False, "use_in_pass_through": False, "use_litellm_proxy": False, "use_xai_oauth": False,
        "merge_reasoning_content_in_choices": False, "allow_client_keepalive_override": False,
        "max_retries": 0, "timeout": 600, "request_timeout": 600,
    }
    kwargs.update(overrides)
    return kwargs


def _verify(approval: Approval | None, kwargs: dict[str, Any], call_type: str = "acompletion") -> Approval:
    token = CURRENT.set(approval)
    try:
        return verify(kwargs, call_type, DEPLOYMENTS)[0]
    finally:
        CURRENT.reset(token)


def test_the_approved_call_passes_and_is_marked_dispatched() -> None:
    approval = _approval()
    assert _verify(approval, _call()) is approval
    assert approval.dispatched and approval.mismatch is None


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"model": "openai/upstream-other"}, "model"),
    ({"model": "ollama/upstream-chat"}, "model"),
    ({"api_base": "http://attacker.invalid/v1"}, "api_base"),
    ({"api_key": "sk-attacker"}, "api_key"),
    ({"api_key": None}, "api_key"),
    ({"custom_llm_provider": "ollama"}, "field:custom_llm_provider"),
    ({"extra_headers": {"x": "y"}}, "field:extra_headers"),
    ({"headers": {"authorization": "x"}}, "field:headers"),
    ({"user_config": {}}, "field:user_config"),
    ({"aws_region_name": "us-east-1"}, "field:aws_region_name"),
    ({"temperature": 0.5}, "field:temperature"),
    ({"caching": True}, "field:caching"),
    ({"use_litellm_proxy": True}, "field:use_litellm_proxy"),
    ({"num_retries": 7}, "field:num_retries"),
    ({"timeout": 3600}, "field:timeout"),
    ({"metadata": {"model_group": "chat-model", "api_key": "x", "smuggled": 1}}, "field:metadata"),
    ({"metadata": {"requester_metadata": {"api_base": "http://attacker.invalid"}}}, "field:metadata"),
    ({"litellm_metadata": "x"}, "field:litellm_metadata"),
    ({"messages": [{"role": "user", "content": "something else"}]}, "value"),
    ({"max_tokens": 50}, "value"),
    ({"max_completion_tokens": 6}, "output_bound"),
    ({"n": 2}, "choices"),
    ({"stream": True}, "stream"),
    ({"\u00e9vil\nkey": 1}, "field:?"),
])
def test_any_difference_is_refused_with_a_reason(overrides: dict[str, Any], reason: str) -> None:
    approval = _approval()
    with pytest.raises(HandoffMismatch) as caught:
        _verify(approval, _call(**overrides))
    assert caught.value.reason == reason
    assert approval.mismatch == reason and not approval.dispatched


def test_a_field_litellm_would_drop_later_is_refused() -> None:
    body = {**BODY, "reasoning_effort": "low"}
    approval = _approval(body=body)
    with pytest.raises(HandoffMismatch) as caught:
        _verify(approval, _call(reasoning_effort="low"))
    assert caught.value.reason == "not_forwarded:reasoning_effort"


def test_a_dropped_field_is_refused() -> None:
    kwargs = _call()
    del kwargs["max_tokens"]
    approval = _approval()
    with pytest.raises(HandoffMismatch):
        _verify(approval, kwargs)
    assert approval.mismatch == "value"


def test_the_route_decides_the_call_type() -> None:
    with pytest.raises(HandoffMismatch) as caught:
        _verify(_approval(), _call(), call_type="atext_completion")
    assert caught.value.reason == "call_type"


def test_a_call_without_an_approval_is_refused() -> None:
    with pytest.raises(HandoffMismatch) as caught:
        _verify(None, _call())
    assert caught.value.reason == "no_approval"


def test_embeddings_carry_no_output_bound() -> None:
    body = {"model": "chat-model", "input": "x"}
    approval = _approval(mode="embedding", body=body, output_bound=None)
    kwargs = _call(input="x")
    for name in ("messages", "max_tokens", "stream"):
        kwargs.pop(name)
    assert _verify(approval, kwargs, call_type="aembedding").dispatched
    with pytest.raises(HandoffMismatch):
        _verify(_approval(mode="embedding", body=body, output_bound=None), {**kwargs, "max_tokens": 3},
                call_type="aembedding")


def test_the_approval_is_per_context() -> None:
    """The variable is set by the handoff of one request; another context (another request's task) never sees it."""
    import contextvars

    approval = _approval()
    CURRENT.set(None)
    inner = contextvars.copy_context()
    token = CURRENT.set(approval)
    try:
        with pytest.raises(HandoffMismatch):
            inner.run(verify, _call(), "acompletion", DEPLOYMENTS)
    finally:
        CURRENT.reset(token)


AZURE = {"azure-model": (Deployment("azure/prod-chat", "https://r.openai.azure.com", credential_digest(PROVIDER_KEY),
                                    "azure", 600, FIELDS, api_version="2024-10-21"),)}


@pytest.mark.parametrize(("overrides", "reason"), [
    ({}, None),
    ({"api_version": "2023-05-15"}, "api_version"),  # another API version than the policy's
    ({"api_version": None}, "api_version"),
    ({"model": "azure/other-deployment"}, "model"),
    ({"model": "openai/prod-chat"}, "model"),
    ({"api_base": "https://attacker.openai.azure.com"}, "api_base"),
])
def test_an_azure_call_must_carry_the_policys_deployment_and_api_version(overrides: dict[str, Any],
                                                                        reason: str | None) -> None:
    """threat-model: TM-E6"""
    approval = _approval(model="azure-model", body={**BODY, "model": "azure-model"})
    kwargs = _call(model="azure/prod-chat", api_base="https://r.openai.azure.com", api_version="2024-10-21")
    kwargs.update(overrides)
    token = CURRENT.set(approval)
    try:
        if reason is None:
            assert verify(kwargs, "acompletion", AZURE)[0] is approval
        else:
            with pytest.raises(HandoffMismatch) as caught:
                verify(kwargs, "acompletion", AZURE)
            assert caught.value.reason == reason
    finally:
        CURRENT.reset(token)


def test_an_api_version_on_a_kind_without_one_is_refused() -> None:
    with pytest.raises(HandoffMismatch) as caught:
        _verify(_approval(), _call(api_version="2024-10-21"))
    assert caught.value.reason == "api_version"


SERVICE_ACCOUNT = '{"type": "service_account", "client_email": "gw@proj-one.iam.gserviceaccount.com"}'
VERTEX = {"vertex-model": (Deployment("vertex_ai/gemini-2.5-flash", "https://europe-west4-aiplatform.googleapis.com",
                                      credential_digest(SERVICE_ACCOUNT), "vertex_ai", 600, FIELDS,
                                      vertex_project="proj-one", vertex_location="europe-west4"),)}
BEDROCK_KEY = {"aws_access_key_id": "AKIAAPPROVALTEST001", "aws_secret_access_key": "approval-test-secret-key-0001"}
BEDROCK = {"bedrock-model": (Deployment(
    "bedrock/converse/amazon.nova-lite-v1:0", "https://bedrock-runtime.eu-west-3.amazonaws.com",
    call_credential(BEDROCK_KEY, "bedrock"), "bedrock", 600, FIELDS, region="eu-west-3"),)}


@pytest.mark.parametrize(("overrides", "reason"), [
    ({}, None),
    ({"vertex_project": "proj-attacker"}, "vertex_project"),
    ({"vertex_project": None}, "vertex_project"),
    ({"vertex_location": "us-central1"}, "vertex_location"),
    ({"vertex_location": None}, "vertex_location"),
    # Another account's JSON (its token would be another account's), or none: google-auth would then look for
    # Google's default credentials (environment, gcloud files, the metadata server).
    ({"vertex_credentials": SERVICE_ACCOUNT.replace("gw@", "other@")}, "vertex_credentials"),
    ({"vertex_credentials": None}, "vertex_credentials"),
    ({"api_key": "AIza-attacker"}, "api_key"),
    ({"vertex_ai_project": "proj-attacker"}, "field:vertex_ai_project"),
    ({"vertex_ai_location": "us-central1"}, "field:vertex_ai_location"),
    ({"vertex_ai_credentials": "{}"}, "field:vertex_ai_credentials"),
    ({"use_psc_endpoint_format": True}, "field:use_psc_endpoint_format"),
    ({"model": "vertex_ai/gemini-2.5-pro"}, "model"),
    ({"api_base": "https://attacker.invalid"}, "api_base"),
])
def test_a_vertex_call_must_carry_the_policys_project_location_and_service_account(overrides: dict[str, Any],
                                                                                   reason: str | None) -> None:
    """threat-model: TM-E8"""
    approval = _approval(model="vertex-model", body={**BODY, "model": "vertex-model"})
    kwargs = _call(model="vertex_ai/gemini-2.5-flash", api_base="https://europe-west4-aiplatform.googleapis.com",
                   vertex_project="proj-one", vertex_location="europe-west4", vertex_credentials=SERVICE_ACCOUNT)
    del kwargs["api_key"]
    kwargs.update(overrides)
    token = CURRENT.set(approval)
    try:
        if reason is None:
            assert verify(kwargs, "acompletion", VERTEX)[0] is approval
        else:
            with pytest.raises(HandoffMismatch) as caught:
                verify(kwargs, "acompletion", VERTEX)
            assert caught.value.reason == reason
    finally:
        CURRENT.reset(token)


@pytest.mark.parametrize(("overrides", "reason"), [
    ({}, None),
    ({"aws_region_name": "us-east-1"}, "aws_region_name"),  # another region than the policy's
    ({"aws_region_name": None}, "aws_region_name"),
    ({"model": "bedrock/converse/anthropic.claude-3-opus-20240229-v1:0"}, "model"),
    ({"model": "bedrock/invoke/amazon.nova-lite-v1:0"}, "model"),
    ({"api_base": "https://bedrock-runtime.us-east-1.amazonaws.com"}, "api_base"),
    ({"aws_secret_access_key": "another-secret-key-000000001"}, "api_key"),
    ({"aws_access_key_id": "AKIAANOTHERKEY000001"}, "api_key"),
    ({"aws_session_token": "a-session-token-from-elsewhere"}, "api_key"),
    ({"aws_access_key_id": None}, "api_key"),
    # LiteLLM's other sources of AWS credentials and hosts, and its bearer-token switch.
    ({"api_key": "bearer-token"}, "api_key"),
    ({"aws_role_name": "arn:aws:iam::1:role/x"}, "field:aws_role_name"),
    ({"aws_profile_name": "prod"}, "field:aws_profile_name"),
    ({"aws_web_identity_token": "t"}, "field:aws_web_identity_token"),
    ({"aws_sts_endpoint": "https://sts.example"}, "field:aws_sts_endpoint"),
    ({"aws_bedrock_runtime_endpoint": "https://attacker.example"}, "field:aws_bedrock_runtime_endpoint"),
    ({"model_id": "arn:aws:bedrock:us-east-1::foundation-model/x"}, "field:model_id"),
])
def test_a_bedrock_call_must_carry_the_policys_model_region_endpoint_and_vault_credential(
        overrides: dict[str, Any], reason: str | None) -> None:
    """threat-model: TM-E7"""
    approval = _approval(model="bedrock-model", body={**BODY, "model": "bedrock-model"})
    kwargs = _call(model="bedrock/converse/amazon.nova-lite-v1:0",
                   api_base="https://bedrock-runtime.eu-west-3.amazonaws.com", aws_region_name="eu-west-3",
                   **BEDROCK_KEY)
    del kwargs["api_key"]
    kwargs.update(overrides)
    token = CURRENT.set(approval)
    try:
        if reason is None:
            assert verify(kwargs, "acompletion", BEDROCK)[0] is approval
        else:
            with pytest.raises(HandoffMismatch) as caught:
                verify(kwargs, "acompletion", BEDROCK)
            assert caught.value.reason == reason
    finally:
        CURRENT.reset(token)


@pytest.mark.parametrize("name", ["vertex_project", "vertex_location", "vertex_credentials"])
def test_a_vertex_setting_on_another_kind_is_refused(name: str) -> None:
    with pytest.raises(HandoffMismatch) as caught:
        _verify(_approval(), _call(**{name: "proj-attacker"}))
    assert caught.value.reason == name


@pytest.mark.parametrize("field", ["aws_access_key_id", "aws_region_name", "aws_session_token"])
def test_aws_arguments_on_another_kind_are_refused(field: str) -> None:
    """threat-model: TM-E7"""
    with pytest.raises(HandoffMismatch) as caught:
        _verify(_approval(), _call(**{field: "AKIAANOTHERKEY000001"}))
    assert caught.value.reason == "field:" + field
