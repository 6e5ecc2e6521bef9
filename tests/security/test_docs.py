"""The docs stay true to the repository: links and anchors resolve, named files, ``make`` targets and ``gateway``
commands exist, threat-model IDs are defined, and README.md stays a front page.

Checked in README.md, SECURITY.md, docs/*.md, threat-model/*.md and secrets/README.md:

- every relative link points to an existing file, and to an existing heading when it carries ``#anchor`` (anchors
  are GitHub's: the heading in lower case, punctuation dropped, spaces as hyphens, ``-1``, ``-2`` for repeats);
- every repository path written as code (`` `gateway/boot/serve.py` ``) exists;
- every ``make <target>`` in code exists in the Makefile;
- every ``gateway <command> [<subcommand>] [--option ...]`` that opens a code span or a line of a code block exists
  in the CLI (the typer app of gateway/cli.py), options included;
- every ``TM-…`` ID is defined in threat-model/README.md, and a range "TM-X1 to TM-Xn" reaches the last one defined;
- README.md has at most 150 lines.

The checkers return the problems they find; the last tests feed them broken text, so each is known to fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from gateway.cli import app
from tests.support import REPO

README_MAX_LINES = 150
THREAT_MODEL = REPO / "threat-model/README.md"


def doc_files() -> list[Path]:
    return [REPO / "README.md", REPO / "SECURITY.md", *sorted((REPO / "docs").glob("*.md")),
            *sorted((REPO / "threat-model").glob("*.md")), REPO / "secrets/README.md"]


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
REPO_PATH = re.compile(r"^(?:gateway|tests|bench|docs|secrets|policy|threat-model|requirements|\.ci)/[\w./-]*$")
MAKE = re.compile(r"(?:^|[\s;&|(])make\s+([A-Za-z][\w-]*)")
GATEWAY = re.compile(r"^(?:\$\s+)?(?:\S*/)?gateway\s+(.*)$", re.DOTALL)
TM_ID = re.compile(r"\bTM-([A-Z]{1,2})(\d+)\b")
TM_RANGE = re.compile(r"\bTM-([A-Z]{1,2})(\d+)\s+(?:to|through|–|-)\s+TM-([A-Z]{1,2})(\d+)\b")


def split_code(text: str) -> tuple[str, list[str]]:
    """The prose outside fenced code blocks (fences blanked, line numbers kept) and the logical lines inside them
    (a line ending in a backslash continues on the next)."""
    prose: list[str] = []
    code: list[str] = []
    fenced = False
    pending = ""
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            prose.append("")
            continue
        if fenced:
            prose.append("")
            pending += line.strip()
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip() + " "
            else:
                code.append(pending)
                pending = ""
        else:
            prose.append(line)
    return "\n".join(prose), code


def code_spans(prose: str) -> list[str]:
    return [" ".join(match.group(2).split()) for match in CODE_SPAN.finditer(prose)]


def without_code_spans(prose: str) -> str:
    return CODE_SPAN.sub(lambda match: " " * len(match.group(0)), prose)


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    prose, _ = split_code(text)
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose.splitlines():
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def link_problems(path: Path, text: str) -> list[str]:
    prose, _ = split_code(text)
    targets = LINK.findall(without_code_spans(prose)) + REFERENCE.findall(prose)
    problems = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # absolute (https:, mailto:): not ours to check offline
        file_part, _, anchor = target.partition("#")
        if not file_part:
            if anchor not in anchors(text):
                problems.append(f"{_shown(path)}: link to {target}: no heading with that anchor")
            continue
        resolved = (path.parent / file_part).resolve()
        if not resolved.exists():
            problems.append(f"{_shown(path)}: link to {target}: no such file")
            continue
        if (anchor and resolved.is_file() and resolved.suffix == ".md"
                and anchor not in anchors(resolved.read_text(encoding="utf-8"))):
            problems.append(f"{_shown(path)}: link to {target}: no heading with that anchor")
    return problems


def path_problems(path: Path, text: str, repo: Path = REPO) -> list[str]:
    prose, _ = split_code(text)
    problems = []
    for span in code_spans(prose):
        candidate = span.split("::", 1)[0]
        if REPO_PATH.match(candidate) and not (repo / candidate).exists():
            problems.append(f"{_shown(path)}: `{span}` does not exist")
    return problems


def commands(text: str) -> Iterator[str]:
    """Code spans, and lines of code blocks: where a command can be named."""
    prose, code = split_code(text)
    yield from code_spans(prose)
    yield from code


def make_targets(makefile: Path = REPO / "Makefile") -> set[str]:
    text = makefile.read_text(encoding="utf-8")
    return {match.group(1) for match in re.finditer(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.MULTILINE)}


def make_problems(path: Path, text: str, targets: set[str]) -> list[str]:
    return [f"{_shown(path)}: `make {target}`: no such target in the Makefile"
            for command in commands(text) for target in MAKE.findall(command) if target not in targets]


# typer carries its own copy of click (typer._click), whose group is no subclass of click.Group: commands are told
# apart by what they have, a group by its ``commands``.
def _subcommands(command: Any) -> dict[str, Any] | None:
    return getattr(command, "commands", None)


def _option_names(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def gateway_problems(path: Path, text: str, cli: Any) -> list[str]:
    problems = []
    for command in commands(text):
        named = GATEWAY.match(command.strip())
        if named is None:
            continue
        words = re.split(r"\s+|;|&&|\|\|", named.group(1).strip())
        current = cli
        trail = ["gateway"]
        for word in words:
            subcommands = _subcommands(current)
            if subcommands is None or not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            if word not in subcommands:
                problems.append(f"{_shown(path)}: `{command}`: {' '.join(trail)} has no command {word!r}")
                break
            current = subcommands[word]
            trail.append(word)
        if _subcommands(current) is not None:
            continue  # a group named alone, or a command already reported
        options = set(re.findall(r"--[a-z][a-z0-9-]*", named.group(1)))
        unknown = sorted(options - _option_names(current))
        if unknown:
            problems.append(f"{_shown(path)}: `{command}`: {' '.join(trail)} has no option {', '.join(unknown)}")
    return problems


def threat_model_ids(text: str) -> set[tuple[str, int]]:
    return {(kind, int(number)) for kind, number in re.findall(r"^### TM-([A-Z]{1,2})(\d+)\b", text, re.MULTILINE)}


def tm_problems(path: Path, text: str, defined: set[tuple[str, int]]) -> list[str]:
    problems = [f"{_shown(path)}: TM-{kind}{number} is not defined in the threat model"
                for kind, number in sorted(set(TM_ID.findall(text))) if (kind, int(number)) not in defined]
    for first_kind, _, last_kind, last in TM_RANGE.findall(text):
        highest = max((number for kind, number in defined if kind == last_kind), default=0)
        if first_kind == last_kind and int(last) < highest:
            problems.append(f"{_shown(path)}: the range ending TM-{last_kind}{last} leaves out TM-{last_kind}{highest}")
    return problems


def test_every_relative_link_and_anchor_resolves() -> None:
    problems = [p for path in doc_files() for p in link_problems(path, path.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_every_repository_path_named_in_the_docs_exists() -> None:
    problems = [p for path in doc_files() for p in path_problems(path, path.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_every_make_target_named_in_the_docs_exists() -> None:
    targets = make_targets()
    assert {"dev", "test"} <= targets
    problems = [p for path in doc_files() for p in make_problems(path, path.read_text(encoding="utf-8"), targets)]
    assert not problems, "\n".join(problems)


def test_every_gateway_command_named_in_the_docs_exists() -> None:
    cli = typer.main.get_command(app)
    problems = [p for path in doc_files() for p in gateway_problems(path, path.read_text(encoding="utf-8"), cli)]
    assert not problems, "\n".join(problems)


def test_every_threat_model_id_in_the_docs_is_defined() -> None:
    defined = threat_model_ids(THREAT_MODEL.read_text(encoding="utf-8"))
    assert defined
    problems = [p for path in doc_files() for p in tm_problems(path, path.read_text(encoding="utf-8"), defined)]
    assert not problems, "\n".join(problems)


def test_the_readme_is_a_front_page() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


# The checkers fail when they should.

def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section: here\n", encoding="utf-8")
    page = tmp_path / "page.md"
    text = ("[ok](other.md) [ok](other.md#a-section-here) [ok](#top) [web](https://example.invalid/x)\n"
            "# Top\n[gone](missing.md) [bad anchor](other.md#nowhere)\n`[not a link](missing-too.md)`\n"
            "```\n[in code](missing-three.md)\n```\n")
    assert link_problems(page, text) == ["page.md: link to missing.md: no such file",
                                         "page.md: link to other.md#nowhere: no heading with that anchor"]


def test_repeated_headings_get_numbered_anchors() -> None:
    assert anchors("# Keys\n## Keys\n### `TM-T6` — a cache, for `keys.cache_ttl_seconds`\n") == {
        "keys", "keys-1", "tm-t6--a-cache-for-keyscache_ttl_seconds"}


def test_a_missing_path_is_reported(tmp_path: Path) -> None:
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway/cli.py").write_text("", encoding="utf-8")
    text = "`gateway/cli.py` `gateway/gone.py` `tests/x.py::test_y` `var/profile/` `gateway dev`\n"
    assert path_problems(tmp_path / "page.md", text, repo=tmp_path) == [
        "page.md: `gateway/gone.py` does not exist", "page.md: `tests/x.py::test_y` does not exist"]


def test_an_unknown_make_target_is_reported() -> None:
    text = "Run `make dev PYTHON=python3.11`, then `make tset`.\n```sh\ncd x && make bench-nothing\n```\n"
    assert make_problems(Path("page.md"), text, {"dev", "test"}) == [
        "page.md: `make tset`: no such target in the Makefile",
        "page.md: `make bench-nothing`: no such target in the Makefile"]


def test_an_unknown_gateway_command_or_option_is_reported() -> None:
    cli = typer.main.get_command(app)
    text = ("`gateway keys list` `gateway serve --check` `gateway keys revoke KEY_ID` `gateway keys frobnicate`\n"
            "`gateway serve --chekc` `gateway-runtime`\n```sh\n.venv/bin/gateway ledger check\n"
            "gateway secrets bootstrap --operator-token-file F \\\n  --credentials-dir D --no-such-flag\n```\n")
    assert gateway_problems(Path("page.md"), text, cli) == [
        "page.md: `gateway keys frobnicate`: gateway keys has no command 'frobnicate'",
        "page.md: `gateway serve --chekc`: gateway serve has no option --chekc",
        ("page.md: `gateway secrets bootstrap --operator-token-file F --credentials-dir D --no-such-flag`: "
         "gateway secrets bootstrap has no option --no-such-flag")]


def test_an_undefined_or_stale_threat_model_id_is_reported() -> None:
    defined = {("T", 1), ("T", 2), ("T", 3), ("S", 1)}
    text = "TM-T1, TM-S1, TM-E6; the trade-offs TM-T1 to TM-T2.\n"
    assert tm_problems(Path("page.md"), text, defined) == [
        "page.md: TM-E6 is not defined in the threat model",
        "page.md: the range ending TM-T2 leaves out TM-T3"]
