"""The boot's trim of LiteLLM's per-request hooks refuses a callback set it has not reviewed (threat-model TM-T13)."""

from __future__ import annotations

import pytest

from gateway.boot import litellm_mount
from gateway.boot.errors import BootError


class _UnreviewedHook:
    pass


def test_an_unexpected_callback_set_stops_the_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    expected = [type(name, (), {})() for name in sorted(litellm_mount.EXPECTED_CALLBACKS)]
    monkeypatch.setattr(litellm, "callbacks", [*expected, _UnreviewedHook()])
    with pytest.raises(BootError) as refused:
        litellm_mount.trim_per_request_work()
    assert "_UnreviewedHook" in str(refused.value.line())
    # One reviewed hook missing is refused too: the inventory must match exactly.
    monkeypatch.setattr(litellm, "callbacks", expected[1:])
    with pytest.raises(BootError):
        litellm_mount.trim_per_request_work()
