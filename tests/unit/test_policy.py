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
    ("version: 1\nproviders: {p: {api_base: 'http://x'}}\nmodels: [{name: m, provider: q, upstream_model: m}]",
     "unknown provider"),
    (("version: 1\nproviders: {p: {api_base: 'http://x'}}\nmodels: [{name: m, provider: p, upstream_model: m},"
      " {name: m, provider: p, upstream_model: n}]"), "listed twice"),
    ("version: 1\nproviders: {p: {api_base: 'http://x', api_key: 'sk-oops'}}\nmodels: []", "providers.p.api_key"),
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
    path.write_text("version: 1\nproviders: {p: {api_base: 'http://x'}}\n"
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
