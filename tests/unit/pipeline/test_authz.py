"""The model allow-list step: the model must be exposed by the policy and allowed for the key; one 403 for both."""

from __future__ import annotations

import pytest

from gateway.pipeline.authz import check_model
from gateway.pipeline.errors import Denial
from gateway.principal import Principal

KEY = Principal(key_id="key_1", kind="customer", name="n", models=frozenset({"allowed", "retired"}), expires_at=None)
EXPOSED = frozenset({"allowed", "other"})


def test_an_exposed_model_on_the_keys_list_passes() -> None:
    assert check_model({"model": "allowed"}, KEY, EXPOSED, "req_1") == "allowed"


@pytest.mark.parametrize("model", ["other", "retired", "unknown", "ALLOWED"])
def test_a_model_not_both_exposed_and_allowed_is_the_same_403(model: str) -> None:
    # "other" is exposed but not the key's; "retired" is the key's but no longer exposed: the answer is the same.
    with pytest.raises(Denial) as refused:
        check_model({"model": model}, KEY, EXPOSED, "req_1")
    assert (refused.value.status, refused.value.code) == (403, "model_not_allowed")


@pytest.mark.parametrize("body", [{}, {"model": None}, {"model": ""}, {"model": ["allowed"]}, {"model": 7}])
def test_a_missing_or_non_string_model_is_400(body: dict) -> None:
    with pytest.raises(Denial) as refused:
        check_model(body, KEY, EXPOSED, "req_1")
    assert refused.value.status == 400
