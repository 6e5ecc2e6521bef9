"""Policy validation names the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import re2

from gateway.policy import PolicyError, load_policy

REPO = Path(__file__).resolve().parents[2]


def test_shipped_policy_is_valid() -> None:
    policy = load_policy(REPO / "policy/gateway.yaml")
    assert policy.model_names() and policy.limits.max_body_bytes == 1024 * 1024


@pytest.mark.parametrize(("text", "words"), [
    ("version: 1\nproviders: {p: {api_base: 'http://127.0.0.1:9'}}\nmodels: [{name: m, provider: q, upstream_model: m}]",
     "unknown provider"),
    (("version: 1\nproviders: {p: {api_base: 'http://127.0.0.1:9'}}\nmodels: [{name: m, provider: p, upstream_model: m},"
      " {name: m, provider: p, upstream_model: n}]"), "listed twice"),
    ("version: 1\nproviders: {p: {api_base: 'http://127.0.0.1:9', api_key: 'sk-oops'}}\nmodels: []", "providers.p.api_key"),
    ("version: 2\nproviders: {}\nmodels: []", "version"),
    ("version: 1\nproviders: {p: {api_base: 'file:///etc/passwd'}}\nmodels: [{name: m, provider: p, upstream_model: m}]",
     "api_base"),
    ("[unclosed", "cannot be read as YAML"),
])
def test_invalid_policies(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert words in str(caught.value) and str(path) in str(caught.value)
    assert "sk-oops" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")


def _with_deny_pattern(tmp_path: Path, pattern: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nproviders: {p: {api_base: 'http://127.0.0.1:9'}}\n"
                    "models: [{name: m, provider: p, upstream_model: m}]\n"
                    f"guardrails: {{deny_patterns: [{{name: no-falcon, pattern: {json.dumps(pattern)}}}]}}\n")
    return path


@pytest.mark.parametrize("pattern", [r"(falcon)\s+\1", r"project(?=\s+falcon)", r"(?<!no )falcon", r"falcon\Z"])
def test_deny_patterns_re2_cannot_run_are_refused_at_boot(tmp_path: Path, pattern: str) -> None:
    # Backreferences and lookarounds need a backtracking engine (threat-model TM-D1); Python's \Z is RE2's \z.
    path = _with_deny_pattern(tmp_path, pattern)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message and "guardrails.deny_patterns.0" in message
    assert "rule 'no-falcon'" in message and "RE2" in message


def test_deny_patterns_in_re2_syntax_load(tmp_path: Path) -> None:
    policy = load_policy(_with_deny_pattern(tmp_path, r"(?i)\bproject\s+falcon\b"))
    rule = policy.guardrails.deny_patterns[0]
    assert re2.compile(rule.pattern).search("Tell me about Project  FALCON")


def _policy_with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


MINIMAL = "version: 1\nproviders: {p: {api_base: 'API_BASE'}}\nmodels: [{name: m, provider: p, upstream_model: m}]\n"


@pytest.mark.parametrize(("text", "key"), [
    (MINIMAL.replace("API_BASE", "https://api.example.com/v1") + "providers: {p: {api_base: 'https://evil.example'}}\n",
     "providers"),
    (("version: 1\nproviders:\n  p:\n    api_base: https://api.example.com/v1\n    api_base: https://evil.example\n"
      "models: [{name: m, provider: p, upstream_model: m}]\n"), "api_base"),
    (MINIMAL.replace("API_BASE", "https://api.example.com/v1") + "limits: {max_n: 1, max_n: 128}\n", "max_n"),
])
def test_duplicate_keys_are_refused_naming_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    """YAML keeps the last of two equal keys; a reviewer would read the first (threat-model: TM-I5)."""
    path = _policy_with(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message and f"key {key!r} appears twice" in message


@pytest.mark.parametrize("api_base", [
    "http://api.example.com/v1", "http://10.0.0.5:8000/v1", "http://127.0.0.1.example.com/v1",
])
def test_plain_http_api_base_off_loopback_is_refused(tmp_path: Path, api_base: str) -> None:
    """The provider key and the prompts would cross the network in clear text (threat-model: TM-I5)."""
    path = _policy_with(tmp_path, MINIMAL.replace("API_BASE", api_base))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value) and "providers.p.api_base" in str(caught.value)
    assert "loopback" in str(caught.value)


@pytest.mark.parametrize("api_base", [
    "https://user:hunter2@api.example.com/v1", "https://token@api.example.com/v1", "http://u:p@127.0.0.1:9/v1",
])
def test_user_part_in_api_base_is_refused(tmp_path: Path, api_base: str) -> None:
    """threat-model: TM-I5"""
    path = _policy_with(tmp_path, MINIMAL.replace("API_BASE", api_base))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "providers.p.api_base" in str(caught.value) and "user part" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("api_base", ["http://127.0.0.1:9/v1", "http://localhost:8000/v1", "http://[::1]:9/v1",
                                      "https://api.example.com/v1"])
def test_https_and_loopback_http_api_bases_load(tmp_path: Path, api_base: str) -> None:
    policy = load_policy(_policy_with(tmp_path, MINIMAL.replace("API_BASE", api_base)))
    assert policy.providers["p"].api_base == api_base.rstrip("/")


@pytest.mark.parametrize("text", [
    "version: 1\nnested: " + "[" * 5000 + "]" * 5000 + "\n",
    "version: 1\nnested: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "version: 1\nnested:\n" + "".join("  " * i + "- \n" for i in range(1, 200)),
])
def test_deep_nesting_is_a_policy_error_naming_the_file(tmp_path: Path, text: str) -> None:
    """threat-model: TM-D1"""
    path = _policy_with(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value) and "nested deeper than" in str(caught.value)


# --- provider kinds ---------------------------------------------------------------------------------------------------

KIND_MODEL = "models: [{name: m, provider: p, upstream_model: my-deployment}]\n"


@pytest.mark.parametrize(("provider", "words"), [
    ("{kind: azure, api_base: 'https://r.openai.azure.com'}", "api_version is required for kind azure"),
    ("{kind: azure, api_base: 'https://r.openai.azure.com', api_version: 'latest'}", "dated Azure OpenAI API version"),
    ("{kind: azure, api_base: 'https://r.openai.azure.com', api_version: '2024-10-21&x=1'}", "dated Azure"),
    ("{kind: anthropic, api_base: 'https://api.anthropic.com', api_version: '2024-10-21'}",
     "api_version belongs to kind azure only"),
    ("{api_base: 'https://api.openai.com/v1', api_version: '2024-10-21'}", "api_version belongs to kind azure only"),
    ("{kind: anthropic, api_base: 'https://api.anthropic.com/v1'}", "without /v1"),
    ("{kind: anthropic}", "api_base"),
    ("{kind: vertex_ai, location: us-central1}", "project is required for kind vertex_ai"),
    ("{kind: vertex_ai, project: 'My_Project', location: us-central1}", "project is required for kind vertex_ai"),
    ("{kind: vertex_ai, project: proj-one, location: 'us-central1/../x'}", "location is required for kind vertex_ai"),
    ("{kind: vertex_ai, project: proj-one}", "location is required for kind vertex_ai"),
    ("{kind: vertex_ai, project: proj-one, location: us-central1, api_base: 'https://vertex.example/v1'}",
     "host without a path"),
    ("{kind: vertex_ai, project: proj-one, location: us-central1, api_base: 'http://vertex.example'}", "plain http"),
    ("{kind: gemini, api_base: 'https://generativelanguage.googleapis.com/v1beta', project: proj-one}",
     "project and location belong to kind vertex_ai only"),
    ("{kind: bedrock, api_base: 'https://bedrock.example'}", "region is required for kind bedrock"),
    ("{kind: bedrock}", "region is required for kind bedrock"),
    ("{kind: bedrock, region: 'US-EAST-1'}", "AWS region name"),
    ("{kind: bedrock, region: 'us-east-1.evil.example'}", "AWS region name"),
    ("{kind: bedrock, region: 'us-east-1/x'}", "AWS region name"),
    ("{kind: bedrock, region: 'us-east-1', api_base: 'http://bedrock.example'}", "plain http"),
    ("{kind: bedrock, region: 'us-east-1', api_base: 'https://k:s@bedrock.example'}", "user part"),
    ("{kind: bedrock, region: 'us-east-1', api_version: '2024-10-21'}", "api_version belongs to kind azure only"),
    ("{kind: anthropic, api_base: 'https://api.anthropic.com', region: 'us-east-1'}",
     "region belongs to kind bedrock only"),
    ("{kind: bedrock, region: 'us-east-1', aws_profile_name: 'prod'}", "providers.p.aws_profile_name"),
    ("{kind: bedrock, region: 'us-east-1', aws_bedrock_runtime_endpoint: 'https://x.example'}",
     "providers.p.aws_bedrock_runtime_endpoint"),
    ("{kind: gemini, api_base: 'https://generativelanguage.googleapis.com'}", "ends with the API version"),
    ("{kind: gemini, api_base: 'https://generativelanguage.googleapis.com/v1beta?key=k'}", "ends with the API version"),
    ("{kind: gemini, api_base: 'https://generativelanguage.googleapis.com/v1beta', api_version: '2024-10-21'}",
     "api_version belongs to kind azure only"),
    ("{kind: anthropic, api_base: 'https://api.anthropic.com', aws_region_name: 'us-east-1'}",
     "providers.p.aws_region_name"),
    ("{kind: azure, api_base: 'http://r.openai.azure.com', api_version: '2024-10-21'}", "plain http"),
])
def test_provider_kind_settings_are_checked(tmp_path: Path, provider: str, words: str) -> None:
    path = _policy_with(tmp_path, f"version: 1\nproviders: {{p: {provider}}}\n{KIND_MODEL}")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert words in str(caught.value) and str(path) in str(caught.value), str(caught.value)
    assert "providers.p" in str(caught.value)


@pytest.mark.parametrize(("provider", "model", "words"), [
    ("{kind: azure, api_base: 'https://r.openai.azure.com', api_version: '2024-10-21'}",
     "{name: m, provider: p, upstream_model: 'dep/../other'}", "Azure deployment name"),
    ("{kind: anthropic, api_base: 'https://api.anthropic.com'}",
     "{name: m, provider: p, upstream_model: claude, mode: embedding}", "serves chat here, not embedding"),
    ("{kind: azure, api_base: 'https://r.openai.azure.com', api_version: '2024-10-21'}",
     "{name: m, provider: p, upstream_model: dep, mode: completion}", "serves chat here, not completion"),
    ("{kind: gemini, api_base: 'https://generativelanguage.googleapis.com/v1beta'}",
     "{name: m, provider: p, upstream_model: 'models/gemini-2.5-flash'}", "Gemini model name"),
    ("{kind: gemini, api_base: 'https://generativelanguage.googleapis.com/v1beta'}",
     "{name: m, provider: p, upstream_model: 'gemini-2.5-flash:streamGenerateContent'}", "Gemini model name"),
    ("{kind: gemini, api_base: 'https://generativelanguage.googleapis.com/v1beta'}",
     "{name: m, provider: p, upstream_model: text-embedding-004, mode: embedding}", "serves chat here, not embedding"),
    ("{kind: vertex_ai, project: proj-one, location: us-central1}",
     "{name: m, provider: p, upstream_model: claude-sonnet-4-5}", "Gemini model name on Vertex AI"),
    ("{kind: vertex_ai, project: proj-one, location: us-central1}",
     "{name: m, provider: p, upstream_model: 'gemini-2.5-flash:rawPredict'}", "Gemini model name on Vertex AI"),
    ("{kind: vertex_ai, project: proj-one, location: us-central1}",
     "{name: m, provider: p, upstream_model: gemini-2.5-flash, mode: embedding}", "serves chat here, not embedding"),
    # A Bedrock model id is one path segment: no ARN, no "<region>/<model>" (LiteLLM would take that region), no
    # other route prefix, nothing that ends the path.
    ("{kind: bedrock, region: us-east-1}",
     "{name: m, provider: p, upstream_model: 'arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0'}",
     "Bedrock model id"),
    ("{kind: bedrock, region: us-east-1}",
     "{name: m, provider: p, upstream_model: 'eu-west-1/amazon.nova-lite-v1:0'}", "Bedrock model id"),
    ("{kind: bedrock, region: us-east-1}",
     "{name: m, provider: p, upstream_model: 'invoke/amazon.nova-lite-v1:0'}", "Bedrock model id"),
    ("{kind: bedrock, region: us-east-1}",
     "{name: m, provider: p, upstream_model: 'amazon.titan-embed-text-v2:0', mode: embedding}",
     "serves chat here, not embedding"),
])
def test_models_fit_their_providers_kind(tmp_path: Path, provider: str, model: str, words: str) -> None:
    path = _policy_with(tmp_path, f"version: 1\nproviders: {{p: {provider}}}\nmodels: [{model}]\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert words in str(caught.value) and str(path) in str(caught.value), str(caught.value)


def test_kinds_load_and_default_to_openai(tmp_path: Path) -> None:
    path = _policy_with(tmp_path, "version: 1\nproviders:\n"
                                  "  o: {api_base: 'https://api.openai.com/v1'}\n"
                                  "  a: {kind: anthropic, api_base: 'https://api.anthropic.com/'}\n"
                                  "  z: {kind: azure, api_base: 'https://r.openai.azure.com', "
                                  "api_version: '2025-01-01-preview'}\n"
                                  "  g: {kind: gemini, api_base: 'https://generativelanguage.googleapis.com/v1beta/'}\n"
                                  "  b: {kind: bedrock, region: eu-central-2}\n"
                                  "  s: {kind: bedrock, region: us-gov-west-1, api_base: 'http://127.0.0.1:9/'}\n"
                                  "models: [{name: o, provider: o, upstream_model: gpt-4o-mini},"
                                  " {name: a, provider: a, upstream_model: claude-sonnet-4-5},"
                                  " {name: z, provider: z, upstream_model: my-gpt-4o},"
                                  " {name: g, provider: g, upstream_model: gemini-2.5-flash},"
                                  " {name: b, provider: b, upstream_model: 'us.anthropic.claude-3-5-sonnet-20240620-v1:0'},"
                                  " {name: s, provider: s, upstream_model: standin-chat}]\n")
    policy = load_policy(path)
    assert [policy.kind(m) for m in policy.models] == ["openai", "anthropic", "azure", "gemini", "bedrock", "bedrock"]
    assert policy.providers["g"].api_base == "https://generativelanguage.googleapis.com/v1beta"
    assert policy.providers["a"].api_base == "https://api.anthropic.com"
    assert policy.providers["z"].api_version == "2025-01-01-preview" and policy.providers["o"].api_version is None
    # A bedrock provider calls its region's own endpoint unless api_base names another (here the stand-in's).
    assert (policy.providers["b"].region, policy.providers["b"].api_base) == (
        "eu-central-2", "https://bedrock-runtime.eu-central-2.amazonaws.com")
    assert (policy.providers["s"].region, policy.providers["s"].api_base) == ("us-gov-west-1", "http://127.0.0.1:9")


@pytest.mark.parametrize(("location", "api_base"), [
    ("us-central1", "https://us-central1-aiplatform.googleapis.com"),
    ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
    ("eu", "https://aiplatform.eu.rep.googleapis.com"),
    ("global", "https://aiplatform.googleapis.com"),
])
def test_vertex_ai_defaults_to_googles_endpoint_for_its_location(tmp_path: Path, location: str, api_base: str) -> None:
    path = _policy_with(tmp_path, f"version: 1\nproviders: {{v: {{kind: vertex_ai, project: proj-one, location: "
                                  f"{location}}}}}\nmodels: [{{name: v, provider: v, upstream_model: gemini-2.5-flash}}]\n")
    provider = load_policy(path).providers["v"]
    assert (provider.kind, provider.project, provider.location, provider.api_base) == (
        "vertex_ai", "proj-one", location, api_base)


def test_vertex_ai_default_endpoint_is_litellms() -> None:
    # The default the policy fills in is the host LiteLLM itself would call for the location.
    from litellm.llms.vertex_ai.common_utils import get_vertex_base_url

    from gateway.policy import vertex_api_base

    for location in ("us-central1", "europe-west4", "asia-northeast1", "us", "eu", "global"):
        assert vertex_api_base(location) == get_vertex_base_url(location)
