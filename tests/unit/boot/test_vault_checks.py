"""Master key and pepper strength checks."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.vault import check_distinct, check_strong


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


BASE64URL_IN_ORDER = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize("value", [
    "sk-" + BASE64URL_IN_ORDER,
    "sk-" + BASE64URL_IN_ORDER[::-1],
    "sk-" + "ACEGIKMOQSUWYacegikmoqsuwy02468" + secrets.token_urlsafe(24),
    "sk-" + "ab" * 5000,
    "sk-" + secrets.token_urlsafe(32) * 50,
    "sk-" + secrets.token_urlsafe(33) + "a" * 12,
])
def test_patterned_values_of_any_length_are_refused(value: str) -> None:
    """The alphabet in order, strides, cycles and repeated blocks are not random, however long."""
    with pytest.raises(BootError) as caught:
        check_strong(Secret(value), "master", prefix="sk-")
    assert "does not look random" in caught.value.message


@pytest.mark.parametrize("length", [2_000, 8_500, 10_000, 50_000])
def test_long_random_values_pass(length: int) -> None:
    for _ in range(3):
        check_strong(Secret(secrets.token_urlsafe(length)[:length]), "pepper")
        check_strong(Secret(secrets.token_hex(length // 2)), "pepper")


def _core(**overrides: str) -> dict[str, Secret]:
    values = {"master_key": "sk-" + secrets.token_urlsafe(48), "pepper": secrets.token_urlsafe(48),
              "audit_key": secrets.token_urlsafe(48), "openai": "sk-proj-" + secrets.token_urlsafe(40)}
    values.update(overrides)
    return {name: Secret(value) for name, value in values.items()}


def test_distinct_secrets_pass() -> None:
    check_distinct(_core())


@pytest.mark.parametrize(("first", "second", "same"), [
    ("pepper", "audit_key", lambda body: {"pepper": body, "audit_key": body}),
    ("master_key", "pepper", lambda body: {"master_key": "sk-" + body, "pepper": body}),
    ("master_key", "audit_key", lambda body: {"master_key": "sk-" + body, "audit_key": body}),
    ("master_key", "openai", lambda body: {"master_key": "sk-" + body, "openai": "sk-" + body}),
    ("pepper", "openai", lambda body: {"pepper": body, "openai": "sk-proj-" + body}),
])
def test_one_value_in_two_places_is_refused(first: str, second: str, same: Callable[[str], dict[str, str]]) \
        -> None:
    body = secrets.token_urlsafe(48)
    with pytest.raises(BootError) as caught:
        check_distinct(_core(**same(body)))
    assert first in caught.value.message and second in caught.value.message
    assert "same value" in caught.value.message and body not in caught.value.line()
