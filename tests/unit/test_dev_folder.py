"""gateway dev clears its folder (var/dev/) at start, but only a folder it made itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.boot.errors import BootError
from gateway.devstack.server import claim_dev_folder


def test_a_folder_gateway_dev_did_not_make_is_never_cleared(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "dev"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("someone else's")
    with pytest.raises(BootError) as refused:
        claim_dev_folder(folder)
    assert "did not put there" in refused.value.line()
    assert (folder / "notes.txt").read_text() == "someone else's"


def test_its_own_folder_is_cleared_at_the_next_start(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "dev"
    lock = claim_dev_folder(folder)
    (folder / "gateway.db").write_text("last session")
    os.close(lock)
    lock = claim_dev_folder(folder)
    try:
        assert not (folder / "gateway.db").exists()
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
    finally:
        os.close(lock)
