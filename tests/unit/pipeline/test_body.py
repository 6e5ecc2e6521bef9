"""The body step: JSON declared and parsed strictly, and one canonical representation handed to LiteLLM.

threat-model: TM-E5
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.pipeline.asgi import Receive
from gateway.pipeline.body import (
    ClientGone,
    canonical_json,
    check_content_type,
    parse_json_object,
    read_body,
    replay,
)
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


def _receive(*messages: dict[str, Any]) -> tuple[Receive, list[dict[str, Any]]]:
    """A ``receive`` that hands out ``messages`` in order; the list it returns records which were taken."""
    queue, taken = list(messages), []

    async def receive() -> Any:
        taken.append(queue[0])
        return queue.pop(0)

    return receive, taken


def _chunks(*bodies: bytes) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": body, "more_body": i < len(bodies) - 1} for i, body in enumerate(bodies)]


def _read(receive: Receive, limit: int, content_length: str | None = None) -> bytes:
    headers = [] if content_length is None else [(b"content-length", content_length.encode("latin-1"))]
    return asyncio.run(read_body({"headers": headers}, receive, limit))


def test_a_body_up_to_the_limit_is_read_whole_across_chunks() -> None:
    receive, _ = _receive(*_chunks(b'{"a":', b"", b' "b"}'))
    assert _read(receive, 10, "10") == b'{"a": "b"}'


@pytest.mark.parametrize("declared", ["11", "99999999999999999999999", "+11"])
def test_a_declared_length_over_the_limit_is_413_before_anything_is_read(declared: str) -> None:
    receive, taken = _receive(*_chunks(b"{}"))
    with pytest.raises(Denial) as caught:
        _read(receive, 10, declared)
    assert (caught.value.status, caught.value.code) == (413, "request_too_large") and taken == []


@pytest.mark.parametrize("declared", ["ten", "0x10", "", "1e3", "1\u00a0"])
def test_a_declared_length_that_is_not_a_number_is_400(declared: str) -> None:
    receive, taken = _receive(*_chunks(b"{}"))
    with pytest.raises(Denial) as caught:
        _read(receive, 10, declared)
    assert (caught.value.status, caught.value.code) == (400, "invalid_request") and taken == []


@pytest.mark.parametrize("declared", [None, "2", "0", "-5"])
def test_a_body_longer_than_the_limit_is_413_whatever_length_was_declared(declared: str | None) -> None:
    # Eleven one-byte chunks and then more: reading stops at the chunk that crosses the limit.
    receive, taken = _receive(*_chunks(*[b"x"] * 50))
    with pytest.raises(Denial) as caught:
        _read(receive, 10, declared)
    assert (caught.value.status, caught.value.code) == (413, "request_too_large") and len(taken) == 11


def test_one_huge_chunk_is_413() -> None:
    receive, _ = _receive(*_chunks(b"x" * 10_000_000))
    with pytest.raises(Denial) as caught:
        _read(receive, 1024 * 1024)
    assert caught.value.status == 413


def test_a_client_that_hangs_up_mid_body_is_client_gone() -> None:
    receive, _ = _receive({"type": "http.request", "body": b'{"a":', "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ClientGone):
        _read(receive, 100)


def test_replay_hands_over_the_read_body_once_then_the_real_connection() -> None:
    receive, taken = _receive({"type": "http.disconnect"})
    replayed = replay(b"{}", receive)
    assert asyncio.run(replayed()) == {"type": "http.request", "body": b"{}", "more_body": False} and taken == []
    assert asyncio.run(replayed()) == {"type": "http.disconnect"}


@pytest.mark.parametrize("declared", ["application/json\x00", "application/json\x00text/plain",
                                      "application/json; charset=utf-8; charset=utf-16", "application/json, text/plain",
                                      "application/jsonx", "application/*", "*/*", "application/json; charset=",
                                      "application/json; charset=utf-8\x00", "application/problem+json"])
def test_json_with_smuggled_or_extra_parts_is_415(declared: str) -> None:
    with pytest.raises(Denial) as caught:
        check_content_type(_scope(declared))
    assert caught.value.status == 415


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser's recursion: still a clean 400
    b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    b'{"a": "x\x00y"}',  # a raw control character inside a string (escaped \\u0000 is data)
    b'{"a": "line\nbreak"}',
    b'{"a": 1' + b"0" * 5000 + b"}",  # more digits than Python converts (int_max_str_digits)
    b'{"a": "\xc3\x28"}',  # invalid UTF-8 inside a string
    b'{"a": 1} {"b": 2}',  # two documents
    b'{"a": 1,}',
    b"{'a': 1}",
    b"null",
])
def test_hostile_json_is_a_400_not_a_crash(raw: bytes) -> None:
    with pytest.raises(Denial) as caught:
        parse_json_object(raw)
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")


def test_escaped_nul_and_big_finite_numbers_are_data() -> None:
    assert parse_json_object(b'{"a": "x\\u0000y", "b": 1e308, "c": -1e308}') == {"a": "x\x00y", "b": 1e308,
                                                                                 "c": -1e308}


def test_litellm_sees_one_value_for_a_key_the_client_sent_twice() -> None:
    # The parsed object keeps the last value; the canonical bytes then carry only that one, so no later parser can
    # pick the first.
    raw = b'{"model": "chat-model", "max_tokens": 1, "model": "other-chat-model", "max_tokens": 5}'
    assert canonical_json(parse_json_object(raw)) == b'{"model":"other-chat-model","max_tokens":5}'
