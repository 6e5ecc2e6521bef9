"""The platform identity token file (GATEWAY_VAULT_JWT_FILE) and the --wrap-ttl option: what boot and the CLI accept
before anything reaches Vault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.boot.bootstrap import wrap_ttl_seconds
from gateway.boot.errors import BootError
from gateway.boot.settings import read_identity_token

SETTING = "GATEWAY_VAULT_JWT_FILE"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJnYXRld2F5In0.c2lnbmF0dXJl"


def _token_file(folder: Path, content: str = TOKEN, mode: int = 0o644) -> Path:
    path = folder / "token"
    path.write_text(content + "\n")
    path.chmod(mode)
    return path


def _refusal(path: Path | None) -> str:
    with pytest.raises(BootError) as caught:
        read_identity_token(path, SETTING)
    assert caught.value.step == "settings" and SETTING in caught.value.message
    assert TOKEN not in caught.value.message
    return caught.value.message


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o444])
def test_the_platform_layouts_are_accepted(tmp_path: Path, mode: int) -> None:
    """threat-model: TM-S6"""
    assert read_identity_token(_token_file(tmp_path, mode=mode), SETTING) == TOKEN


def test_a_symlink_into_the_platforms_folder_is_followed(tmp_path: Path) -> None:
    """threat-model: TM-S6"""
    target = _token_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_identity_token(link, SETTING) == TOKEN


@pytest.mark.parametrize("mode", [0o646, 0o664, 0o666, 0o620])
def test_a_file_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    """threat-model: TM-S6"""
    assert "writable by group or others" in _refusal(_token_file(tmp_path, mode=mode))


def test_a_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    """threat-model: TM-S6"""
    path = _token_file(tmp_path)
    os.chown(path, 65534, 65534)
    assert "belongs to another user (uid 65534)" in _refusal(path)


@pytest.mark.parametrize("content", ["", "not a token", "a.b", f"{TOKEN}.extra", f"{TOKEN} {TOKEN}", "é.é.é"])
def test_anything_but_one_compact_jws_is_refused(tmp_path: Path, content: str) -> None:
    message = _refusal(_token_file(tmp_path, content=content))
    assert "is empty" in message if not content else "does not hold a JWT (compact JWS)" in message


def test_unset_missing_folder_and_oversized_are_refused(tmp_path: Path) -> None:
    assert _refusal(None).endswith("is not set")
    assert "does not exist" in _refusal(tmp_path / "absent")
    assert "is not a regular file" in _refusal(tmp_path)
    assert "larger than" in _refusal(_token_file(tmp_path, content="a" * 70_000 + ".b.c"))


@pytest.mark.parametrize(("value", "seconds"), [("10", 10), ("600s", 600), ("10m", 600), ("1h", 3600),
                                                ("24h", 86400)])
def test_wrap_ttl_durations(value: str, seconds: int) -> None:
    assert wrap_ttl_seconds(value) == seconds


@pytest.mark.parametrize("value", ["0", "9s", "25h", "1441m", "10 m", "1d", "-1m", "", "1.5h", "\uff101m"])
def test_wrap_ttl_out_of_range_or_malformed(value: str) -> None:
    with pytest.raises(BootError) as caught:
        wrap_ttl_seconds(value)
    assert caught.value.message.startswith("--wrap-ttl must be")
