"""Master key and pepper strength checks."""

from __future__ import annotations

import secrets

import pytest

from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.vault import check_strong


def test_generated_values_pass() -> None:
    for _ in range(50):
        check_strong(Secret("sk-" + secrets.token_urlsafe(48)), "master", prefix="sk-")
        check_strong(Secret(secrets.token_urlsafe(32)), "pepper")
        check_strong(Secret(secrets.token_hex(32)), "pepper")


@pytest.mark.parametrize(("value", "words"), [
    ("sk-1234", "publicly known"),
    ("SK-1234", "publicly known"),
    ("sk-" + "a" * 60, "does not look random"),
    ("sk-" + "0123456789" * 6, "does not look random"),
    ("sk-" + secrets.token_urlsafe(16), "too short"),
    ("mk-" + secrets.token_urlsafe(48), "must start with"),
    (" sk-" + secrets.token_urlsafe(48), "whitespace"),
])
def test_weak_master_keys_are_refused(value: str, words: str) -> None:
    with pytest.raises(BootError) as caught:
        check_strong(Secret(value), "master", prefix="sk-")
    assert words in caught.value.message
    assert value.strip() not in caught.value.line()
