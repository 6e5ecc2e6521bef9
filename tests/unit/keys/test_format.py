"""Key format: prefix by kind, 256 random bits, checksum that rejects typos without a store lookup."""

from __future__ import annotations

import math
import re

import pytest

from gateway.keys import format as key_format
from gateway.keys.format import KeyKind, MalformedKey


def test_generated_keys_match_the_published_regex() -> None:
    published = re.compile(r"^lgw_(ck|ak)_[0-9A-Za-z]{49}$")  # as printed in SECURITY.md
    for kind in KeyKind:
        key = key_format.generate(kind)
        assert published.match(key) and key_format.KEY_PATTERN.match(key)
        assert key.startswith(f"lgw_{kind.value}_")
        key_format.check(key, kind)


def test_entropy_is_at_least_192_bits() -> None:
    assert key_format.RANDOM_LENGTH * math.log2(len(key_format.ALPHABET)) >= 256
    keys = {key_format.generate(KeyKind.CUSTOMER) for _ in range(500)}
    assert len(keys) == 500


def test_kind_is_checked() -> None:
    with pytest.raises(MalformedKey, match="kind"):
        key_format.check(key_format.generate(KeyKind.ADMIN), KeyKind.CUSTOMER)
    with pytest.raises(MalformedKey, match="kind"):
        key_format.check(key_format.generate(KeyKind.CUSTOMER), KeyKind.ADMIN)


def test_every_single_character_typo_is_caught() -> None:
    key = key_format.generate(KeyKind.CUSTOMER)
    start = len("lgw_ck_")
    for position in range(start, len(key)):
        for replacement in "0aZ":
            if key[position] == replacement:
                continue
            typo = key[:position] + replacement + key[position + 1:]
            with pytest.raises(MalformedKey):
                key_format.check(typo, KeyKind.CUSTOMER)


@pytest.mark.parametrize("candidate", ["", "sk-1234", "lgw_ck_", "lgw_xx_" + "a" * 49, "lgw_ck_" + "a" * 48,
                                       "lgw_ck_" + "a" * 50, "lgw_ck_" + "a" * 48 + "!", " lgw_ck_" + "a" * 49])
def test_malformed(candidate: str) -> None:
    with pytest.raises(MalformedKey):
        key_format.check(candidate, KeyKind.CUSTOMER)
