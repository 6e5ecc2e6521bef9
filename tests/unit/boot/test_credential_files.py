"""Credential files the operator commands write (role_id, secret_id, the dev keys file): created exclusively with mode
0600; never written through a symlink or into a file another user owns."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.boot.bootstrap import write_private_file
from gateway.boot.errors import BootError


def test_a_new_file_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "creds" / "secret_id"
    write_private_file(path, "s3cret")
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    assert path.read_text() == "s3cret"
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_id"]


def test_our_own_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "secret_id"
    path.write_text("old and longer than the new one")
    path.chmod(0o644)
    before = os.lstat(path).st_ino
    write_private_file(path, "new")
    info = os.lstat(path)
    assert path.read_text() == "new" and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_ino != before  # a new file renamed over the old one, not the old one rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_id"]


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """threat-model: TM-S4"""
    target = tmp_path / "planted"
    target.write_text("theirs")
    target.chmod(0o644)
    link = tmp_path / "secret_id"
    link.symlink_to(target)
    with pytest.raises(BootError) as caught:
        write_private_file(link, "s3cret")
    assert "symlink" in caught.value.message and "s3cret" not in caught.value.line()
    assert target.read_text() == "theirs" and link.is_symlink()


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    """threat-model: TM-S4"""
    link = tmp_path / "secret_id"
    link.symlink_to(tmp_path / "created-by-the-write")
    with pytest.raises(BootError, match="symlink"):
        write_private_file(link, "s3cret")
    assert not (tmp_path / "created-by-the-write").exists()


def test_a_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """threat-model: TM-S4"""
    path = tmp_path / "secret_id"
    path.write_text("theirs")
    os.chown(path, 65534, 65534)
    with pytest.raises(BootError) as caught:
        write_private_file(path, "s3cret")
    assert "belongs to another user" in caught.value.message
    assert path.read_text() == "theirs" and os.lstat(path).st_uid == 65534


def test_a_directory_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret_id").mkdir()
    with pytest.raises(BootError, match="not a regular file"):
        write_private_file(tmp_path / "secret_id", "s3cret")
