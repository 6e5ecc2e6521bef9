"""The secret wrapper reveals nothing through repr, str, format, logging, pickling or copying.

threat-model: TM-T1
"""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from gateway.boot.secret import Secret

VALUE = "sk-canary-value-for-the-wrapper-test"


def test_no_textual_view_reveals_the_value(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(VALUE)
    views = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>80}", "%s" % secret,  # noqa: UP031 - %-formatting is one of the views under test
             f"{secret}", repr([secret]), repr({"k": secret})]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").debug("value %s %r", secret, secret)
    views.append(caplog.text)
    assert all(VALUE not in view for view in views)
    assert secret.reveal() == VALUE


def test_cannot_be_pickled_or_mutated() -> None:
    secret = Secret(VALUE)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(secret, protocol=protocol)
    with pytest.raises(AttributeError):
        secret._value = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(secret)
    assert copy.copy(secret) is secret and copy.deepcopy(secret) is secret


def test_equality_is_by_value() -> None:
    assert Secret(VALUE) == Secret(VALUE)
    assert Secret(VALUE) != Secret(VALUE + "x")
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]
