"""The admin API's 400s teach: every field and query parameter has its expected format worded, unknown fields get the
closest valid name, and what the client sent is never repeated unless it is a plain field name."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from gateway.admin.api import EXPECTED, _validation_denial, build_admin_app


def _schema_app() -> Any:
    return build_admin_app(None, None, frozenset(), audit=None)  # type: ignore[arg-type]  # routes only, never served


def test_every_body_field_and_query_parameter_has_its_expected_format() -> None:
    named: set[str] = set()
    for route in _schema_app().routes:
        if not isinstance(route, APIRoute):
            continue
        named |= {param.name for param in route.dependant.query_params}
        for param in route.dependant.body_params:
            annotation = param.field_info.annotation
            for model in getattr(annotation, "__args__", (annotation,)):
                if isinstance(model, type) and issubclass(model, BaseModel):
                    named |= set(model.model_fields)
    assert named - set(EXPECTED) == set()
    assert {"limit", "after_id", "before_seq", "rpm_limit", "expires_at", "grace_seconds"} <= named


@pytest.mark.parametrize(("error", "known", "message", "param"), [
    ({"type": "extra_forbidden", "loc": ("body", "rpm")}, ("rpm_limit", "tpm_limit"),
     "Unknown field 'rpm'; did you mean 'rpm_limit'?", "rpm"),
    ({"type": "extra_forbidden", "loc": ("body", "zzz")}, ("name",), "Unknown field 'zzz'; the fields are name.",
     "zzz"),
    ({"type": "extra_forbidden", "loc": ("body", "x\u2028<script>")}, ("name",),
     "Unknown field in the body; the fields are name.", None),
    ({"type": "extra_forbidden", "loc": ("body", "a" * 41)}, ("name",),
     "Unknown field in the body; the fields are name.", None),
    ({"type": "missing", "loc": ("body", "reason")}, (), "'reason' is required.", "reason"),
    ({"type": "missing", "loc": ("body",)}, (), "A JSON object body is required.", None),
    ({"type": "json_invalid", "loc": ("body", 3)}, (), "The body is not valid JSON.", None),
    ({"type": "model_attributes_type", "loc": ("body",)}, (), "The body must be a JSON object.", None),
    ({"type": "string_pattern_mismatch", "loc": ("body", "models", 2), "input": "secret"}, (),
     ("'models' must be a list of 1 to 200 model names, each a string of 1 to 200 characters without control "
     "characters."), "models[2]"),
    ({"type": "value_error", "loc": ("body", "expires_at"), "input": "2099-01-01T00:00:00"}, (),
     "'expires_at' must be an ISO 8601 date-time with a UTC offset, e.g. 2027-01-31T00:00:00Z.", "expires_at"),
    ({"type": "int_parsing", "loc": ("query", "before_seq"), "input": "x"}, (),
     "'before_seq' must be an integer from 1 to 2^62.", "before_seq"),
    ({"type": "string_type", "loc": ("body", "unlisted")}, (), "Invalid value for 'unlisted'.", "unlisted"),
])
def test_each_validation_error_is_worded(error: dict[str, Any], known: tuple[str, ...], message: str,
                                        param: str | None) -> None:
    denial = _validation_denial(error, known)
    assert (denial.status, denial.code, denial.message, denial.param) == (400, "invalid_request", message, param)
    assert "secret" not in denial.message


def test_an_unknown_field_without_a_known_model_is_still_named() -> None:
    assert _validation_denial({"type": "extra_forbidden", "loc": ("body", "x")}, ()).message == "Unknown field 'x'."
