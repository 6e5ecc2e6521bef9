"""The custom_auth bridge accepts only a Principal object placed in the ASGI scope.

threat-model: TM-T3
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from fastapi import HTTPException

from gateway.pipeline.asgi import PRINCIPAL_SCOPE_KEY
from gateway.pipeline.bridge import custom_auth
from gateway.principal import Principal

PRINCIPAL = Principal(key_id="key_1", kind="ck", name="n", models=frozenset({"m"}), expires_at=None)


def _call(scope: dict, api_key: str | None = "whatever"):  # type: ignore[no-untyped-def]
    return asyncio.run(custom_auth(SimpleNamespace(scope=scope), api_key))


def test_principal_in_scope_is_accepted() -> None:
    auth = _call({PRINCIPAL_SCOPE_KEY: PRINCIPAL})
    assert auth.api_key == "key_1" and auth.user_id == "key_1"


@pytest.mark.parametrize("forged", [
    None, "key_1", {"key_id": "key_1", "models": ["m"]}, SimpleNamespace(key_id="key_1", models=frozenset({"m"})),
])
def test_anything_else_is_refused(forged: object) -> None:
    scope = {} if forged is None else {PRINCIPAL_SCOPE_KEY: forged}
    with pytest.raises(HTTPException) as caught:
        _call(scope, api_key="sk-master-key-presented")
    assert caught.value.status_code == 401


def test_a_subclass_is_refused() -> None:
    class Sneaky(Principal):
        __slots__ = ()

    with pytest.raises(HTTPException):
        _call({PRINCIPAL_SCOPE_KEY: Sneaky("key_1", "ck", "n", frozenset(), None)})
