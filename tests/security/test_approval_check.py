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
from tests.security.approval_probe import DIFFERENCES
from tests.support import REPO, Stack, StandIn, any_listed

pytestmark = pytest.mark.slow


def test_a_differing_reading_is_refused_before_the_provider(stack: Stack, standin: StandIn, tmp_path: Path) -> None:
    env = stack.env(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}", free_port())
    standin.recorder.clear()
    result = subprocess.run([sys.executable, str(REPO / "tests/security/approval_probe.py")], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE-REPORT "))
    report = json.loads(line.removeprefix("PROBE-REPORT "))
    results = report["results"]
    # The approved reading goes through...
    assert results["none"]["status"] == 200, results["none"]
    # ...every other reading is refused with our answer, never LiteLLM's or the provider's text.
    for name, _ in DIFFERENCES:
        assert results[name]["status"] == 400, (name, results[name])
        assert results[name]["body"]["error"]["code"] == "request_mismatch", (name, results[name])
    # The provider saw exactly one call: the approved one, with the approved model and credential.
    (upstream,) = [r for r in standin.recorder.all() if r["method"] == "POST"]  # (LiteLLM lists models at boot)
    assert upstream["body"]["model"] == "upstream-chat" and upstream["body"]["max_tokens"] == 5
    assert upstream["headers"]["authorization"] == f"Bearer {stack.provider_key}"
    # Each refusal is audited with its reason and released (not charged); only the approved call is paid for.
    reasons = {reason for event, reason in report["audit"]}
    assert len(report["audit"]) == len(DIFFERENCES), report["audit"]
    assert {"model", "api_key", "choices", "value", "field:temperature", "field:custom_llm_provider",
            "litellm_refused"} <= reasons, reasons
    assert report["reserved"] == 0
    assert report["ledger"].count("settle") == 1
    assert report["ledger"].count("release") == len(DIFFERENCES) + 1  # + the approved call's unused remainder
    assert any_listed(result.stdout + result.stderr, stack.canaries) == []
