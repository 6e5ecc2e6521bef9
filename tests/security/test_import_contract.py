"""Only gateway/boot/ imports hvac and litellm.proxy.proxy_server; the import-linter contracts (that rule and the
layers) hold and can fail.

threat-model: TM-T1
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

from tests.support import BIN, REPO

PACKAGE = REPO / "gateway"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_hazmat_imports_live_in_boot_only() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(REPO).as_posix()
        in_boot = relative.startswith("gateway/boot/")
        for name in _imports(path):
            hazmat = name == "hvac" or name.startswith(("hvac.", "litellm.proxy.proxy_server"))
            any_litellm = name == "litellm" or name.startswith("litellm.")
            if (hazmat and not in_boot) or (any_litellm and not in_boot and relative != "gateway/pipeline/bridge.py"):
                offenders.append((relative, name))
    assert offenders == []


def test_operator_commands_and_dev_stack_reach_vault_through_boot_only() -> None:
    # Both run on the host next to Vault credentials; whatever they need from Vault goes through gateway.boot.operator.
    for package in ("ops", "devstack"):
        paths = sorted((PACKAGE / package).rglob("*.py"))
        assert paths, package
        for path in paths:
            assert {n for n in _imports(path) if n.split(".")[0] in ("hvac", "litellm")} == set(), path


def test_bridge_imports_only_litellm_types() -> None:
    # LiteLLM's auth result type and the base class of its hooks; neither imports litellm.proxy.proxy_server.
    litellm_imports = {n for n in _imports(PACKAGE / "pipeline/bridge.py") if n.startswith("litellm")}
    assert litellm_imports == {"litellm.proxy._types", "litellm.proxy._types.UserAPIKeyAuth",
                               "litellm.integrations.custom_logger", "litellm.integrations.custom_logger.CustomLogger"}


def test_import_linter_contract_is_kept() -> None:
    result = subprocess.run([str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


def _lint_with(tmp_path: Path, module: str, injected: str) -> subprocess.CompletedProcess[str]:
    """lint-imports over a copy of the package with one import line appended to ``module`` (a path in gateway/)."""
    shutil.copytree(PACKAGE, tmp_path / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "gateway" / module
    target.write_text(target.read_text() + f"\n{injected}  # injected by the test\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([str(BIN / "lint-imports")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)


def test_import_linter_contract_catches_a_violation(tmp_path: Path) -> None:
    result = _lint_with(tmp_path, "keys/store.py", "import hvac")
    assert result.returncode != 0
    assert "gateway.keys.store -> hvac" in result.stdout


def test_layers_contract_catches_a_domain_module_speaking_http(tmp_path: Path) -> None:
    # Domain code raising the pipeline's HTTP errors was the drift the layers contract was added for.
    result = _lint_with(tmp_path, "credits/pricing.py", "from gateway.pipeline.errors import Denial")
    assert result.returncode != 0
    assert "gateway.credits.pricing -> gateway.pipeline.errors" in result.stdout


def test_stdlib_secrets_is_not_shadowed() -> None:
    import secrets

    assert secrets.__file__ is not None and "site-packages" not in secrets.__file__
    assert Path(secrets.__file__).parent != REPO / "secrets"
    assert not (REPO / "secrets/__init__.py").exists()
    assert hasattr(secrets, "token_urlsafe")
