"""Kind bedrock at boot: LiteLLM's configuration (Converse, the policy's endpoint and region, the AWS credential from
Vault in memory and nothing else), the credential's shape, its price, and proof that with the credential given
explicitly LiteLLM and botocore consult no other source: no environment variable (boot refuses them), no shared config
or credentials file, no credential process, no instance metadata service.

threat-model: TM-S8, TM-E7
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.boot import bedrock_credentials, litellm_mount
from gateway.boot.errors import BootError
from gateway.boot.prices import resolve_deployment_prices, resolve_prices
from gateway.boot.secret import Secret
from gateway.pipeline.approval import call_credential
from gateway.policy import Policy, load_policy

POLICY = """version: 1
providers:
  b: {kind: bedrock, region: eu-west-3}
  s: {kind: bedrock, region: us-east-1, api_base: 'http://127.0.0.1:9'}
models:
  - {name: b, provider: b, upstream_model: 'us.anthropic.claude-3-5-sonnet-20240620-v1:0'}
  - {name: nova, provider: b, upstream_model: 'amazon.nova-lite-v1:0'}
  - {name: s, provider: s, upstream_model: standin-chat, price: {input_usd_per_million_tokens: '1'}}
"""
KEY = {"aws_access_key_id": "AKIABOOTTEST0000001", "aws_secret_access_key": "boot-test-secret-key-000000001"}
TEMPORARY = {"aws_access_key_id": "ASIABOOTTEST0000002", "aws_secret_access_key": "boot-test-secret-key-000000002",
             "aws_session_token": "boot-test-session-token-0000000002"}


def _policy(tmp_path: Path, text: str = POLICY) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def test_bedrock_is_configured_for_converse_with_the_vault_credential_in_memory(tmp_path: Path) -> None:
    keys = {"b": Secret(json.dumps(KEY)), "s": Secret(json.dumps(TEMPORARY))}
    config = litellm_mount.build_config(_policy(tmp_path), Secret("master"), keys)
    params = {entry["model_name"]: entry["litellm_params"] for entry in config["model_list"]}
    assert params["b"] == {"model": "bedrock/converse/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
                           "api_base": "https://bedrock-runtime.eu-west-3.amazonaws.com",
                           "aws_region_name": "eu-west-3", **KEY}
    assert params["s"] == {"model": "bedrock/converse/standin-chat", "api_base": "http://127.0.0.1:9",
                           "aws_region_name": "us-east-1", **TEMPORARY}
    # No api_key (LiteLLM would send it as a bearer token instead of signing), nothing from the environment.
    assert not any("api_key" in p for p in params.values())
    assert not any(str(v).startswith("os.environ/") for p in params.values() for v in p.values())
    deployments = {name: listed[0] for name, listed in litellm_mount.build_deployments(_policy(tmp_path), keys).items()}
    assert (deployments["b"].provider, deployments["b"].region, deployments["b"].api_base) == (
        "bedrock", "eu-west-3", "https://bedrock-runtime.eu-west-3.amazonaws.com")
    assert deployments["b"].credential == call_credential(KEY, "bedrock")
    assert deployments["s"].credential == call_credential(TEMPORARY, "bedrock") != deployments["b"].credential
    # What Converse maps: tools for the models LiteLLM knows take them; never n, seed, logprobs, user or penalties.
    assert {"messages", "max_tokens", "tools", "tool_choice", "stop", "temperature", "top_p",
            "stream_options"} <= deployments["b"].fields
    assert not {"n", "seed", "logprobs", "user", "logit_bias", "presence_penalty"} & deployments["b"].fields
    assert "tools" not in deployments["s"].fields
    # Converse drops parallel_tool_calls without an error for models LiteLLM's cost map does not mark: refused there.
    assert "parallel_tool_calls" not in deployments["b"].fields | deployments["s"].fields
    # LiteLLM's config state keeps where a deployment routes, never its credential.
    state = litellm_mount._without_secrets({"model_list": config["model_list"]})
    assert state["model_list"][0]["litellm_params"] == {
        "model": "bedrock/converse/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "api_base": "https://bedrock-runtime.eu-west-3.amazonaws.com", "aws_region_name": "eu-west-3"}


@pytest.mark.parametrize(("text", "words"), [
    ("AKIA-not-json", "is not JSON"),
    ('["AKIABOOTTEST0000001", "x"]', "must be a JSON object"),
    ('{"aws_access_key_id": "AKIABOOTTEST0000001"}', "has no 'aws_secret_access_key'"),
    ('{"aws_secret_access_key": "boot-test-secret-key-000000001"}', "has no 'aws_access_key_id'"),
    ('{"aws_access_key_id": "akia-lower-case-0001", "aws_secret_access_key": "boot-test-secret-key-000000001"}',
     "'aws_access_key_id' must be"),
    ('{"aws_access_key_id": "AKIABOOTTEST0000001", "aws_secret_access_key": "short"}',
     "'aws_secret_access_key' must be"),
    ('{"aws_access_key_id": "AKIABOOTTEST0000001", "aws_secret_access_key": "os.environ/AWS_SECRET_ACCESS_KEY"}',
     "'aws_secret_access_key' must be"),
    (('{"aws_access_key_id": "AKIABOOTTEST0000001", "aws_secret_access_key": "boot-test-secret-key-000000001", '
     '"aws_session_token": 7}'), "'aws_session_token' must be"),
    (('{"aws_access_key_id": "AKIABOOTTEST0000001", "aws_secret_access_key": "boot-test-secret-key-000000001", '
     '"aws_role_name": "arn:aws:iam::1:role/admin"}'), "has the key 'aws_role_name'"),
])
def test_a_malformed_credential_is_refused_naming_the_field_never_the_value(tmp_path: Path, text: str,
                                                                           words: str) -> None:
    """threat-model: TM-S8"""
    keys = {"b": Secret(text), "s": Secret(json.dumps(KEY))}
    with pytest.raises(BootError) as caught:
        litellm_mount.build_config(_policy(tmp_path), Secret("master"), keys)
    message = str(caught.value)
    assert words in message and "'b' (kind bedrock)" in message, message
    assert "boot-test-secret" not in message and "AKIABOOTTEST" not in message and "os.environ" not in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("upstream", ["openai.gpt-5-mini-v1:0", "xai.grok-4-fast-v1:0"])
def test_a_model_whose_output_bound_litellm_raises_is_refused(tmp_path: Path, upstream: str) -> None:
    # LiteLLM's Converse translation sends max(max_tokens, 16) for these after the approval check.
    policy = _policy(tmp_path, "version: 1\nproviders: {p: {kind: bedrock, region: us-east-1}}\n"
                               f"models: [{{name: m, provider: p, upstream_model: '{upstream}', "
                               "price: {input_usd_per_million_tokens: '1'}}]\n")
    with pytest.raises(BootError, match="raises max_tokens below 16"):
        litellm_mount.build_deployments(policy, {"p": Secret(json.dumps(KEY))})


def test_prices_come_from_the_cost_map_under_bedrocks_model_id(tmp_path: Path) -> None:
    litellm = litellm_mount.import_litellm()
    # Settlement's price per deployment (the reservation's may be higher: at least the cache-write price, TM-T17).
    prices = {name: next(iter(listed.values())) for name, listed in resolve_deployment_prices(_policy(tmp_path)).items()}
    for name, model_id in (("b", "us.anthropic.claude-3-5-sonnet-20240620-v1:0"), ("nova", "amazon.nova-lite-v1:0")):
        entry = litellm.model_cost[model_id]
        assert (prices[name].input_per_million, prices[name].output_per_million) == (
            round(entry["input_cost_per_token"] * 1e12), round(entry["output_cost_per_token"] * 1e12))
    assert prices["s"].input_per_million == 1_000_000


@pytest.mark.parametrize("upstream", ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "standin-chat"])
def test_a_bedrock_model_without_a_bedrock_price_is_refused(tmp_path: Path, upstream: str) -> None:
    policy = _policy(tmp_path, "version: 1\nproviders: {p: {kind: bedrock, region: us-east-1}}\n"
                               f"models: [{{name: m, provider: p, upstream_model: {upstream}}}]\n")
    with pytest.raises(BootError, match="no price in the policy and none in LiteLLM's cost map"):
        resolve_prices(policy)


@pytest.mark.parametrize("name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                  "AWS_BEARER_TOKEN_BEDROCK", "AWS_REGION", "AWS_REGION_NAME", "AWS_DEFAULT_REGION",
                                  "AWS_BEDROCK_RUNTIME_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ROLE_NAME",
                                  "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_STS_ENDPOINT",
                                  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_SHARED_CREDENTIALS_FILE",
                                  "AWS_EC2_METADATA_SERVICE_ENDPOINT", "aws_access_key_id",
                                  "BEDROCK_MANTLE_API_BASE"])
def test_aws_variables_are_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """threat-model: TM-E7"""
    for existing in list(os.environ):
        if existing.upper().startswith(litellm_mount.PROVIDER_ENV_PREFIXES):
            monkeypatch.delenv(existing)
    monkeypatch.setenv(name, "value-from-env")
    with pytest.raises(BootError) as caught:
        litellm_mount.check_environment()
    assert name in str(caught.value) and "value-from-env" not in str(caught.value)


def test_boot_turns_botocores_files_and_metadata_service_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """threat-model: TM-E7"""
    for existing in list(os.environ):
        if existing.upper().startswith(litellm_mount.PROVIDER_ENV_PREFIXES):
            monkeypatch.delenv(existing)
    for name in (*litellm_mount.AWS_FILES_OFF, "LITELLM_MODE"):
        monkeypatch.delenv(name, raising=False)
    litellm_mount.check_environment()
    assert {name: os.environ[name] for name in litellm_mount.AWS_FILES_OFF} == litellm_mount.AWS_FILES_OFF
    litellm_mount.check_environment()  # its own values pass a second check
    monkeypatch.setenv("AWS_CONFIG_FILE", "/home/someone/.aws/config")
    with pytest.raises(BootError, match="AWS_CONFIG_FILE"):
        litellm_mount.check_environment()


@pytest.mark.parametrize("credential", [KEY, TEMPORARY], ids=["access-key", "session-token"])
def test_with_the_credential_given_no_other_source_is_consulted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                credential: dict[str, str]) -> None:
    """threat-model: TM-E7"""
    # A home with every file botocore would read, each naming other credentials, and a credential process that
    # leaves a mark if it ever runs.
    marker = tmp_path / "credential-process-ran"
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text("[default]\naws_access_key_id = AKIAFROMTHEFILE00001\n"
                                     "aws_secret_access_key = from-the-shared-credentials-file\n")
    (aws / "config").write_text(f"[default]\nregion = ap-south-1\ncredential_process = /bin/touch {marker}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in litellm_mount.AWS_FILES_OFF.items():
        monkeypatch.setenv(name, value)
    import botocore.configloader
    import botocore.credentials
    import botocore.utils
    from litellm.llms.bedrock.base_aws_llm import BaseAWSLLM

    read: list[str] = []
    parse = botocore.configloader.raw_config_parse

    def spied_parse(path: str, *args: Any, **kwargs: Any) -> Any:
        read.append(path)
        return parse(path, *args, **kwargs)

    def no_resolver(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("botocore built its chain of credential providers")

    connected: list[object] = []

    def no_connection(address: object, *_args: Any, **_kwargs: Any) -> Any:
        connected.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(botocore.configloader, "raw_config_parse", spied_parse)
    monkeypatch.setattr(botocore.credentials, "create_credential_resolver", no_resolver)
    monkeypatch.setattr(socket, "create_connection", no_connection)
    # A fresh key each run: LiteLLM caches credentials per argument set.
    given = {**credential, "aws_access_key_id": credential["aws_access_key_id"][:4] + secrets.token_hex(8).upper()}
    resolved = BaseAWSLLM().get_credentials(**given, aws_region_name="eu-west-3")
    frozen = resolved.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        given["aws_access_key_id"], given["aws_secret_access_key"], given.get("aws_session_token"))
    assert not marker.exists() and connected == []
    assert not [path for path in read if str(tmp_path) in os.path.expanduser(path)], read
    assert set(read) <= set(litellm_mount.AWS_FILES_OFF.values())


def test_the_credential_parts_are_redacted_from_logs() -> None:
    text = json.dumps(TEMPORARY)
    assert bedrock_credentials.secret_parts(text) == list(TEMPORARY.values())
    assert bedrock_credentials.secret_parts("an-api-key") == []
