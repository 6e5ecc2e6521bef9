"""Traceability: every trade-off and threat in threat-model/ names tests that exist; tests cite only IDs defined there."""

from __future__ import annotations

import ast
import re

from tests.support import REPO

DOC = REPO / "threat-model/README.md"


def _tradeoffs() -> dict[str, list[str]]:
    sections = re.split(r"^### ", DOC.read_text(), flags=re.MULTILINE)[1:]
    found: dict[str, list[str]] = {}
    for section in sections:
        ident = re.match(r"(TM-[A-Z]{1,2}\d+)\b", section)
        assert ident, f"trade-off heading without an ID: {section.splitlines()[0]}"
        tests_part = section.split("Tests:", 1)[1] if "Tests:" in section else ""
        found[ident.group(1)] = re.findall(r"^- (tests/\S+::\w+)\s*$", tests_part, flags=re.MULTILINE)
    return found


def _test_functions(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_the_required_tradeoffs_are_written_down() -> None:
    text = DOC.read_text()
    for words in ("master key lives in the gateway process", "couples versions", "backend is always in the path",
                  "No Vault token after boot"):
        assert words in text


def test_every_tradeoff_and_threat_names_existing_tests() -> None:
    tradeoffs = _tradeoffs()
    assert len([t for t in tradeoffs if t.startswith("TM-T")]) >= 4
    assert len([t for t in tradeoffs if not t.startswith("TM-T")]) >= 6
    for ident, tests in tradeoffs.items():
        assert tests, f"{ident} names no test"
        for reference in tests:
            path, function = reference.split("::")
            assert (REPO / path).is_file(), f"{ident}: {path} does not exist"
            assert function in _test_functions(path), f"{ident}: {reference} does not exist"


def test_tests_cite_only_known_ids() -> None:
    known = set(_tradeoffs())
    cited: set[str] = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        if path.name == "test_threat_model.py":
            continue
        cited.update(re.findall(r"threat-model: ((?:TM-[A-Z]{1,2}\d+)(?:, TM-[A-Z]{1,2}\d+)*)", path.read_text()))
    ids = {ident for group in cited for ident in group.split(", ")}
    assert ids, "no test cites the threat model"
    assert ids - known == set()
