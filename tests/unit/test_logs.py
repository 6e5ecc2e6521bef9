"""Log formatting: one record is one line whatever the client sent, and secrets stay masked.

threat-model: TM-I4
"""

from __future__ import annotations

import json
import logging
import pickle
import sys

import pytest

from gateway.logs import CONTINUATION, MASK, JsonFormatter, Redactor, TextFormatter

# Every character that can end or rewrite a line in a terminal, a log shipper or a JSON/JavaScript viewer.
CONTROLS = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]]
FORGED = "2030-01-01 00:00:00,000 CRITICAL gateway.authn: FAKE honeytoken key used"


def _text() -> TextFormatter:
    return TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def _record(msg: str, *args: object, exc_info: object = None, **extras: object) -> logging.LogRecord:
    record = logging.LogRecord("gateway.authn", logging.WARNING, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]
    for name, value in extras.items():
        setattr(record, name, value)
    return record


def _raw_controls(line: str) -> list[str]:
    return [hex(ord(c)) for c in line if c in CONTROLS]


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_text_format_escapes_every_control_character_in_message_and_extras(control: str) -> None:
    hostile = f"/admin/keys/x{control}{FORGED}"
    line = _text().format(_record("authentication denied for %s", hostile, path=hostile, reason=f"r{control}"))
    assert line.splitlines() == [line]  # str.splitlines breaks on \n, \r, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029
    assert _raw_controls(line) == []
    expected = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
        control, f"\\x{ord(control):02x}" if ord(control) < 0x100 else f"\\u{ord(control):04x}")
    assert line.count(expected + FORGED) == 2  # in the message and in the path extra, visibly
    assert f"reason=r{expected}" in line


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_json_format_escapes_every_control_character(control: str) -> None:
    hostile = f"/admin/keys/x{control}{FORGED}"
    line = JsonFormatter().format(_record("authentication denied for %s", hostile, path=hostile))
    assert line.splitlines() == [line]
    assert _raw_controls(line) == []
    entry = json.loads(line)
    assert entry["path"] == hostile and entry["msg"] == f"authentication denied for {hostile}"


def _failing(message: str) -> object:
    try:
        raise ValueError(message)
    except ValueError:
        return sys.exc_info()


def test_text_tracebacks_stay_readable_and_cannot_forge_a_record() -> None:
    exc_info = _failing(f"bad value\n{FORGED}\r{FORGED}\u2028{FORGED}\x1b[2K")
    line = _text().format(_record("admin request failed", exc_info=exc_info, reason="ValueError"))
    first, *rest = line.split("\n")
    assert first.endswith("admin request failed reason=ValueError")
    # The traceback keeps one line per frame, and every one of its lines is marked as a continuation.
    assert rest[0] == CONTINUATION + "Traceback (most recent call last):"
    assert any(part.startswith(CONTINUATION + '  File "') for part in rest)
    assert all(part.startswith(CONTINUATION) for part in rest)
    # The exception message's own line break gives a marked line; its other controls are escaped in place.
    assert CONTINUATION + "ValueError: bad value" in rest
    assert CONTINUATION + FORGED + "\\r" + FORGED + "\\u2028" + FORGED + "\\x1b[2K" in rest
    assert not any(part.startswith(FORGED) for part in line.splitlines())
    assert _raw_controls(line.replace("\n", "")) == []


def test_json_tracebacks_stay_on_the_record_line() -> None:
    exc_info = _failing(f"bad value\n{FORGED}\u2028")
    line = JsonFormatter().format(_record("admin request failed", exc_info=exc_info))
    assert line.splitlines() == [line] and _raw_controls(line) == []
    assert json.loads(line)["exc"].endswith(f"ValueError: bad value\n{FORGED}\u2028")


@pytest.mark.parametrize("formatter", [_text(), JsonFormatter()], ids=["text", "json"])
def test_escaping_does_not_hide_credentials_from_the_redaction(formatter: logging.Formatter) -> None:
    record = _record("upstream said %s", "Authorization: Bearer\tabcdefghijklmnop", path="Bearer\nqrstuvwxyz012345")
    line = formatter.format(record)
    assert "abcdefghijklmnop" not in line and "qrstuvwxyz012345" not in line
    assert line.count(MASK) == 2


def test_redactor_holds_its_values_where_nothing_prints_them() -> None:
    secret = "value-only-the-redactor-may-see"
    redactor = Redactor()
    redactor.add(secret)
    assert redactor(f"x {secret} y") == f"x {MASK} y"
    held = redactor._values
    assert [type(h).__name__ for h in held] == ["_RedactedValue"]
    for view in (repr(redactor), str(redactor), repr(held), str(held[0]), f"{held[0]}", f"{held[0]!r:>40}"):
        assert secret not in view
    for target in (redactor, held[0]):
        with pytest.raises(TypeError):
            pickle.dumps(target)
