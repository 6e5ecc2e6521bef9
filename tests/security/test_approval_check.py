"""With the real LiteLLM: when LiteLLM reads a request differently from the pre-flight, the provider is never called.

The probe (approval_probe.py, in a child process) replaces the bytes LiteLLM parses after the pre-flight approved
the request, once per kind of difference a parser disagreement could make.

threat-model: TM-E5
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.devstack.openbao import free_port
from tests.security.approval_probe import ROUTES
from tests.support import REPO, Stack, StandIn, any_listed

pytestmark = pytest.mark.slow

# A response id LiteLLM did not issue, read as previous_response_id: LiteLLM's own handling of it fails first.
REFUSED_BY_LITELLM = {("/v1/responses", "state")}


def test_a_differing_reading_is_refused_before_the_provider(stack: Stack, standin: StandIn, tmp_path: Path) -> None:
    env = stack.env(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}", free_port())
    standin.recorder.clear()
    result = subprocess.run([sys.executable, str(REPO / "tests/security/approval_probe.py")], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE-REPORT "))
    report = json.loads(line.removeprefix("PROBE-REPORT "))
    results = report["results"]
    refusals = 0
    for path, _approved, differences in ROUTES:
        # The approved reading goes through...
        assert results[f"{path} none"]["status"] == 200, results[f"{path} none"]
        # ...every other reading is refused with our answer, never LiteLLM's or the provider's text.
        for name, _ in differences:
            answer = results[f"{path} {name}"]
            if (path, name) in REFUSED_BY_LITELLM:
                # LiteLLM fails on it before its last hook: still our error, and the provider is not called.
                assert answer["body"]["error"]["code"] == "upstream_error", (path, name, answer)
                continue
            assert answer["status"] == 400, (path, name, answer)
            assert answer["body"]["error"]["code"] == "request_mismatch", (path, name, answer)
            refusals += 1
    # The provider saw exactly the approved calls, one per route, with the approved model, bound and credential.
    calls = [r for r in standin.recorder.all() if r["method"] == "POST"]  # (LiteLLM lists models at boot)
    # Retries LiteLLM read from a body the pre-flight never saw: one provider call at most, and our error.
    assert len([r for r in calls if r["body"]["model"] == "standin-error-500"]) == 1
    assert report["retried"]["status"] in (400, 502), report["retried"]
    assert report["retried"]["body"]["error"]["code"] in ("request_mismatch", "upstream_error")
    upstream = [r for r in calls if r["body"]["model"] != "standin-error-500"]
    assert [(r["path"], r["body"]["model"]) for r in upstream] == [("/v1/chat/completions", "upstream-chat"),
                                                                  ("/v1/responses", "upstream-chat")]
    assert upstream[0]["body"]["max_tokens"] == 5
    assert upstream[1]["body"] == {"model": "upstream-chat", "input": "Hi", "max_output_tokens": 16, "store": False}
    assert all(r["headers"]["authorization"] == f"Bearer {stack.provider_key}" for r in upstream)
    # Each refusal is audited with its reason and released (not charged); only the approved calls are paid for.
    reasons = {reason for event, reason in report["audit"]}
    assert len(report["audit"]) == refusals + 1, report["audit"]  # + the refused retry ("second_call")
    assert {"model", "api_key", "choices", "value", "field:temperature", "field:custom_llm_provider",
            "litellm_refused", "output_bound", "field:use_chat_completions_api", "second_call"} <= reasons, reasons
    assert report["reserved"] == 0
    assert report["ledger"].count("settle") == len(ROUTES)
    # + each approved call's unused remainder
    # (+ the retried call's, released after the provider's error)
    assert report["ledger"].count("release") == refusals + len(REFUSED_BY_LITELLM) + len(ROUTES) + 1
    assert any_listed(result.stdout + result.stderr, stack.canaries) == []
