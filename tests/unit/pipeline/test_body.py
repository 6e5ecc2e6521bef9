"""The body step: JSON declared and parsed strictly, and one canonical representation handed to LiteLLM.

threat-model: TM-E5
"""

from __future__ import annotations

import json

import pytest

from gateway.pipeline.body import canonical_json, check_content_type, parse_json_object
from gateway.pipeline.errors import Denial
from gateway.pipeline.headers import scrub_request


def _scope(*content_types: str) -> dict:
    return {"headers": [(b"content-type", value.encode("latin-1")) for value in content_types]}


@pytest.mark.parametrize("declared", [(), ("application/json",), ("Application/JSON",),
                                      ("application/json; charset=utf-8",), ('application/json;charset="UTF-8"',)])
def test_json_or_nothing_declared_is_accepted(declared: tuple[str, ...]) -> None:
    check_content_type(_scope(*declared))


@pytest.mark.parametrize("declared", [
    ("application/x-www-form-urlencoded",), ("APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8",),
    ("multipart/form-data; boundary=b",), ("text/plain",), ("application/json; charset=utf-16",),
    ("application/json; boundary=x",), ("application/json", "application/json"),
    ("application/x-www-form-urlencoded", "application/json"), ("",),
])
def test_anything_else_is_415(declared: tuple[str, ...]) -> None:
    with pytest.raises(Denial) as caught:
        check_content_type(_scope(*declared))
    assert (caught.value.status, caught.value.code) == (415, "unsupported_media_type")


@pytest.mark.parametrize("raw", [b'{"seed": NaN}', b'{"seed": Infinity}', b'{"seed": -Infinity}',
                                 b'{"seed": 1e999}', b'{"seed": -1e999}', b'[1]', b'"x"', b'\xff{}', b''])
def test_only_strict_json_objects_parse(raw: bytes) -> None:
    with pytest.raises(Denial) as caught:
        parse_json_object(raw)
    assert caught.value.status == 400


def test_canonical_json_is_compact_utf8_and_refuses_lone_surrogates() -> None:
    assert canonical_json({"a": "é", "b": [1, 2.5]}) == '{"a":"é","b":[1,2.5]}'.encode()
    assert json.loads(canonical_json({"prompt": "x&model=y"})) == {"prompt": "x&model=y"}
    with pytest.raises(Denial) as caught:
        canonical_json(parse_json_object(b'{"a": "\\ud800"}'))
    assert caught.value.status == 400


def test_litellm_always_sees_json_declared_by_the_gateway() -> None:
    scope = {"headers": [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-type", b"text/plain"),
                         (b"accept", b"*/*")]}
    headers = scrub_request(scope, 10)
    assert [v for k, v in headers if k == b"content-type"] == [b"application/json"]
