"""Every dependency is pinned exactly and hash-locked; LiteLLM is the one exact release the code is written for.

threat-model: TM-T2
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

from gateway import LITELLM_COMPROMISED, LITELLM_PIN
from tests.support import REPO

LOCKS = [REPO / "requirements/runtime.txt", REPO / "requirements/dev.txt"]
# The installer that `make install` puts in first (with pip, hash-checked) and that installs the dev lock.
BOOTSTRAP = REPO / "requirements/bootstrap.txt"


def _requirements(path: Path) -> dict[str, tuple[str, list[str]]]:
    text = path.read_text().replace("\\\n", " ")
    found: dict[str, tuple[str, list[str]]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *rest = line.split()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]+\])?==([^\s;]+)", spec)
        assert match, f"{path.name}: not an exact pin: {spec}"
        hashes = [item for item in rest if item.startswith("--hash=sha256:")]
        found[match.group(1).lower()] = (match.group(3), hashes)
    return found


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_requirement_is_hash_locked(lock: Path) -> None:
    requirements = _requirements(lock)
    assert len(requirements) > 50
    unhashed = [name for name, (_, hashes) in requirements.items() if not hashes]
    assert unhashed == []


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_litellm_is_pinned_exactly(lock: Path) -> None:
    version, _ = _requirements(lock)["litellm"]
    assert version == LITELLM_PIN == "1.106.12"
    assert version not in LITELLM_COMPROMISED
    assert "litellm[proxy]==1.106.12" in (REPO / "requirements/runtime.in").read_text()


def test_the_installer_is_pinned_and_hash_locked_alone() -> None:
    requirements = _requirements(BOOTSTRAP)
    assert list(requirements) == ["uv"]
    _, hashes = requirements["uv"]
    assert hashes
    assert "uv" in (REPO / "requirements/bootstrap.in").read_text().split()


def test_every_install_in_the_makefile_checks_hashes() -> None:
    """Each recipe that installs packages reads a lock with --require-hashes; the one exception is the project
    itself, installed editable without dependencies and without build isolation (which would fetch setuptools
    unpinned)."""
    installs = [line.strip() for line in (REPO / "Makefile").read_text().splitlines()
                if line.startswith("\t") and ("pip install" in line or "$(UV_INSTALL)" in line)]
    unchecked = [line for line in installs
                 if not (" --require-hashes " in line and " --no-deps " in line and " -r requirements/" in line)
                 and not (" --no-deps --no-build-isolation -e ." in line and line.endswith(" -e ."))]
    assert unchecked == []
    locks_read = {line.rsplit(" -r ", 1)[1] for line in installs if " -r " in line}
    assert locks_read == {"requirements/bootstrap.txt", "requirements/dev.txt", "requirements/deploy-checks.txt"}


@pytest.mark.parametrize("lock", ["deploy-checks.txt", "image-build.txt"])
def test_the_deployment_locks_are_hash_locked(lock: str) -> None:
    """The deployment checkers' lock (their own virtualenv) and the image's build backend: exact pins, all hashed."""
    requirements = _requirements(REPO / "requirements" / lock)
    assert requirements
    assert [name for name, (_, hashes) in requirements.items() if not hashes] == []


def test_installed_versions_match_the_lock() -> None:
    mismatched = []
    locked = {**_requirements(REPO / "requirements/dev.txt"), **_requirements(BOOTSTRAP)}
    for name, (version, _) in locked.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            mismatched.append((name, version, None))
            continue
        if installed != version:
            mismatched.append((name, version, installed))
    assert mismatched == []


def test_sbom_lists_the_pinned_litellm(tmp_path: Path) -> None:
    import json
    import subprocess

    from tests.support import BIN

    output = tmp_path / "sbom.json"
    subprocess.run([str(BIN / "cyclonedx-py"), "environment", "--output-format", "JSON", "--output-file",
                    str(output), str(BIN / "python")], check=True, capture_output=True, timeout=120)
    sbom = json.loads(output.read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    versions = {norm(c["name"]): c.get("version") for c in sbom["components"]}
    assert versions["litellm"] == LITELLM_PIN
    assert {norm(n) for n in _requirements(REPO / "requirements/runtime.txt")} <= set(versions)
