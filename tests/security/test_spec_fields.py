"""Every request field of OpenAI's published API is decided: forwarded or refused, with a reason (docs/fields.md).

The test walks the vendored schemas (tests/specs/) and fails when a field is in neither list, so a new version of the
spec cannot add a field nobody looked at. It also checks each decision against the pre-flight's allow-lists
(gateway/pipeline/fields.py): a field marked forwarded is accepted there, a field marked refused is not.

threat-model: TM-E5
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from gateway.pipeline import fields, responses
from tests.support import REPO, SPEC

TABLE = REPO / "docs" / "fields.md"
# Request schemas, the route they belong to, and how deep their fields are listed.
REQUESTS = {
    "CreateChatCompletionRequest": ("chat", 4),
    "CreateCompletionRequest": ("completion", 4),
    "CreateEmbeddingRequest": ("embedding", 4),
    "CreateResponse": ("responses", 4),
}
# Free-form objects whose keys are the caller's own (JSON Schemas, token ids), passed as data: not walked.
FREE_FORM = {"parameters", "schema", "logit_bias", "metadata"}

SCHEMAS: dict[str, Any] = json.loads(SPEC.read_text())["components"]["schemas"]


def _variants(schema: dict[str, Any], seen: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The object shapes a schema may take ($ref followed, allOf merged, oneOf/anyOf alternatives, array items)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else _variants(SCHEMAS[name], (*seen, name))
    found: list[dict[str, Any]] = []
    for key in ("oneOf", "anyOf"):
        for alternative in schema.get(key, []):
            found += _variants(alternative, seen)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            for variant in _variants(part, seen):
                merged.update(variant.get("properties", {}))
        found.append({"properties": merged})
    if "items" in schema:
        found += [{"items": variant} for variant in _variants(schema["items"], seen)]
    if "properties" in schema:
        found.append(schema)
    return found


def spec_fields(schema: dict[str, Any], prefix: str = "", depth: int = 4) -> set[str]:
    """Every field path of a request schema: ``a.b`` for objects, ``a[].b`` for arrays of objects."""
    paths: set[str] = set()
    for variant in _variants(schema):
        if "items" in variant and "properties" not in variant:
            paths |= spec_fields({"allOf": [variant["items"]]}, prefix + "[]", depth)
            continue
        for name, sub in variant.get("properties", {}).items():
            path = f"{prefix}.{name}" if prefix else name
            paths.add(path)
            if depth > 1 and name not in FREE_FORM:
                paths |= spec_fields(sub, path, depth - 1)
    return paths


def decisions() -> dict[str, dict[str, tuple[str, str]]]:
    """The tables of docs/fields.md: schema → field path → (decision, reason)."""
    tables: dict[str, dict[str, tuple[str, str]]] = {}
    current = None
    for line in TABLE.read_text().splitlines():
        heading = re.match(r"^## `(\w+)`", line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
            continue
        row = re.match(r"^\| `([^`]+)` \| (forwarded|refused) \| (.+) \|$", line)
        if row and current is not None:
            assert row.group(1) not in current, f"{row.group(1)} is listed twice"
            current[row.group(1)] = (row.group(2), row.group(3).strip())
    return tables


# Where each listed path is checked in the pre-flight: the allow-list that must hold its last name.
RESPONSES_LISTS = {
    "": responses.ALLOWED_TOP,
    "input[]": responses.MESSAGE_ITEM_FIELDS | responses.FUNCTION_CALL_ITEM_FIELDS
    | responses.FUNCTION_OUTPUT_ITEM_FIELDS,
    "input[].content[]": responses.INPUT_TEXT_FIELDS | responses.OUTPUT_TEXT_FIELDS | responses.INPUT_IMAGE_FIELDS,
    "tools[]": responses.FUNCTION_TOOL_FIELDS,
    "tool_choice": responses.TOOL_CHOICE_FIELDS,
    "text": responses.TEXT_FIELDS,
    "text.format": responses.TEXT_FORMAT_FIELDS,
    "stream_options": responses.STREAM_OPTIONS_FIELDS,
}


def _allow_list(path: str, mode: str) -> set[str] | None:
    parent, _, _name = path.rpartition(".")
    if mode == "responses":
        return RESPONSES_LISTS.get(parent)
    return {
        "": fields.ALLOWED_TOP[mode],
        "messages[]": fields.MESSAGE_FIELDS,
        "messages[].content[]": fields.CONTENT_PART_FIELDS,
        "messages[].content[].image_url": fields.IMAGE_URL_FIELDS,
        "messages[].tool_calls[]": fields.TOOL_CALL_FIELDS,
        "messages[].tool_calls[].function": fields.CALLED_FUNCTION_FIELDS,
        "messages[].function_call": fields.CALLED_FUNCTION_FIELDS,
        "tools[]": fields.TOOL_FIELDS,
        "tools[].function": fields.FUNCTION_FIELDS,
        "functions[]": fields.FUNCTION_FIELDS,
        "tool_choice": fields.TOOL_FIELDS,
        "tool_choice.function": {"name"},
        "function_call": {"name"},
        "response_format": fields.RESPONSE_FORMAT_FIELDS,
        "response_format.json_schema": fields.JSON_SCHEMA_FIELDS,
        "stream_options": fields.STREAM_OPTIONS_FIELDS,
    }.get(parent)


def _covered(path: str, table: dict[str, tuple[str, str]]) -> bool:
    """Listed, or below a listed field that is refused (its children are refused with it)."""
    if path in table:
        return True
    parts = path.split(".")
    return any(table.get(".".join(parts[:i]).removesuffix("[]"), ("", ""))[0] == "refused"
               for i in range(1, len(parts)))


@pytest.mark.parametrize("schema", sorted(REQUESTS))
def test_every_field_of_the_spec_is_decided(schema: str) -> None:
    _mode, depth = REQUESTS[schema]
    table = decisions().get(schema, {})
    found = spec_fields({"$ref": f"#/components/schemas/{schema}"}, depth=depth)
    assert len(found) >= 5
    assert sorted(path for path in found if not _covered(path, table)) == []
    # Nothing listed that the spec does not have (a renamed field would leave a stale row).
    assert sorted(path for path in table if path not in found) == []


@pytest.mark.parametrize("schema", sorted(s for s, (mode, _) in REQUESTS.items() if mode is not None))
def test_each_decision_is_what_the_pre_flight_does(schema: str) -> None:
    mode, _ = REQUESTS[schema]
    assert mode is not None
    wrong = []
    for path, (decision, _reason) in decisions()[schema].items():
        allowed = _allow_list(path, mode)
        if allowed is None:
            continue  # checked by its own code (a value, not a field name), or below a refused field
        name = path.rsplit(".", 1)[-1]
        if (decision == "forwarded") != (name in allowed):
            wrong.append((path, decision))
    assert wrong == []


def test_the_responses_api_keeps_no_state_and_calls_no_hosted_tool() -> None:
    # Served stateless: every field that keeps or reads provider-side state is refused, and so is every tool field
    # but a function's.
    table = decisions()["CreateResponse"]
    stateful = {"previous_response_id", "conversation", "background", "prompt", "metadata", "input[].id",
                "context_management", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options"}
    assert {path for path in stateful if table[path][0] != "refused"} == set()
    assert {path.split(".")[1] for path, (decision, _) in table.items()
            if path.startswith("tools[].") and decision == "forwarded"} == {"type", "name", "description",
                                                                          "parameters", "strict"}


def test_the_walk_sees_nested_fields() -> None:
    # A walk that stopped at the top level would make the tables above meaningless.
    chat = spec_fields({"$ref": "#/components/schemas/CreateChatCompletionRequest"})
    assert {"messages[].content[].image_url", "tools[].function.strict", "stream_options.include_usage",
            "response_format.json_schema.name"} <= chat
