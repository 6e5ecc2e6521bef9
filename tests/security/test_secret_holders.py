"""Which objects hold the master key or a provider key once the gateway has booted, and nothing else does.

The test boots the gateway in a child process (as ``gateway serve`` would, without opening a port, like
``boot_probe.py``), hands it the secret values on stdin, and the child walks every object the garbage collector knows
(plus the untracked dicts and tuples those refer to) for a container holding one of them, as a whole string or inside
a longer one. Each holder is named by its nearest named owner: a module global (``litellm.proxy.proxy_server.master_key``),
an attribute of a class's instance (``litellm.router.Router.model_list[*]['litellm_params']['api_key']``), a slot, a
closure or a function's local. Plain dicts, lists, tuples and mapping proxies on the way are written as ``['key']`` and
``[*]``. The expected names are the "Holders after boot" of TM-T1 in threat-model/README.md: a holder that is not
listed there fails the test, so a new copy of a secret has to be noticed, and either removed or written down.

threat-model: TM-T1
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import types
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support import Stack

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
THREAT_MODEL = REPO / "threat-model/README.md"
ANONYMOUS = (dict, list, tuple, set, frozenset, deque, types.MappingProxyType)
MAX_DEPTH = 12
NAMESPACE = "\0"  # marks an owner whose next step is its own __dict__


def expected_holders() -> set[str]:
    text = THREAT_MODEL.read_text(encoding="utf-8")
    section = text.split("### TM-T1 ", 1)[1].split("\n### ", 1)[0]
    listed = section.split("Holders after boot:", 1)[1].split("Status:", 1)[0]
    return set(re.findall(r"`([^`]+)`", listed))


def test_only_the_listed_objects_hold_the_master_key_or_a_provider_key(stack: Stack, tmp_path: Path) -> None:
    from gateway.devstack.openbao import free_port

    env = stack.env(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}", free_port())
    needles = json.dumps({"master key": stack.master_key, "provider key": stack.provider_key})
    result = subprocess.run([sys.executable, __file__], env=env, cwd=REPO, input=needles, capture_output=True,
                            text=True, timeout=300, check=False)
    shown = result.stderr[-3000:].replace(stack.master_key, "[master key]").replace(stack.provider_key, "[provider key]")
    assert result.returncode == 0, shown
    line = next(line for line in result.stdout.splitlines() if line.startswith("HOLDERS "))
    found: dict[str, list[str]] = json.loads(line.removeprefix("HOLDERS "))
    # The scan really saw the process: LiteLLM's own copies of both secrets are there.
    assert "litellm.proxy.proxy_server.master_key" in found["master key"]
    assert any("['api_key']" in holder for holder in found["provider key"])
    expected = expected_holders()
    unlisted = {secret: sorted(set(holders) - expected) for secret, holders in found.items()}
    assert unlisted == {"master key": [], "provider key": []}, "holders not listed under TM-T1"
    # And the list is not stale: everything it names was found.
    assert expected - {h for holders in found.values() for h in holders} == set()


# ---- the child process ------------------------------------------------------------------------------------------


def _name(obj: object) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _key(key: object) -> str:
    return f"[{key!r}]" if isinstance(key, (str, int)) else "[*]"


def _step(parent: object, child: object) -> tuple[str, bool] | None:
    """How ``parent`` refers to ``child``: (text, whether the name is complete, i.e. parent is a named owner), or None
    for a reference that does not make ``parent`` an owner (a function's or a frame's module globals)."""
    if isinstance(parent, types.ModuleType):
        return (parent.__name__ + NAMESPACE, True) if vars(parent) is child else (f"{parent.__name__}.<?>", True)
    if isinstance(parent, types.FrameType):
        return _local(parent, child)
    for attribute in ("gi_frame", "cr_frame", "ag_frame"):
        frame = getattr(parent, attribute, None)
        if isinstance(frame, types.FrameType):
            return _local(frame, child)
    if isinstance(parent, types.FunctionType):
        if child is parent.__globals__ or child is parent.__builtins__:
            return None
        return f"{parent.__module__}.{parent.__qualname__}.__closure__", True
    if isinstance(parent, types.CellType):
        return "", False
    if isinstance(parent, types.MappingProxyType):
        return "", False
    if isinstance(parent, dict) and type(parent) is dict:
        for key, value in parent.items():
            if value is child:
                return _key(key), False
        return "<key>", False
    if type(parent) in ANONYMOUS:
        return "[*]", False
    if isinstance(parent, type):
        return f"class {_name(parent)}" + NAMESPACE, True
    owner = _name(parent)
    if getattr(parent, "__dict__", None) is child:
        return owner + NAMESPACE, True
    with_dict = getattr(parent, "__dict__", None)
    if isinstance(with_dict, dict):
        for key, value in with_dict.items():
            if value is child:
                return f"{owner}.{key}", True
    for cls in type(parent).__mro__:
        for slot in getattr(cls, "__slots__", ()) or ():
            if isinstance(slot, str) and getattr(parent, slot, None) is child:
                return f"{owner}.{slot}", True
    if isinstance(parent, dict):
        for key, value in parent.items():
            if value is child:
                return f"{owner}{_key(key)}", True
    if isinstance(parent, (list, tuple, set, frozenset, deque)):
        return f"{owner}[*]", True
    return f"{owner}.<?>", True


def _local(frame: types.FrameType, child: object) -> tuple[str, bool] | None:
    if child is frame.f_globals or child is frame.f_builtins:
        return None
    where = f"{frame.f_code.co_qualname}()"
    if child is frame.f_locals:
        return f"locals of {where}", True
    names = [name for name, value in frame.f_locals.items() if value is child]
    return f"local {names[0] if names else '<?>'} of {where}", True


def _join(head: str, tail: str) -> str:
    # A key of an owner's namespace (a module's, an instance's or a class's __dict__) is an attribute: "Owner.attr".
    if head.endswith(NAMESPACE):
        head = head.removesuffix(NAMESPACE)
        match = re.match(r"\['([^']*)'\](.*)", tail)
        return f"{head}.{match.group(1)}{match.group(2)}" if match else head + tail
    return head + tail


def scan(needles: dict[str, str]) -> dict[str, list[str]]:
    gc.collect()
    gc.unfreeze()  # the gateway freezes its boot heap; frozen objects are invisible to gc.get_objects()
    gc.collect()
    here = sys._getframe()
    objects = gc.get_objects()
    mine = {id(objects), id(needles), id(here)}
    seen = {id(o) for o in objects}
    mine.add(id(seen))
    # Dicts and tuples holding only atomic values (strings, numbers) are untracked: reach them from their referrers.
    index = 0
    while index < len(objects):
        for ref in gc.get_referents(objects[index]):
            if type(ref) in (dict, tuple) and id(ref) not in seen:
                seen.add(id(ref))
                objects.append(ref)
        index += 1
    del seen

    # Every container holding a secret, as a whole string (or bytes) or inside a longer one.
    wanted = [(secret, value, value.encode()) for secret, value in needles.items()]
    found: dict[str, set[str]] = {secret: set() for secret in needles}
    frontier: dict[int, list[tuple[object, str, str]]] = {}
    for obj in objects:
        if id(obj) in mine:
            continue
        for ref in gc.get_referents(obj):
            if not isinstance(ref, (str, bytes)):
                continue
            for secret, text, raw in wanted:
                needle = text if isinstance(ref, str) else raw
                if needle not in ref:
                    continue
                how = _step(obj, ref)
                if how is None:
                    continue
                step, named = how
                whole = "" if ref == needle else " (inside a longer string)"
                if named:
                    found[secret].add(_join(step, whole))
                else:
                    frontier.setdefault(id(obj), []).append((obj, secret, step + whole))
    # Walk up from each holder through plain containers to its named owners.
    visited = {(oid, secret) for oid, entries in frontier.items() for _, secret, _ in entries}
    mine.update({id(frontier), id(visited)})
    for _depth in range(MAX_DEPTH):
        if not frontier:
            break
        parents: dict[int, list[object]] = {oid: [] for oid in frontier}
        mine.add(id(parents))
        for obj in objects:
            if id(obj) in mine:
                continue
            for ref in gc.get_referents(obj):
                if id(ref) in parents and ref is frontier[id(ref)][0][0]:
                    parents[id(ref)].append(obj)
        following: dict[int, list[tuple[object, str, str]]] = {}
        for oid, entries in frontier.items():
            for obj, secret, tail in entries:
                if not parents[oid]:
                    found[secret].add(f"<unreferenced {_name(obj)}>{tail}")
                for parent in parents[oid]:
                    how = _step(parent, obj)
                    if how is None:
                        continue
                    step, named = how
                    if named:
                        found[secret].add(_join(step, tail))
                    elif (id(parent), secret) not in visited:
                        visited.add((id(parent), secret))
                        following.setdefault(id(parent), []).append((parent, secret, step + tail))
        mine.discard(id(frontier))
        frontier = following
        mine.add(id(frontier))
    for entries in frontier.values():
        for obj, secret, tail in entries:
            found[secret].add(f"<deeper than {MAX_DEPTH} in {_name(obj)}>{tail}")
    return {secret: sorted(names) for secret, names in found.items()}


async def _probe() -> None:
    # Read without sys.stdin: its buffer would keep a copy of the values.
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    needles = json.loads(b"".join(chunks))
    del chunks, chunk
    from booted import running_gateway  # this folder: the probe runs as a script

    async with running_gateway():
        found = scan(needles)
        del needles
    sys.stdout.write("HOLDERS " + json.dumps(found) + "\n")


if __name__ == "__main__":
    asyncio.run(_probe())
