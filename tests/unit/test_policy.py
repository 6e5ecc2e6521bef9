"""Policy validation names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

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
