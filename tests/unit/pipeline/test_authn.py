"""Authentication step: one 401 for every reason, 503 when the store is unreachable (fail closed).

threat-model: TM-T6
"""

from __future__ import annotations

import logging

import pytest

from gateway.keys.format import KeyKind
from gateway.keys.service import AuthDenied
from gateway.keys.store import StoreUnavailable
from gateway.pipeline.authn import authenticate
from gateway.pipeline.errors import Denial


class _Keys:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def verify(self, presented: str | None, kind: KeyKind) -> None:
        raise self.error


class _Audit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str | None]] = []

    def try_record(self, event: str, *, actor: str, reason: str | None = None, **_fields: object) -> None:
        self.entries.append((event, reason))


def _scope(token: str) -> dict:
    return {"type": "http", "path": "/v1/chat/completions", "headers": [(b"authorization", f"Bearer {token}".encode())]}


@pytest.mark.parametrize("reason", ["missing", "malformed", "unknown", "revoked", "expired"])
def test_every_reason_is_the_same_401_and_logged(reason: str, caplog: pytest.LogCaptureFixture) -> None:
    presented = "lgw_ck_secret-value-that-must-not-be-logged"
    audit = _Audit()
    with caplog.at_level(logging.DEBUG), pytest.raises(Denial) as caught:
        authenticate(_scope(presented), _Keys(AuthDenied(reason, "key_1")), KeyKind.CUSTOMER, "req_1",
                     audit)  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    assert audit.entries == [("auth_denied", reason)]
    assert caplog.records[-1].reason == reason  # type: ignore[attr-defined]
    assert presented not in caplog.text


def test_unreachable_store_fails_closed_with_503() -> None:
    with pytest.raises(Denial) as caught:
        authenticate(_scope("x"), _Keys(StoreUnavailable()), KeyKind.CUSTOMER, "req_1", _Audit())  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code) == (503, "service_unavailable")
