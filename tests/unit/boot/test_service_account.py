"""A vertex_ai provider's credential: a Google service account's JSON key, checked at boot and by ``gateway secrets
bootstrap`` before it is stored. Each refusal is one line naming the field, never a value; the JSON's token_uri (where
the key-signed assertion goes) must be Google's token endpoint or a loopback stand-in.

threat-model: TM-S9
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.service_account import (
    GOOGLE_TOKEN_URI,
    check_vertex_credentials,
    parse_service_account,
    secret_parts,
)
from gateway.devstack.standin_vertex import throwaway_service_account

TEXT, _ = throwaway_service_account("gw@proj-one.iam.gserviceaccount.com", frozenset({"proj-one"}), GOOGLE_TOKEN_URI)
INFO = json.loads(TEXT)
WHERE = "kv/gateway/providers field 'vertex'"


def _refusal(value: str) -> str:
    with pytest.raises(BootError) as caught:
        parse_service_account(value, WHERE)
    line = caught.value.line()
    assert WHERE in line and "\n" not in line
    assert INFO["private_key"] not in line and INFO["private_key_id"] not in line
    return line


def _with(**changes: Any) -> str:
    info = {**INFO, **changes}
    return json.dumps({k: v for k, v in info.items() if v is not None})


def test_a_service_account_from_google_and_one_for_the_stand_in_pass() -> None:
    assert parse_service_account(TEXT, WHERE)["client_email"] == "gw@proj-one.iam.gserviceaccount.com"
    for uri in ("http://127.0.0.1:8123/token", "http://localhost:9/token", "https://[::1]:8443/token"):
        assert parse_service_account(_with(token_uri=uri), WHERE)["token_uri"] == uri


@pytest.mark.parametrize(("value", "words"), [
    ("not json", "is not JSON"),
    ("[1, 2]", "is not a JSON object"),
    (_with(type="authorized_user"), "type must be service_account"),
    (_with(type="external_account"), "type must be service_account"),
    (_with(client_email=None), "has no client_email"),
    (_with(private_key=None), "has no private_key"),
    (_with(private_key_id=None), "has no private_key_id"),
    (_with(token_uri=None), "has no token_uri"),
    (_with(type=None), "has no type"),
    (_with(client_email="not-an-address"), "client_email is not an e-mail address"),
    (_with(private_key_id="a b"), "private_key_id is not a key id"),
    (_with(private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "not an RSA private key"),
    (_with(universe_domain="example-universe.com"), "universe_domain must be googleapis.com"),
])
def test_a_malformed_service_account_is_refused_naming_the_field(value: str, words: str) -> None:
    assert words in _refusal(value)


@pytest.mark.parametrize("uri", [
    "https://attacker.example/token",
    "https://oauth2.googleapis.com.attacker.example/token",
    "https://oauth2.googleapis.com/token?redirect=https://attacker.example",
    "http://oauth2.googleapis.com/token",
    "https://user@127.0.0.1/token",
    "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
    "http://10.0.0.8/token",
    "file:///etc/passwd",
])
def test_a_token_uri_elsewhere_is_refused(uri: str) -> None:
    # google-auth posts the key-signed assertion to the JSON's own token_uri: it must not name another host.
    line = _refusal(_with(token_uri=uri))
    assert "token_uri must be https://oauth2.googleapis.com/token" in line and uri not in line


def test_boot_checks_only_vertex_providers_fields() -> None:
    check_vertex_credentials({"v": "vertex_ai", "o": "openai"}, {"v": Secret(TEXT), "o": Secret("sk-not-json")},
                             "kv/gateway/providers")
    with pytest.raises(BootError) as caught:
        check_vertex_credentials({"v": "vertex_ai"}, {"v": Secret("sk-not-json")}, "kv/gateway/providers")
    assert caught.value.line() == ("gateway: boot failed at provider credentials: kv/gateway/providers field 'v' is "
                                   "not JSON (a Vertex AI provider's field holds the service account's JSON key file)")


def test_the_private_key_is_redacted_as_written_and_as_json_escapes_it() -> None:
    parts = secret_parts(TEXT)
    assert INFO["private_key"] in parts and json.dumps(INFO["private_key"])[1:-1] in parts
    assert secret_parts("sk-not-json") == []
